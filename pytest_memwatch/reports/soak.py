"""A soak run read back from its samples file, as a results document.

``python -m pytest_memwatch soak-report`` renders one soak run without the
test session that recorded it: :func:`report_document` reads the samples
file, decides the verdict as the test would have, and wraps it in the same
results document a session writes, so every report renders it.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_memwatch.reports.results import Results, RunMeta, TestResult, now_iso
from pytest_memwatch.soak.samples_file import read_samples
from pytest_memwatch.soak.verdict import outcome_from_file


def report_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A results document holding the one soak run recorded in ``path``.

    Raises :class:`SoakError` (naming the file and line) for a corrupt file.
    """
    found = read_samples(path)
    outcome = outcome_from_file(found)
    h = found.header
    test = TestResult(
        nodeid=str(h["nodeid"]),
        outcome="passed" if outcome.verdict.passed else "failed",
        duration_s=found.last_t,
        markers=["soak"],
        verdicts=[outcome.verdict.to_dict()],
        soak=outcome.data,
    )
    _growth_from_samples(test, outcome.data.get("samples") or [])
    run = RunMeta(
        plugin_version=str(h.get("plugin_version") or "unknown"),
        pytest_version=str(h.get("pytest_version") or "unknown"),
        python=str(h.get("python") or "unknown"),
        machine={
            "hostname": str(h.get("hostname") or "unknown"),
            "system": str(h.get("system") or ""),
            "release": "",
            "arch": str(h.get("arch") or ""),
            "cpu_count": None,
            "total_memory": None,
            "python_implementation": platform.python_implementation(),
        },
        started_at=str(h.get("started_at") or now_iso()),
        finished_at=(found.end or {}).get("at"),
        args=[str(found.path)],
    )
    return Results(run, [test]).to_dict()


SAMPLE_METRICS = ("rss", "malloc", "blocks", "gc_objects", "fds", "threads")


def _growth_from_samples(test: TestResult, samples: Sequence[Mapping[str, Any]]) -> None:
    """A soak report's readings from its samples: the first is "before", the last "after".

    Without them the report's totals said "total RSS growth 0 B" beside a
    chart that climbed 10 MiB, and its table had empty cells.
    """
    if not samples:
        return
    first, last = samples[0], samples[-1]
    test.before = {"t": first.get("t"), **{m: first.get(m) for m in SAMPLE_METRICS}}
    test.after = {"t": last.get("t"), **{m: last.get(m) for m in SAMPLE_METRICS}}
    test.growth = {
        m: (
            last[m] - first[m]
            if isinstance(first.get(m), int) and isinstance(last.get(m), int)
            else None
        )
        for m in SAMPLE_METRICS
    }
    peaks = [s["rss"] for s in samples if isinstance(s.get("rss"), int)]
    if peaks:
        test.peak_rss = max(peaks)
        if isinstance(first.get("rss"), int):
            test.peak_growth = test.peak_rss - first["rss"]
