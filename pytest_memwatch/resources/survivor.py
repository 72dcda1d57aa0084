"""What a survivor is: a :class:`Resource` of some kind, and the frames that say where it began.

Every kind's module describes what it finds as a :class:`Resource`; the watch,
the verdict and the ledger only read these. The helpers here shorten paths,
mask numbers in names and pick the frame a message shows.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_memwatch.base.limits import short_list

# The kinds of survivor; ignore rules add ``origin`` (config/rules.py).
ResourceKind = Literal["thread", "fd", "socket", "process", "tempfile", "task"]


@dataclass(frozen=True)
class Frame:
    """One frame of where a thread was started or a coroutine is defined."""

    filename: str
    lineno: int
    function: str
    module: str

    def where(self) -> str:
        return f"{short_path(self.filename)}:{self.lineno} in {self.function}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "lineno": self.lineno,
            "function": self.function,
            "module": self.module,
        }


@dataclass(frozen=True, eq=False)
class Resource:
    """One thread, descriptor, process, temp entry or task, described for people and rules.

    ``key`` identifies it within the process (for diffs and the session-end
    re-check); ``names`` are what ignore rules match; ``signature`` is what
    "ignore what existed at session start" compares (``None``: never ignored so).
    """

    kind: ResourceKind
    key: tuple[Any, ...]
    description: str
    names: tuple[str, ...] = ()
    origin: tuple[Frame, ...] = ()
    signature: str | None = None
    # A weak reference to the object (a task) when liveness is checked through it.
    ref: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.names[0] if self.names else "",
            "description": self.description,
            "origin": [f.to_dict() for f in self.origin],
        }


def describe_list(items: Sequence[Resource]) -> str:
    """The survivors a failure message names: alike ones once with a count, the rest counted."""
    return short_list(r.description for r in items)


def short_path(path: str) -> str:
    """``path`` relative to the working directory when inside it: what a test id shows too."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def mask_digits(text: str) -> str:
    """Numbers masked: "Thread-12 (worker)" and "Thread-3 (worker)" are the same kind of thread."""
    return re.sub(r"\d+", "#", text)


def stack(frame: Any, depth: int, skip_file: str | None = None) -> tuple[Frame, ...]:
    """Up to ``depth`` frames from ``frame`` outwards, leaving out those of ``skip_file``."""
    out: list[Frame] = []
    while frame is not None and len(out) < depth:
        code = frame.f_code
        if skip_file is None or os.path.normcase(code.co_filename) != skip_file:
            module = str(frame.f_globals.get("__name__", ""))
            out.append(Frame(code.co_filename, frame.f_lineno, code.co_name, module))
        frame = frame.f_back
    return tuple(out)


@functools.cache
def _stdlib_dirs() -> tuple[str, ...]:
    # sysconfig is imported on first need: it is slow to import, and most
    # sessions never describe a thread's starting frame.
    import sysconfig

    paths = sysconfig.get_paths()
    return tuple(
        os.path.normcase(p) + os.sep for p in {paths.get("stdlib"), paths.get("platstdlib")} if p
    )


def _is_stdlib(filename: str) -> bool:
    name = os.path.normcase(filename)
    if "site-packages" in name or "dist-packages" in name:
        return False
    return name.startswith(_stdlib_dirs()) or name.startswith("<frozen")


def shown_frame(frames: Sequence[Frame]) -> Frame | None:
    """The frame a message shows: the innermost outside the standard library.

    A thread started by a ``ThreadPoolExecutor`` is started in
    ``concurrent/futures/thread.py``; the caller that submitted the work is what
    the reader can fix.
    """
    for f in frames:
        if not _is_stdlib(f.filename):
            return f
    return frames[0] if frames else None
