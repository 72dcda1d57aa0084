"""Every use of pytest's and pytest-xdist's private API, in one place.

A pytest or xdist upgrade breaks these first, so each is a small function
here, named after what it does for memwatch, with the versions it was checked
on: pytest 8.0.2 and 9.2.0, pytest-xdist 3.8.0. No other module of the plugin
imports ``_pytest`` or reads these attributes (tests/test_boundary.py checks
it); when one of them breaks, this file is where to look.

A function that finds what it expects missing degrades to doing nothing, so a
newer pytest costs some accuracy of the readings, never the session.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any

import pytest
from _pytest.runner import runtestprotocol

# -- running a test's phases -------------------------------------------------------


def run_phases(item: pytest.Item, nextitem: Any) -> list[pytest.TestReport]:
    """Run the item's setup, call and teardown and return their reports, logging none.

    ``_pytest.runner.runtestprotocol(log=False)``: the body of pytest's own
    ``pytest_runtest_protocol`` without its logstart/logfinish and report
    logging, which memwatch does once for all the runs of a repeated test.
    ``nextitem`` may be a stand-in with only ``listchain()`` (see
    ``runs.KeepCollectors``): it is only handed to ``teardown_exact``.
    Checked on pytest 8.0.2 and 9.2.0.
    """
    return runtestprotocol(item, nextitem=nextitem, log=False)


def unwind_setup(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Tear down every node ``nextitem`` does not need, without the teardown hooks.

    ``item.session._setupstate.teardown_exact(nextitem)``, as
    ``runtestprotocol`` ends a teardown. Checked on pytest 8.0.2 and 9.2.0.
    """
    item.session._setupstate.teardown_exact(nextitem)


def forget_report_sections(item: pytest.Item) -> None:
    """Drop the captured output pytest appended to the item in its previous run.

    ``Item._report_sections`` (present since pytest 3): each run appends its
    captured stdout, stderr and log to it. Checked on pytest 8.0.2 and 9.2.0.
    """
    item._report_sections.clear()


@contextlib.contextmanager
def hook_relay_replaced(session: pytest.Session, wrap: Callable[[Any], Any]) -> Generator[None]:
    """While inside, every ``item.ihook`` is ``wrap(the real relay)``.

    pytest resolves ``item.ihook`` through ``Session.gethookproxy(fspath)`` at
    every access (subtests take it when they report), so an instance attribute
    of that name on the session reaches every caller. ``gethookproxy`` is
    public but undocumented, and shadowing a method through the instance's
    ``__dict__`` relies on ``Session`` having no ``__slots__``. Checked on pytest
    8.0.2 (with pytest-subtests 0.15) and 9.2.0.
    """
    mine = vars(session)
    had = mine.get("gethookproxy")
    real = session.gethookproxy

    def gethookproxy(fspath: os.PathLike[str]) -> Any:
        return wrap(real(fspath))

    mine["gethookproxy"] = gethookproxy
    try:
        yield
    finally:
        if had is None:
            del mine["gethookproxy"]
        else:
            mine["gethookproxy"] = had


# -- fixtures -----------------------------------------------------------------------


def fixture_definitions(item: pytest.Item) -> Mapping[str, Sequence[pytest.FixtureDef[Any]]]:
    """The item's fixture definitions by name, the one in use last in each list.

    ``Function._fixtureinfo.name2fixturedefs``; an item without
    ``_fixtureinfo`` (not a ``Function``) has none. Checked on pytest 8.0.2 and 9.2.0.
    """
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return {}
    defs: Mapping[str, Sequence[pytest.FixtureDef[Any]]] = info.name2fixturedefs
    return defs


def prune_fixture_finalizers(fixturedefs: Iterable[pytest.FixtureDef[Any]]) -> None:
    """Drop, from each definition's finalizers, the callbacks that can no longer do anything.

    A function-scoped fixture that uses a higher-scoped one registers
    ``partial(its finish, request=...)`` on it (``FixtureDef._finalizers``),
    kept until that fixture's own teardown; once the function fixture has
    finished (``cached_result is None``) calling it again does nothing, but it
    holds the test's request alive. Checked on pytest 8.0.2 and 9.2.0.
    """
    for fixturedef in fixturedefs:
        fins = getattr(fixturedef, "_finalizers", None)
        if fins:
            fins[:] = _needed_finalizers(fins)


def prune_collector_finalizers(item: pytest.Item) -> None:
    """The same for the finalizers pytest keeps on the item's collectors.

    pytest 8.0 registers ``partial(fixturedef.finish)`` on the collector of a
    higher-scoped fixture every time a test requests it, even from its cache
    (8.1 registers it once); repetitions keep the collectors alive, so the
    list would grow run after run. ``Session._setupstate.stack`` maps each
    node to ``(finalizers, exception info)``. Checked on pytest 8.0.2 and 9.2.0.
    """
    stack = getattr(getattr(item.session, "_setupstate", None), "stack", None) or {}
    for node, entry in stack.items():
        if node is not item and entry[0]:
            entry[0][:] = _needed_finalizers(entry[0])


def _needed_finalizers(fins: list[Any]) -> list[Any]:
    """The finalizers minus finished dependents and repeated ``finish`` calls of one fixture.

    Calling a fixture's ``finish`` a second time finds nothing to tear down,
    so a later duplicate can go; the first one keeps its place in the order.
    """
    out: list[Any] = []
    seen: set[int] = set()
    for f in fins:
        if _finished_dependent(f):
            continue
        if isinstance(f, functools.partial) and getattr(f.func, "__name__", "") == "finish":
            owner = getattr(f.func, "__self__", None)
            if isinstance(owner, pytest.FixtureDef):
                if id(owner) in seen:
                    continue
                seen.add(id(owner))
        out.append(f)
    return out


def _finished_dependent(fin: object) -> bool:
    if not isinstance(fin, functools.partial):
        return False
    owner = getattr(fin.func, "__self__", None)
    return (
        getattr(fin.func, "__name__", "") == "finish"
        and isinstance(owner, pytest.FixtureDef)
        and owner.scope == "function"
        and owner.cached_result is None
    )


def step_back_tmp_number(factory: pytest.TempPathFactory, prefix: str, number: int) -> None:
    """Hand out ``number`` again for ``prefix`` after its directory was removed.

    pytest up to 9.1 numbers a ``tmp_path`` directory after the highest one
    present, so removing it is enough; 9.2 keeps a counter per lower-cased
    prefix, ``TempPathFactory._next_number``, stepped back here when it still
    points just past the removed directory. Checked on pytest 8.0.2 (no
    counter: nothing to do) and 9.2.0.
    """
    counters = getattr(factory, "_next_number", None)
    key = prefix.lower()
    if isinstance(counters, dict) and counters.get(key) == number + 1:
        counters[key] = number


# -- collection and options ----------------------------------------------------------


def case_marks(item: pytest.Item) -> Sequence[pytest.Mark]:
    """The marks of the item's ``pytest.param`` case (none for an item without one).

    ``Function.callspec`` is documented, but its class (``CallSpec2``) and its
    ``marks`` are not. Checked on pytest 8.0.2 and 9.2.0.
    """
    marks: Sequence[pytest.Mark] = getattr(getattr(item, "callspec", None), "marks", None) or ()
    return marks


def add_early_test_paths(early_config: pytest.Config, paths: list[str]) -> None:
    """Add ``paths`` to the test paths pytest's early parse found.

    From ``pytest_load_initial_conftests``, pytest parses ``args`` again later;
    only the early parse it made to find the initial conftests
    (``Config.known_args_namespace``, not underscored but not documented either)
    still holds the old reading. Checked on pytest 8.0.2 and 9.2.0.
    """
    known = getattr(early_config, "known_args_namespace", None)
    found = getattr(known, "file_or_dir", None)
    if isinstance(found, list):
        found.extend(p for p in paths if p not in found)


# -- reports ------------------------------------------------------------------------


def pop_report_attribute(report: pytest.TestReport, name: str) -> None:
    """Remove an attribute memwatch set on a report, if it is still there.

    A report's extra attributes live in its instance ``__dict__``, which is
    what pytest serializes for xdist (``_report_to_json``) and for
    ``--report-log``. Checked on pytest 8.0.2 and 9.2.0.
    """
    report.__dict__.pop(name, None)


def was_expected_to_fail(report: pytest.TestReport) -> bool:
    """Whether pytest's skipping plugin marked the report as an ``xfail`` test's (``wasxfail``).

    Set by pytest only on the reports of ``xfail`` tests, in the instance
    ``__dict__``. Checked on pytest 8.0.2 and 9.2.0.
    """
    return "wasxfail" in report.__dict__


def forget_expected_failure(report: pytest.TestReport) -> None:
    """Drop ``wasxfail`` from the report: its failure is not the one the marker expected."""
    report.__dict__.pop("wasxfail", None)


# -- pytest-xdist ---------------------------------------------------------------------


def intercept_xdist_test_queue(config: pytest.Config, convert: Callable[[Any], Any]) -> bool:
    """On an xdist worker, pass every test index the controller sends through ``convert``.

    xdist's ``WorkerInteractor`` is registered as a plugin without a public
    name or class export; found by its class name, its ``torun`` queue is
    what the worker's I/O thread fills, and its ``put`` is replaced on the
    instance. Returns whether the queue was found. Checked on pytest-xdist 3.8.0.
    """
    queue = None
    for plugin in config.pluginmanager.get_plugins():
        if type(plugin).__name__ == "WorkerInteractor":
            queue = getattr(plugin, "torun", None)
            break
    put = getattr(queue, "put", None)
    if put is None:
        return False

    def put_converted(item: Any) -> None:
        put(convert(item))

    queue.put = put_converted  # type: ignore[union-attr]
    return True
