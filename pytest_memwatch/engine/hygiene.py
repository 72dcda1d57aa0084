"""Interpreter hygiene between runs: emptied caches, and a frozen long-lived heap."""

from __future__ import annotations

import gc
import sys


def clear_interpreter_caches() -> None:
    """Empty the caches that legitimately grow, as CPython's refleak hunter does.

    Only modules already imported are touched: importing one here would itself
    look like growth.
    """
    mods = sys.modules
    if "re" in mods:
        mods["re"].purge()
    if "typing" in mods:
        for clear in getattr(mods["typing"], "_cleanups", ()):
            clear()
    if "linecache" in mods:
        mods["linecache"].clearcache()
    if "struct" in mods:
        mods["struct"]._clearcache()
    if "fnmatch" in mods:
        cached = getattr(mods["fnmatch"], "_compile_pattern", None)
        if cached is not None and hasattr(cached, "cache_clear"):
            cached.cache_clear()
    if "urllib.parse" in mods:
        mods["urllib.parse"].clear_cache()
    if "warnings" in mods:
        # Resets every module's __warningregistry__ lazily (they check a version).
        mods["warnings"]._filters_mutated()
    sys._clear_type_cache()


class GcHygiene:
    """Keeps full collections cheap by freezing the long-lived heap between tests.

    A full ``gc.collect()`` costs time in proportion to the tracked heap; under
    pytest that is every collected node, fixture and report, which would make
    measuring a fast test cost more than running it. Right after a collection
    every surviving object is alive, so it is moved to the permanent generation
    (``gc.freeze()``) and the next collection only walks what the test made.

    Cycles that die among frozen objects are reclaimed by thawing the heap and
    collecting it in full. Only objects frozen since the last full collection
    can have died since, so that collection waits until those still in the
    frozen list (alive, or dead in a cycle) amount to a quarter of the heap it
    left (and at least ``refreeze_every`` tests): the rule CPython's own
    collector applies to its oldest generation.
    On a fixed test count instead, a suite of 50 000 tests paid fifty walks of
    a heap that grows with the suite, the cost per test growing with the suite.
    """

    def __init__(
        self, refreeze_every: int = 1000, ratio: float = 0.25, heap_per_test: int = 100
    ) -> None:
        self.refreeze_every = refreeze_every
        self.ratio = ratio
        # Checks are at least 1/heap_per_test of the frozen heap, in tests, apart.
        self.heap_per_test = heap_per_test
        self._count = 0
        self.active = False
        # Objects in the permanent generation, kept as a running count because
        # gc.get_freeze_count() walks the whole frozen list.
        self.frozen = 0
        # The frozen heap right after the last full collection, and how many
        # objects were frozen since: what may have died uncollected meanwhile.
        self._at_full = 0
        self._since_full = 0

    def _due(self) -> bool:
        limit = self.ratio * self._at_full
        # Checked at most every refreeze_every tests, and further apart as the
        # heap grows: the exact count below walks the whole frozen list.
        spacing = max(self.refreeze_every, self._at_full // self.heap_per_test)
        if self._count < spacing or self._since_full <= limit:
            return False
        # The running count is an upper bound: most objects frozen at a test's
        # start (its fixtures, pytest's per-test state) are freed by reference
        # counting once it ends, and leave the frozen list. Its exact length
        # says what is really pending.
        pending = gc.get_freeze_count() - self._at_full
        self._since_full = max(0, pending)
        if pending > limit:
            return True
        self._count = 0
        return False

    def before_test(self, generation: int = 2) -> None:
        self._count += 1
        full = False
        if self.active and self._due():
            gc.unfreeze()
            self.frozen = 0
            generation = 2
            full = True
        gc.collect(generation)
        if not self.active:
            self.frozen = gc.get_freeze_count()
        added = len(gc.get_objects())
        self.frozen += added
        if full or not self.active:
            self._count = 0
            self._since_full = 0
            # A young collection of a thawed heap may have frozen dead cycles:
            # then the next full one is due after refreeze_every tests.
            self._at_full = self.frozen if generation == 2 else 0
        else:
            self._since_full += added
        gc.freeze()
        self.active = True

    def thaw(self) -> None:
        """Give the frozen heap back to the collector (until the next before_test)."""
        if self.active:
            gc.unfreeze()
            self.active = False
            self.frozen = 0
