"""Temp files and directories: top-level entries of the temp directory this process made.

The audit hook (:mod:`.audit`) tells each open :class:`TempNotes` what the
process creates, renames and removes there, so another process's files are
never blamed; an entry that already existed when first touched is not new.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from pytest_memwatch.resources.survivor import Resource


class TempNotes:
    """Top-level temp-directory entries this process creates while a watch is open."""

    def __init__(self) -> None:
        root = tempfile.gettempdir()
        self.roots = tuple({os.path.normpath(root), os.path.realpath(root)})
        # entry -> it existed when first touched (then it is not new)
        self.seen: dict[str, bool] = {}

    def _entry(self, path: Any) -> tuple[str, bool] | None:
        """The top-level temp entry ``path`` is in, and whether it is that entry itself."""
        try:
            text = os.fsdecode(path)
        except TypeError:
            return None
        if not os.path.isabs(text):
            text = os.path.join(os.getcwd(), text)
        text = os.path.normpath(text)
        for root in self.roots:
            if text.startswith(root + os.sep):
                top, _, rest = text[len(root) + 1 :].partition(os.sep)
                return os.path.join(root, top), not rest
        return None

    def note(self, path: Any) -> None:
        found = self._entry(path)
        if found is not None and found[0] not in self.seen:
            self.seen[found[0]] = os.path.lexists(found[0])

    def forget(self, path: Any) -> None:
        # A new entry removed again is dropped from the notes: a test that makes
        # and removes a temp file every run must not grow them (the harness
        # would measure itself).
        found = self._entry(path)
        if found is not None and found[1] and self.seen.get(found[0]) is False:
            del self.seen[found[0]]

    def survivors(self) -> list[str]:
        return [e for e, existed in self.seen.items() if not existed and os.path.lexists(e)]


def describe_temp(path: str) -> Resource:
    what = "temp directory" if os.path.isdir(path) and not os.path.islink(path) else "temp file"
    base = os.path.basename(path)
    return Resource(
        "tempfile",
        ("tempfile", path),
        f"{what} {path}",
        names=(base, path),
        signature=f"tempfile:{base}",
    )


def temp_entries() -> list[Resource]:
    """Every entry at the top of the temp directory now (for session-start records)."""
    root = tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return []
    return [describe_temp(os.path.join(root, n)) for n in names]
