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
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Protocol

import pytest
from _pytest.runner import runtestprotocol

# -- running a test's phases -------------------------------------------------------


# ``run_phases(item, nextitem=..., log=False)`` runs the item's setup, call and
# teardown and returns their reports, logging none: it is
# ``_pytest.runner.runtestprotocol``, the body of pytest's own
# ``pytest_runtest_protocol``; with ``log=False`` memwatch logs the reports
# itself, once for all the runs of a repeated test. ``nextitem`` may be a
# stand-in with only ``listchain()`` (``runs.KeepCollectors``): it is only
# handed to ``teardown_exact``. Checked on pytest 8.0.2 and 9.2.0.
# The function itself, not a wrapper or a partial: every reading of a measured
# run is taken inside this call, and one more Python frame (or a call through
# C) under them all shifts the process's memory layout, which the RSS readings
# of repeated tests can see (measured on pytest 8.0.2: a wrapper frame made a
# clean repeated test read "rss still changing" far more often).
run_phases = runtestprotocol


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


class RelayWrapper(Protocol):
    def wrap(self, relay: Any) -> Any: ...


@contextlib.contextmanager
def hook_relay_replaced(item: pytest.Item, wrapper: RelayWrapper) -> Generator[None]:
    """While inside, every ``item.ihook`` is ``wrapper.wrap(the real relay)``.

    pytest resolves ``item.ihook`` through ``Session.gethookproxy(fspath)`` at
    every access (subtests take it when they report), so an instance attribute
    of that name on the session reaches every caller. ``gethookproxy`` is
    public but undocumented, and shadowing a method through the instance's
    ``__dict__`` relies on ``Session`` having no ``__slots__``. Checked on pytest
    8.0.2 (with pytest-subtests 0.15) and 9.2.0.
    """
    # Entered once per run of a repeated test: what the generator and the
    # closure hold is part of what the next reading sees, so they hold no more
    # than the run needs (the real proxy and the wrapper).
    session = item.session
    mine = vars(session)
    had = mine.get("gethookproxy")
    real = session.gethookproxy

    def gethookproxy(fspath: os.PathLike[str]) -> Any:
        return wrapper.wrap(real(fspath))

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


def drop_finished_dependents(
    item: pytest.Item, scoped: list[pytest.FixtureDef[Any]] | None, repeating: bool
) -> list[pytest.FixtureDef[Any]]:
    """Forget pytest's "finish my dependent" callbacks for function fixtures already finished.

    A function-scoped fixture that uses a module- or session-scoped one
    registers ``partial(its finish, request=...)`` on it
    (``FixtureDef._finalizers``), kept until that fixture's own teardown. It
    holds the test's request, so every test (and every repetition, which keeps
    the module fixtures alive) would read as ~10 blocks of growth: a clean test
    using such a fixture failed ``no_leaks``. Once the function fixture has
    finished (``cached_result is None``), calling its finish again does
    nothing, so the callback can go.

    ``scoped`` are the item's higher-scoped fixture definitions from an earlier
    call (they do not change between runs), or ``None`` to list them; they are
    returned. ``repeating``: the item runs again, its collectors kept alive.
    pytest 8.0 registers ``partial(fixturedef.finish)`` on the collector of a
    higher-scoped fixture every time a test requests it, even from its cache
    (8.1 registers it once), so a clean unittest-style test read +14 blocks a
    run; ``Session._setupstate.stack`` maps each node to ``(finalizers,
    exception info)``. Checked on pytest 8.0.2 and 9.2.0.
    """
    if scoped is None:
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.values() if info is not None else ()
        scoped = [d for ds in defs for d in ds if d.scope != "function"]
    for fixturedef in scoped:
        fins = getattr(fixturedef, "_finalizers", None)
        if fins:
            fins[:] = _needed_finalizers(fins)
    if repeating:
        stack = getattr(getattr(item.session, "_setupstate", None), "stack", None) or {}
        for node, entry in stack.items():
            if node is not item and entry[0]:
                entry[0][:] = _needed_finalizers(entry[0])
    return scoped


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
