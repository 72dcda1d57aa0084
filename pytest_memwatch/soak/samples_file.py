"""The samples file of a soak test: its name, writing it, locking it, reading it back.

One file per test, JSON Lines, UTF-8::

    {"format": "pytest-memwatch-soak", "version": 1, "nodeid": ..., "started_at": ...,
     "started_unix": ..., "duration_s": ..., "interval_s": ..., "warmup_s": ...,
     "limit_rate": ..., ...}                                   # header, line 1
    {"t": 0.0, "rss": ..., "traced": ..., "gc_objects": ..., "fds": ..., "threads": ...,
     "malloc": ..., "blocks": ...}                              # one line per sample
    {"event": "resume", "t": 4.5, "at": ..., "pid": ...}        # a resumed run goes on
    {"event": "end", "t": 20.0, "complete": true, "reason": null, "at": ...}

:class:`SampleWriter` appends the lines, :class:`SamplesLock` keeps a second
process out, :func:`read_samples` reads a file back (a :class:`SoakError`
names the file and line of a problem) and :func:`check_resumable` says whether
a run may go on from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeGuard

from pytest_memwatch.base.limits import MAX_DURATION, short_repr
from pytest_memwatch.base.units import format_seconds
from pytest_memwatch.soak.buffer import FIELDS
from pytest_memwatch.soak.plan import SoakError, SoakPlan

FORMAT = "pytest-memwatch-soak"
FORMAT_VERSION = 1
# A written line reaches the kernel at once; fsync bounds what a machine crash loses.
FSYNC_EVERY_S = 2.0


def now_iso() -> str:
    """The file's timestamps (``started_at``, an event's ``at``): UTC, ISO 8601, seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def samples_filename(nodeid: str) -> str:
    """A file name for a test's samples: readable, portable and unique per node id.

    ``tests/test_app.py::test_soak[8h]`` gives
    ``tests_test_app.py__test_soak_8h_-<hash>.jsonl``; the hash of the full node id
    keeps two ids that differ only in replaced characters apart.
    """
    digest = hashlib.sha1(nodeid.encode("utf-8")).hexdigest()[:10]
    stem = _UNSAFE.sub("_", nodeid.replace("::", "__")).strip("._")[:120] or "test"
    return f"{stem}-{digest}.jsonl"


@dataclass
class SampleFile:
    """A samples file read back: its header, samples (with segments), resumes and end."""

    path: Path
    header: dict[str, Any]
    samples: list[dict[str, Any]]
    resumes: list[float]
    end: dict[str, Any] | None

    @property
    def complete(self) -> bool:
        return bool(self.end and self.end.get("complete"))

    @property
    def last_t(self) -> float:
        return float(self.samples[-1]["t"]) if self.samples else 0.0

    def plan(self) -> SoakPlan:
        h = self.header
        return SoakPlan(
            nodeid=str(h["nodeid"]),
            duration_s=float(h["duration_s"]),
            interval_s=float(h["interval_s"]),
            warmup_s=float(h["warmup_s"]),
            limit_rate=None if h.get("limit_rate") is None else float(h["limit_rate"]),
            capped_from=h.get("capped_from"),
        )


def _is_number(v: object) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_time(v: object) -> TypeGuard[float]:
    return _is_number(v) and 0 <= v <= MAX_DURATION


def read_samples(path: str | os.PathLike[str]) -> SampleFile:
    """Read and check a samples file; :class:`SoakError` names the file and line of a problem."""
    from pytest_memwatch.base.files import loads_bounded, read_bounded

    p = Path(path)
    try:
        raw = read_bounded(p)
    except OSError as exc:
        raise SoakError(f"{p}: cannot read: {exc.strerror or exc}") from None
    text_lines = raw.split(b"\n")
    if text_lines and text_lines[-1] == b"":
        text_lines.pop()
    if not text_lines:
        raise SoakError(f"{p}: empty file, not a soak samples file (no header line)")
    header: dict[str, Any] = {}
    samples: list[dict[str, Any]] = []
    resumes: list[float] = []
    end: dict[str, Any] | None = None
    segment = 0
    prev_t = 0.0
    for lineno, line in enumerate(text_lines, start=1):
        where = f"{p}:{lineno}"
        last = lineno == len(text_lines)
        try:
            obj = loads_bounded(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            cut = " (the file was cut short)" if last and not raw.endswith(b"\n") else ""
            raise SoakError(f"{where}: not valid JSON{cut}: {exc}") from None
        except (ValueError, RecursionError) as exc:
            # A number no samples file holds (a 400-digit rss, 1e400), or nesting.
            raise SoakError(f"{where}: not a soak sample this version can read: {exc}") from None
        if not isinstance(obj, dict):
            raise SoakError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        if lineno == 1:
            _check_header(obj, where)
            header = obj
            continue
        event = obj.get("event")
        if event is not None:
            if not _is_time(obj.get("t")):
                raise SoakError(
                    f"{where}: {short_repr(event)} event without a number t from 0 to "
                    f"{MAX_DURATION:.0f} s"
                )
            if event == "resume":
                segment += 1
                resumes.append(float(obj["t"]))
                end = None
            elif event == "end":
                end = obj
            # Unknown events are skipped: a newer writer may add some.
            continue
        t = obj.get("t")
        if not _is_time(t):
            # t=1e300 would make a resumed run look finished before it ran.
            raise SoakError(
                f"{where}: sample without a number t from 0 to {MAX_DURATION:.0f} s "
                f"({short_repr(t)})"
            )
        if t + 1e-6 < prev_t:
            raise SoakError(f"{where}: sample time t={t} goes back (previous {prev_t})")
        prev_t = float(t)
        sample: dict[str, Any] = {"t": float(t), "segment": segment}
        for f in FIELDS:
            v = obj.get(f)
            if v is not None and not (_is_number(v) and float(v).is_integer()):
                raise SoakError(f"{where}: {f} must be a whole number or null, got {v!r}")
            sample[f] = None if v is None else int(v)
        samples.append(sample)
    return SampleFile(p, header, samples, resumes, end)


def _check_header(obj: Mapping[str, Any], where: str) -> None:
    if obj.get("format") != FORMAT:
        raise SoakError(
            f"{where}: not a soak samples file (the first line must be a header with "
            f'"format": "{FORMAT}")'
        )
    if obj.get("version") != FORMAT_VERSION:
        raise SoakError(
            f"{where}: samples format version {obj.get('version')!r} is not supported "
            f"(this pytest-memwatch reads version {FORMAT_VERSION})"
        )
    if not isinstance(obj.get("nodeid"), str):
        raise SoakError(f"{where}: header without a nodeid")
    for key in ("duration_s", "interval_s", "warmup_s"):
        if not _is_time(obj.get(key)):
            raise SoakError(
                f"{where}: header {key} must be a number from 0 to {MAX_DURATION:.0f}, "
                f"got {short_repr(obj.get(key))}"
            )
    if obj.get("limit_rate") is not None and not _is_number(obj["limit_rate"]):
        raise SoakError(f"{where}: header limit_rate must be a number or null")


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def check_resumable(found: SampleFile, plan: SoakPlan) -> None:
    """Raise :class:`SoakError` unless ``found`` was recorded by this test with this plan."""
    h = found.header
    if h["nodeid"] != plan.nodeid:
        raise SoakError(
            f"cannot resume from {found.path}: it holds the samples of {h['nodeid']!r}, "
            f"not of {plan.nodeid!r}. Delete it, or run without --memwatch-soak-resume"
        )
    then = found.plan()
    diffs = [
        f"{name} {format_seconds(old)} then, {format_seconds(new)} now"
        for name, old, new in (
            ("duration", then.duration_s, plan.duration_s),
            ("interval", then.interval_s, plan.interval_s),
            ("warmup", then.warmup_s, plan.warmup_s),
        )
        if not _same(old, new)
    ]
    if diffs:
        raise SoakError(
            f"cannot resume from {found.path}: it was recorded with other settings "
            f"({'; '.join(diffs)}). Run with the same marker and --memwatch-soak-duration, "
            "delete the file to start over, or run without --memwatch-soak-resume"
        )


class SamplesLock:
    """An exclusive ``flock`` on a samples file, held by the run that writes it.

    Two processes running the same soak test in one rootdir would otherwise
    append to one file and interleave their lines. The second one is refused
    at setup with a :class:`SoakError`. Where ``flock`` is missing (Windows)
    or not supported by the file system, nothing is locked.
    """

    def __init__(self, path: Path, fd: int, created: bool) -> None:
        self.path = path
        self._fd: int | None = fd
        self._created = created

    @classmethod
    def acquire(cls, path: Path) -> SamplesLock | None:
        try:
            import fcntl
        except ImportError:
            return None
        from pytest_memwatch.base.files import make_dirs

        try:
            make_dirs(path.parent)
            created = not path.exists()
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            return None  # the writer meets the same problem and reports it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SoakError(
                f"{path} is being written by another process running this soak test; "
                "run a soak test in one process at a time, or give each its own "
                "--memwatch-storage"
            ) from None
        except OSError:
            os.close(fd)
            return None
        return cls(path, fd, created)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Still locked: a file this lock created and no run wrote goes again.
            if self._created and os.fstat(fd).st_size == 0:
                with contextlib.suppress(OSError):
                    self.path.unlink()
        finally:
            os.close(fd)


class SampleWriter:
    """Appends JSON lines, each flushed at once; fsync at least every few seconds.

    A line reaches the kernel before the next sample is taken, so a SIGKILL
    loses at most the sample in progress; fsync bounds what a machine crash loses.
    """

    def __init__(self, path: Path, *, append: bool, fsync_every: float = FSYNC_EVERY_S) -> None:
        from pytest_memwatch.base.files import make_dirs

        make_dirs(path.parent)
        self.path = path
        self._f: IO[str] | None = open(  # noqa: SIM115 -- kept open for the whole run
            path, "a" if append else "w", encoding="utf-8", newline="\n"
        )
        self._fsync_every = fsync_every
        self._synced = time.monotonic()

    def write(self, record: Mapping[str, Any]) -> None:
        f = self._f
        if f is None:
            return
        f.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        f.flush()
        now = time.monotonic()
        if now - self._synced >= self._fsync_every:
            os.fsync(f.fileno())
            self._synced = now

    def close(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            try:
                f.flush()
                os.fsync(f.fileno())
            finally:
                f.close()
