"""The measurement engine: measures a test by repetition and decides its verdicts.

The pytest plugin, the ``memwatch`` fixture and the library API all drive
measurements through this package; it never imports pytest. Its modules:

- :mod:`.measure`: the readings around one run (:class:`Measurer`) and the run
  loop (:func:`run_repeated`); :mod:`.hygiene` keeps the interpreter's caches and
  the collector from reading as growth between runs.
- :mod:`.spec`: what to measure and judge for one test, from its markers.
- :mod:`.plan`: the repeat plan, which runs, extends and judges the repetitions;
  :mod:`.verdicts` holds the leak rule's tests and the budget verdicts, and
  :mod:`.judge` gathers every verdict a spec asks for.
- :mod:`.messages`: a verdict's message as a headline and detail lines.
- :mod:`.attribution`: what leaked, where it was allocated and what holds it
  (imported on demand, only when a verdict failed).
"""

from __future__ import annotations

from pytest_memwatch.engine.hygiene import GcHygiene
from pytest_memwatch.engine.judge import judge
from pytest_memwatch.engine.measure import Measurer, RunMeasure, RunToken
from pytest_memwatch.engine.plan import RepeatPlan
from pytest_memwatch.engine.spec import MarkCall, TestSpec, build_spec

__all__ = [
    "GcHygiene",
    "MarkCall",
    "Measurer",
    "RepeatPlan",
    "RunMeasure",
    "RunToken",
    "TestSpec",
    "build_spec",
    "judge",
]
