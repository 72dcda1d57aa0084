"""Measuring a test by repetition: the before/after readings of a run, and the run loop."""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass

from pytest_memwatch.base.probes import PeakWatch, Prober, Sample, get_prober
from pytest_memwatch.engine.hygiene import GcHygiene, clear_interpreter_caches
from pytest_memwatch.engine.plan import RepeatPlan


@dataclass
class RunToken:
    before: Sample
    peak: PeakWatch
    # Stop the peak watch before the after-reading (see Measurer.begin).
    peak_first: bool = False


@dataclass
class RunMeasure:
    before: Sample
    after: Sample
    peak_rss: int | None


class Measurer:
    """Takes the before/after readings of one run."""

    def __init__(self, prober: Prober | None = None, hygiene: GcHygiene | None = None) -> None:
        self.prober = prober or get_prober()
        self.hygiene = hygiene
        self._offset: tuple[int, int] | None = None

    def _calibrate(self) -> tuple[int, int]:
        """What one empty begin/end cycle itself leaves alive (its own readings).

        The before-reading object exists when the after-reading is taken, so an
        empty run shows a few blocks of growth; subtracting this constant makes
        an empty run read zero.
        """
        self._offset = (0, 0)
        blocks, malloc = [], []
        for _ in range(5):
            # Young collections: the constant is the same, and the first full
            # collection of a big heap (tens of milliseconds) is not paid here.
            token = self.begin(light=True, blocks=True)
            m = self.end(token, light=True, blocks=True)
            d = m.after.minus(m.before)
            blocks.append(d["blocks"] or 0)
            malloc.append(d["malloc"] or 0)
        blocks.sort()
        malloc.sort()
        self._offset = (blocks[2], malloc[2])
        return self._offset

    def session_reading(self) -> Sample:
        """A reading for the start or end of the session (the ledger's).

        With the long-lived heap frozen, the collection walks only what is not
        frozen and the frozen objects are counted in; otherwise the whole heap
        is collected. Both ends are read the same way, so the session's growth
        compares like with like without walking a big heap twice.
        """
        if self._offset is None:
            self._calibrate()
        return self.prober.sample(gc_objects=self._frozen())

    def _frozen(self) -> int:
        """Objects in the permanent generation, which the gc object count adds back."""
        return self.hygiene.frozen if self.hygiene is not None else 0

    def thaw(self, *, collect: bool = False) -> None:
        """Give the frozen heap back to the collector; collect it in full if asked."""
        if self.hygiene is not None:
            self.hygiene.thaw()
        if collect:
            gc.collect()

    def begin(
        self,
        *,
        clear_caches: bool = False,
        freeze: bool = True,
        collect: bool = True,
        light: bool = False,
        trim: bool = False,
        blocks: bool | None = None,
    ) -> RunToken:
        """Read the probes before a run.

        ``trim=True`` (tests with a ``max_memory`` budget) hands the C heap's
        free pages back to the OS before the reading. The peak is the
        high-water mark of RSS, and memory already resident does not move it:
        a test reusing what an earlier test (or its own previous run) freed
        would read a peak of nothing.

        ``freeze=False`` for repeated runs measured exactly, whose verdict
        depends on every cycle being collected: with part of the heap frozen,
        garbage that involves a frozen object is never reclaimed, and a test
        that starts and joins a thread read as +10 blocks every few runs. Those
        runs pay for full collections of the whole heap instead. A leak
        verdict first screens its runs frozen (see ``RepeatPlan``) and pays
        for exact runs only when the screen is not clean.

        ``collect=False`` skips the collection before the reading: repeated
        runs are judged on their same-point after-readings, each of which
        follows a full collection, so the one before each run would be spent
        twice on the same heap.

        ``light=True`` (plain measuring, no verdict; and calibration) collects
        the young generations only. A full collection walks no more objects
        while the long-lived heap is frozen, but it also empties CPython's
        free lists, and refilling them costs every later allocation of the
        suite: about an eighth of what plain measuring adds per test. The
        price: what the free lists hold counts as allocated blocks, so the
        same test can read a couple of blocks apart in two processes, and
        cyclic garbage a test let age into the oldest generation reads as
        growth. Verdicts always collect in full.

        ``blocks`` says whether to count allocated blocks (by default: unless
        ``light``). The count visits every pymalloc pool, so under a big
        session it is the dearest probe; plain measuring, which judges
        nothing, leaves it out unless asked (a comparison on blocks).
        """
        if self._offset is None:
            self._calibrate()
        if clear_caches:
            clear_interpreter_caches()
        if self.hygiene is not None and not freeze:
            self.hygiene.thaw()
        if self.hygiene is not None and freeze:
            # Collects, then freezes what survived.
            self.hygiene.before_test(1 if light else 2)
            collect = False
        if trim:
            self.prober.trim()
        before = self.prober.sample(
            collect=collect,
            generation=1 if light else 2,
            gc_objects=self._frozen(),
            count_blocks=not light if blocks is None else blocks,
        )
        if trim:
            # Again, for what the reading itself paged in after reading RSS: its
            # list of every tracked object, a megabyte on an unfrozen heap
            # (repeated runs), would otherwise raise the mark the peak starts
            # from. For the same reason the peak ends before the after-reading.
            self.prober.trim()
        return RunToken(before, self.prober.start_peak(), peak_first=trim)

    def end(
        self,
        token: RunToken,
        *,
        clear_caches: bool = False,
        light: bool = False,
        blocks: bool | None = None,
    ) -> RunMeasure:
        if clear_caches:
            clear_interpreter_caches()
        ob, om = self._offset or (0, 0)
        peak = token.peak.stop() if token.peak_first else None
        after = self.prober.sample(
            generation=1 if light else 2,
            blocks=-ob,
            malloc=-om,
            gc_objects=self._frozen(),
            count_blocks=not light if blocks is None else blocks,
        )
        if not token.peak_first:
            # Stopped after the reading, whose RSS lets the watch skip /proc/self/status.
            peak = token.peak.stop(floor=max(token.before.rss or 0, after.rss or 0) or None)
        if peak is not None:
            # The kernel's RSS counters are per-CPU approximations, so the
            # high-water mark can read a little below a plain RSS reading taken
            # around it; the peak is at least what either reading saw.
            peak = max(peak, token.before.rss or 0, after.rss or 0)
        return RunMeasure(token.before, after, peak)

    def trimmed(self, measure: RunMeasure) -> RunMeasure:
        """Re-read after handing free heap pages back, so RSS stops counting them."""
        self.prober.trim()
        return RunMeasure(measure.before, self.prober.sample(), measure.peak_rss)


def run_repeated(fn: Callable[[], object], plan: RepeatPlan, measurer: Measurer) -> None:
    """Call ``fn`` as the plan asks, reading the probes around every call.

    The readings go straight into the plan's preallocated arrays; nothing else
    is kept per run, or the harness would measure its own bookkeeping.
    """
    while plan.wants_more():
        token = measurer.begin(clear_caches=True)
        fn()
        m = measurer.end(token, clear_caches=True)
        plan.record(m.before, m.after, m.peak_rss)
        del m, token
