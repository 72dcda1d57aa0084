"""A soak test's run: the sampling thread, the samples file, signals and progress.

:class:`SoakRun` is prepared at test setup (checking a file to resume from),
samples the cheap probes when due (at the test's iteration boundaries, or on
a background thread), streams every sample to its file, turns SIGTERM and
SIGINT into a clean early end and, when finished, gives the outcome.
:class:`SoakProgress` is what it reports on the way, for the plugin to show.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from pytest_memwatch.base.probes import Prober, get_prober
from pytest_memwatch.base.stats import theil_sen
from pytest_memwatch.base.units import format_duration, format_rate, format_size
from pytest_memwatch.soak.analysis import MIN_FIT_POINTS
from pytest_memwatch.soak.buffer import SampleBuffer, thin
from pytest_memwatch.soak.plan import SoakError, SoakPlan
from pytest_memwatch.soak.samples_file import (
    FORMAT,
    FORMAT_VERSION,
    SampleFile,
    SamplesLock,
    SampleWriter,
    check_resumable,
    now_iso,
    read_samples,
    samples_filename,
)
from pytest_memwatch.soak.verdict import SoakOutcome, outcome_from


@dataclass(frozen=True)
class SoakProgress:
    """A progress report, for the plugin to show on the terminal."""

    nodeid: str
    elapsed: float
    duration: float
    rss: int | None
    rate: float | None
    samples: int
    in_warmup: bool
    final: bool = False

    @property
    def remaining(self) -> float:
        return max(0.0, self.duration - self.elapsed)


def format_progress(p: SoakProgress) -> str:
    """``soak tests/x.py::test_y: 2m00s of 20m00s (18m00s left), rss 45.2 MiB, +0.9 MiB/h``."""
    rate = "rate after the warmup" if p.in_warmup else f"rate {format_rate(p.rate)}"

    def clock(seconds: float) -> str:
        return f"{seconds:.1f}s" if p.duration < 10 else format_duration(seconds)

    return (
        f"memwatch soak {p.nodeid}: {clock(p.elapsed)} of "
        f"{clock(p.duration)} ({clock(p.remaining)} left), "
        f"rss {format_size(p.rss)}, {rate}, {p.samples} samples"
    )


_SIGNALS = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGINT", None)) if s is not None
)


class SoakRun:
    """One soak test's run: sampling, the samples file, signals, progress and the verdict.

    Build it with :meth:`prepare` at test setup (which checks a file to resume
    from), start it when the test starts iterating, :meth:`finish` it after
    the test body. Samples are taken when due: by the test's thread at an
    iteration boundary (a quiet moment between steps) when one comes within a
    short grace period, or else by the background thread (a long step, or a
    test that does not iterate).
    """

    def __init__(
        self,
        plan: SoakPlan,
        path: Path | None,
        *,
        prober: Prober | None = None,
        progress: Callable[[SoakProgress], None] | None = None,
        progress_every: float = 60.0,
        meta: Mapping[str, Any] | None = None,
        install_signals: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plan = plan
        self.path = path
        self._prober = prober or get_prober()
        self._progress = progress
        self._progress_every = progress_every
        self._meta = dict(meta or {})
        self._install_signals = install_signals
        self._clock = clock
        self.buffer = SampleBuffer()
        self._file_lock: SamplesLock | None = None
        self.offset = 0.0  # seconds done by earlier processes (resume)
        self.resumes: list[float] = []
        self._segment = 0
        self._resume_from: SampleFile | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._writer: SampleWriter | None = None
        self._t0 = 0.0
        self._next_due = 0.0
        self._next_progress = 0.0
        self._grace = min(0.25 * plan.interval_s, 1.0)
        self._saved_handlers: dict[int, Any] = {}
        self._signalled = 0
        self.stop_reason: str | None = None
        self.started = False
        self.exhausted = False
        # Seconds done at the latest boundary that let the test go on.
        self.at_boundary = 0.0
        self.write_error: str | None = None
        self._outcome: SoakOutcome | None = None

    @classmethod
    def prepare(
        cls, plan: SoakPlan, directory: Path | None, *, resume: bool = False, **kwargs: Any
    ) -> SoakRun:
        """A run whose samples go to ``directory``; with ``resume``, check the file to resume."""
        path = None if directory is None else directory / samples_filename(plan.nodeid)
        run = cls(plan, path, **kwargs)
        if path is not None:
            # Before reading it: the file must not change under this run, nor
            # get the lines of two processes interleaved.
            run._file_lock = SamplesLock.acquire(path)
        try:
            # An empty file is one a lock created and no run wrote: nothing to resume.
            if resume and path is not None and path.exists() and path.stat().st_size > 0:
                try:
                    found = read_samples(path)
                except SoakError as exc:
                    raise SoakError(
                        f"cannot resume: {exc}. The file is left as it is: repair or delete "
                        "it, or run without --memwatch-soak-resume"
                    ) from None
                check_resumable(found, plan)
                if not found.complete:
                    run._resume_from = found
        except BaseException:
            run.release()
            raise
        return run

    def release(self) -> None:
        """Let another process write this test's samples file (idempotent)."""
        lock, self._file_lock = self._file_lock, None
        if lock is not None:
            lock.release()

    # -- clock ------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        """Seconds of the soak done, including those of the runs resumed from."""
        if not self.started:
            return self.offset
        return self.offset + (self._clock() - self._t0)

    @property
    def remaining(self) -> float:
        return max(0.0, self.plan.duration_s - self.elapsed)

    @property
    def interrupted(self) -> bool:
        return self.stop_reason is not None

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> None:
        """Open the samples file, take the first sample, start the sampler thread."""
        if self.started:
            return
        found = self._resume_from
        if found is not None:
            for s in found.samples:
                self.buffer.add(s["t"], s, s["segment"])
            self.resumes = list(found.resumes)
            self._segment = len(found.resumes) + 1
            self.offset = found.last_t
            self.resumes.append(self.offset)
        self._open_file(found)
        self.started = True
        self._t0 = self._clock()
        self._next_due = self.offset
        # The first report follows the first sample, below; the thread takes the rest.
        self._next_progress = self.offset + self._progress_every
        self._install()
        # The thread first, so that every sample, the first included, counts it.
        self._thread = threading.Thread(target=self._loop, name="memwatch-soak", daemon=True)
        self._thread.start()
        self._take()
        self._report_progress(force=True)

    def _open_file(self, found: SampleFile | None) -> None:
        if self.path is None:
            return
        try:
            self._writer = SampleWriter(self.path, append=found is not None)
            if found is None:
                self._writer.write(self._header())
            else:
                self._writer.write(
                    {"event": "resume", "t": self.offset, "at": now_iso(), "pid": os.getpid()}
                )
        except OSError as exc:
            # The run is worth more than its file: go on with the in-memory samples.
            self._writer = None
            self.write_error = f"cannot write {self.path}: {exc.strerror or exc}"

    def _header(self) -> dict[str, Any]:
        from pytest_memwatch.base.version import __version__

        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            **self.plan.header_fields(),
            "started_at": now_iso(),
            "started_unix": time.time(),
            "pid": os.getpid(),
            "plugin_version": __version__,
            "python": sys.version.split()[0],
            "hostname": socket.gethostname(),
            "system": platform.system(),
            "arch": platform.machine(),
            **self._meta,
        }

    def boundary(self) -> bool:
        """Called by the test between steps: sample when due; False when the run is over."""
        if self._clock() - self._t0 + self.offset >= self._next_due:
            self._take()
        if self.stop_reason is not None:
            return False
        # One reading decides and is what the step is told: a tick never
        # reports more time done than the duration, however long it waited.
        now = self.elapsed
        if now >= self.plan.duration_s:
            self.exhausted = True
            return False
        self.at_boundary = now
        return True

    def _take(self, *, force: bool = False) -> None:
        with self._lock:
            # Milliseconds, as in the file: the run read back is judged the same.
            t = round(self.elapsed, 3)
            if not force and t < self._next_due:
                return  # the other thread took it
            values = self._read()
            self.buffer.add(t, values, self._segment)
            self._write({"t": t, **values})
            interval = self.plan.interval_s
            self._next_due += interval
            if self._next_due <= t:
                # Fell behind (a step held the interpreter): the next one is one interval on.
                self._next_due = t + interval

    def _read(self) -> dict[str, int | None]:
        for attempt in range(2):
            try:
                s = self._prober.sample(collect=False)
                break
            except (ValueError, IndexError):
                # A /proc file read while another thread had it half-read: read again.
                if attempt:
                    raise
        traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None
        return {
            "rss": s.rss,
            "traced": traced,
            "gc_objects": s.gc_objects,
            "fds": s.fds,
            "threads": s.threads,
            "malloc": s.malloc,
            "blocks": s.blocks,
        }

    def _write(self, record: Mapping[str, Any]) -> None:
        if self._writer is None:
            return
        try:
            self._writer.write(record)
        except (OSError, ValueError) as exc:
            self.write_error = f"cannot write {self.path}: {getattr(exc, 'strerror', None) or exc}"
            with contextlib.suppress(OSError, ValueError):
                self._writer.close()
            self._writer = None

    def _loop(self) -> None:
        while True:
            now = self.elapsed
            wait = self._next_due + self._grace - now
            if self._progress is not None:
                wait = min(wait, self._next_progress - now)
            if self._stop.wait(max(0.0, wait)):
                return
            if self.elapsed >= self._next_due + self._grace:
                self._take()
            self._report_progress()

    def _report_progress(self, *, force: bool = False, final: bool = False) -> None:
        if self._progress is None:
            return
        now = self.elapsed
        if not (force or final) and now < self._next_progress:
            return
        self._next_progress = now + self._progress_every
        with self._lock:
            last = self.buffer.last
            ts, ys = self.buffer.series("rss", since=self.plan.warmup_s)
        rate: float | None = None
        if len(ts) >= MIN_FIT_POINTS:
            # A quick estimate for the display only; the verdict fits more points.
            idx = thin(len(ts), 100)
            rate = theil_sen([ys[i] for i in idx], [ts[i] for i in idx]).slope
        info = SoakProgress(
            nodeid=self.plan.nodeid,
            elapsed=min(now, self.plan.duration_s),
            duration=self.plan.duration_s,
            rss=None if last is None else last.get("rss"),
            rate=rate,
            samples=self.buffer.seen,
            in_warmup=now < self.plan.warmup_s,
            final=final,
        )
        with contextlib.suppress(Exception):
            # A display that fails (a closed terminal) must not end the soak.
            self._progress(info)

    def finish(self) -> SoakOutcome | None:
        """Stop sampling, close the file, restore signals; the verdict (``None`` if never started).

        Safe to call more than once: the first call decides.
        """
        if self._outcome is not None or not self.started:
            self.release()
            return self._outcome
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._take(force=True)
        self._restore()
        complete = self.exhausted and self.stop_reason is None
        elapsed = self.elapsed
        if self._writer is not None:
            self._write(
                {
                    "event": "end",
                    "t": round(self.elapsed, 3),
                    "complete": complete,
                    "reason": self.stop_reason,
                    "at": now_iso(),
                }
            )
            with contextlib.suppress(OSError):
                self._writer.close()
            self._writer = None
        self._report_progress(final=True)
        self._outcome = outcome_from(
            self.plan,
            self.buffer.samples(),
            complete=complete,
            samples_path=None if self.path is None or self.write_error else str(self.path),
            resumes=self.resumes,
            elapsed=elapsed,
            stop_reason=self.stop_reason,
        )
        if self.write_error:
            self._outcome.data["write_error"] = self.write_error
        self.release()
        return self._outcome

    # -- signals ----------------------------------------------------------------
    def _install(self) -> None:
        # Handlers can only be set from the main thread, and only while this run
        # lasts: outside a soak test SIGTERM and SIGINT keep their usual meaning.
        if not self._install_signals or threading.current_thread() is not threading.main_thread():
            return
        for sig in _SIGNALS:
            previous = signal.getsignal(sig)
            if previous is None:
                continue  # set from C: it could not be put back
            try:
                signal.signal(sig, self._on_signal)
            except (OSError, ValueError):
                continue
            self._saved_handlers[sig] = previous

    def _restore(self) -> None:
        saved, self._saved_handlers = self._saved_handlers, {}
        for sig, previous in saved.items():
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, previous)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only flags are set here: a handler runs between any two bytecodes of the
        # test's thread, which may hold any lock.
        self._signalled += 1
        if self._signalled > 1:
            # A second signal: the step in progress does not end; stop now.
            raise KeyboardInterrupt
        self.stop_reason = signal.Signals(signum).name

    # -- helpers for tests ---------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking early when the run is stopped by a signal."""
        end = time.monotonic() + seconds
        while self.stop_reason is None:
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))
