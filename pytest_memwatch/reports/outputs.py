"""Everything a run writes at its end, behind one call for the plugin.

The plugin calls :func:`finish_run` once, on the controller (never on an xdist
worker), at session end, with the complete results document. It gets back the
lines for its terminal summary, the warnings to show, and the regressions
that must fail the run::

    outcome = finish_run(results.to_dict(), settings, str(config.rootpath))
    for line in outcome.lines: terminalreporter.write_line(line)
    for text in outcome.warnings: terminalreporter.write_line(text, yellow=True)
    if outcome.regressions: session.exitstatus = 1

Nothing here raises for I/O trouble: a file that cannot be written becomes a
warning (the tests already ran; their outcome must not be lost to a full
disk). Bad ``--memwatch-compare-fail`` expressions become regressions, so a
typo in CI fails loudly instead of switching the check off.

Renderers are imported lazily: Jinja2 costs import time every pytest run
would pay, and only runs that write HTML need it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_memwatch.base.files import atomic_write
from pytest_memwatch.config.settings import Settings
from pytest_memwatch.reports import baselines
from pytest_memwatch.reports.compare import METRICS, compare_docs, machine_warnings
from pytest_memwatch.reports.document import ComparisonDoc
from pytest_memwatch.reports.results_file import iter_dumps, load_results
from pytest_memwatch.reports.validation import ResultsError

# load_results and ResultsError are re-exported: the plugin and the CLI read results here.
__all__ = [
    "OutputOutcome",
    "ResultsError",
    "finish_run",
    "html_section",
    "junit_properties",
    "load_results",
]


@dataclass
class OutputOutcome:
    """What :func:`finish_run` did, for the plugin to show and act on."""

    lines: list[str] = field(default_factory=list)  # terminal summary lines
    warnings: list[str] = field(default_factory=list)  # each starts with "memwatch: "
    regressions: list[str] = field(default_factory=list)  # non-empty: exit status 1


def _write(
    outcome: OutputOutcome, what: str, path: str, render: Callable[[], str | Iterable[str]]
) -> None:
    # A renderer may stream (an iterable of pieces, written as they come): its
    # errors then surface while writing, and are told apart from I/O errors.
    try:
        written = atomic_write(path, render())
    except OSError as exc:
        outcome.warnings.append(f"memwatch: cannot write the {what} to {path}: {_reason(exc)}")
        return
    except Exception as exc:  # a renderer bug must not hide the run's results
        outcome.warnings.append(
            f"memwatch: could not render the {what} ({type(exc).__name__}: {exc}); "
            f"{path} was not written. Please report this as a pytest-memwatch bug."
        )
        return
    outcome.lines.append(f"{what} written to {_show(written)}")


def _reason(exc: OSError) -> str:
    # Not exc.filename: it is often the temporary file, which means nothing to the user.
    return str(exc.strerror or exc)


def _show(path: os.PathLike[str] | str) -> str:
    # Relative to the working directory when inside it: shorter and clickable in terminals.
    text = os.fspath(path)
    try:
        rel = os.path.relpath(text)
    except ValueError:  # another drive on Windows
        return text
    return text if rel.startswith("..") else rel


def _compare(
    doc: Mapping[str, Any], settings: Settings, storage: Path, outcome: OutputOutcome
) -> ComparisonDoc | None:
    query = settings.compare or ""
    machine = baselines.machine_id()
    try:
        saved = baselines.find_run(storage, query, machine)
    except OSError as exc:
        outcome.warnings.append(f"memwatch: cannot read saved runs in {storage}: {_reason(exc)}")
        return None
    if saved is None:
        if not query:
            outcome.lines.append(
                f"no saved run to compare with yet in {_show(storage)} (first run?); "
                "save one with --memwatch-save=NAME"
            )
        else:
            available = ", ".join(r.label for r in baselines.list_runs(storage, machine)) or "none"
            outcome.warnings.append(
                f"memwatch: no saved run matches --memwatch-compare={query} in "
                f"{_show(storage / machine)} (saved runs: {available}); nothing was compared"
            )
        return None
    try:
        old = saved.load()
    except baselines.BaselineError as exc:
        outcome.warnings.append(f"memwatch: {exc}; nothing was compared")
        return None
    label = saved.label if saved.machine == machine else f"{saved.machine}/{saved.label}"
    outcome.warnings += [f"memwatch: {w}" for w in machine_warnings(old, doc, label)]
    comparison = compare_docs(
        old, doc, settings.compare_fail, baseline={"label": label, "path": _show(saved.path)}
    )
    outcome.lines += comparison.table(settings.top, regressions=False)
    outcome.regressions += comparison.regressions
    return comparison.to_dict()


def finish_run(doc: dict[str, Any], settings: Settings, rootdir: str) -> OutputOutcome:
    """Called once, on the controller, at session end, with the complete results document.

    In order: compare with a saved run (``--memwatch-compare``, before saving
    so the run is not compared with itself), write ``--memwatch-json`` and
    ``--memwatch-html`` (relative paths against the working directory; both
    include the comparison when there is one), then save the run
    (``--memwatch-save``, under ``--memwatch-storage`` relative to ``rootdir``).
    """
    outcome = OutputOutcome()
    storage = baselines.resolve_storage(settings.storage, rootdir)
    written = doc
    if settings.compare is not None:
        try:
            comparison = _compare(doc, settings, storage, outcome)
        except Exception as exc:
            # A comparison that breaks must not cost the run its JSON and HTML.
            outcome.warnings.append(
                f"memwatch: could not compare with the saved run ({type(exc).__name__}: "
                f"{exc}); nothing was compared. Please report this as a pytest-memwatch bug."
            )
            comparison = None
        if comparison is not None:
            written = {**doc, "comparison": comparison}
    if settings.json:
        _write(outcome, "results JSON", settings.json, lambda: iter_dumps(written))
    if settings.html:
        from pytest_memwatch.reports.html import iter_report

        _write(outcome, "HTML report", settings.html, lambda: iter_report(written))
    if settings.save:
        try:
            path = baselines.save_run(doc, storage, settings.save)
        except (OSError, ValueError) as exc:
            reason = _reason(exc) if isinstance(exc, OSError) else str(exc)
            outcome.warnings.append(
                f"memwatch: could not save this run as {settings.save!r} in "
                f"{_show(storage)}: {reason}; nothing was saved"
            )
        else:
            outcome.lines.append(f"run saved as {_show(path)}")
    return outcome


# -- per-test hooks for junit-xml and pytest-html ------------------------------------


def junit_properties(test: dict[str, Any]) -> list[tuple[str, str]]:
    """``<property>`` name/value pairs for one test in a JUnit XML report.

    Byte figures are raw integers (machine-readable); verdicts give
    ``passed``/``failed`` and their message. Nothing for an unmeasured test.
    """
    props: list[tuple[str, str]] = []
    growth = METRICS["growth"].extract(test)
    if growth is not None:
        props.append(("memwatch_growth", str(growth)))
    for metric, value in (test.get("growth") or {}).items():
        if value is not None:
            props.append((f"memwatch_growth_{metric}", str(value)))
    for key in ("peak_rss", "peak_growth"):
        if test.get(key) is not None:
            props.append((f"memwatch_{key}", str(test[key])))
    if test.get("runs"):
        props.append(("memwatch_runs", str(len(test["runs"]))))
    for verdict in test.get("verdicts") or []:
        name = f"memwatch_{verdict.get('kind', 'verdict')}"
        props.append((name, "passed" if verdict.get("passed", True) else "failed"))
        props.append((f"{name}_message", str(verdict.get("message", ""))))
    soak = test.get("soak")
    if soak and soak.get("rate"):
        props.append(("memwatch_soak_rate", f"{float(soak['rate']['slope']):.3f}"))
    return props


def html_section(test: dict[str, Any]) -> str:
    """One test's memory section as an escaped HTML fragment, for pytest-html's extras.

    Imports the renderer (and Jinja2) only when called: see
    :func:`pytest_memwatch.reports.html.html_section`.
    """
    from pytest_memwatch.reports.html import html_section as render

    return render(test)
