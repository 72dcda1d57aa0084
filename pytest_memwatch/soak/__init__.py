"""Soak tests: a long run sampled over time and judged by its steady-state growth rate.

The engine side of ``@pytest.mark.soak`` and the ``soak`` fixture (pytest is
never imported here; the plugin hands in plain values). Its modules, in the
order a soak test meets them:

- ``plan``: the marker's values and ``--memwatch-soak-duration`` become a
  :class:`SoakPlan` (duration, interval, warmup, growth budget), or a
  :class:`SoakError` naming the bad value;
- ``buffer``: the run's samples in a fixed memory budget;
- ``samples_file``: the JSON Lines file every sample is streamed to, its lock,
  and reading it back (for ``--memwatch-soak-resume`` and ``soak-report``);
- ``run``: the sampling thread, signals (SIGTERM/SIGINT end a run cleanly)
  and progress reports;
- ``handle``: the :class:`SoakHandle` a test iterates;
- ``analysis``: robust trend statistics over the samples after warmup;
- ``verdict``: the verdict and the result's ``soak`` field from an analysis
  (the rule is explained in docs/soak.md).

A samples file read back becomes a results document in
:mod:`pytest_memwatch.reports.soak`.
"""

from __future__ import annotations

from pytest_memwatch.base.units import format_rate, format_seconds
from pytest_memwatch.soak.analysis import Analysis, analyze
from pytest_memwatch.soak.buffer import FIELDS, SampleBuffer
from pytest_memwatch.soak.handle import SoakHandle, Tick
from pytest_memwatch.soak.plan import SoakError, SoakPlan, make_plan
from pytest_memwatch.soak.run import SoakProgress, SoakRun, format_progress
from pytest_memwatch.soak.samples_file import (
    SampleFile,
    check_resumable,
    read_samples,
    samples_filename,
)
from pytest_memwatch.soak.verdict import SoakOutcome, outcome_from, soak_verdict

__all__ = [
    "FIELDS",
    "Analysis",
    "SampleBuffer",
    "SampleFile",
    "SoakError",
    "SoakHandle",
    "SoakOutcome",
    "SoakPlan",
    "SoakProgress",
    "SoakRun",
    "Tick",
    "analyze",
    "check_resumable",
    "format_progress",
    "format_rate",
    "format_seconds",
    "make_plan",
    "outcome_from",
    "read_samples",
    "samples_filename",
    "soak_verdict",
]
