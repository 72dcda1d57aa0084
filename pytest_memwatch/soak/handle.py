"""What a soak test holds: the ``soak`` fixture's handle, and the tick of each iteration."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pytest_memwatch.base.units import format_seconds
from pytest_memwatch.soak.run import SoakRun


@dataclass(frozen=True, slots=True)
class Tick:
    """One iteration of a soak loop: its number, seconds done (resumed time included), left."""

    index: int
    elapsed: float
    remaining: float


class SoakHandle:
    """What the ``soak`` fixture gives a test: iterate it, or hand it a step function.

    Example::

        @pytest.mark.soak("8h", interval="30s", max_growth_rate="1 MiB/h")
        def test_transcription_session(soak, app):
            session = app.sessions.start()
            for tick in soak:               # until the duration is up (or SIGTERM)
                session.feed(next_chunk())

        @pytest.mark.soak("2h")
        def test_cache(soak, cache):
            soak.run(lambda: cache.get(random_key()))
    """

    def __init__(self, run: SoakRun) -> None:
        self._run = run

    def __iter__(self) -> Iterator[Tick]:
        run = self._run
        run.start()
        index = 0
        while run.boundary():
            done = run.at_boundary
            yield Tick(index, done, run.plan.duration_s - done)
            index += 1

    def run(self, step: Callable[[], object]) -> int:
        """Call ``step()`` until the soak is over; return how many times it ran."""
        count = 0
        for _ in self:
            step()
            count += 1
        return count

    def sleep(self, seconds: float) -> None:
        """Pace a loop without delaying a SIGTERM/SIGINT stop (unlike ``time.sleep``)."""
        self._run.sleep(seconds)

    @property
    def duration(self) -> float:
        """Planned duration in seconds (after ``--memwatch-soak-duration``)."""
        return self._run.plan.duration_s

    @property
    def interval(self) -> float:
        return self._run.plan.interval_s

    @property
    def elapsed(self) -> float:
        return self._run.elapsed

    @property
    def remaining(self) -> float:
        return self._run.remaining

    @property
    def stopped(self) -> bool:
        """True once SIGTERM or SIGINT asked the run to end early."""
        return self._run.interrupted

    @property
    def path(self) -> Path | None:
        """The samples file (JSONL) this run streams to."""
        return self._run.path

    def __repr__(self) -> str:
        plan = self._run.plan
        return (
            f"<SoakHandle {plan.nodeid} {format_seconds(self.elapsed)} of "
            f"{format_seconds(plan.duration_s)}>"
        )
