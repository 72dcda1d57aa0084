"""Per-test results kept on disk while a session runs, with running totals in memory.

A suite of 50 000 tests gives 50 000 result records; kept as Python objects
until the session ends they cost hundreds of MiB. :class:`ResultSpool`
writes each record to a temporary JSON Lines file as the test finishes and
keeps in memory only the running totals (:class:`pytest_memwatch.reports.results.Totals`);
the reports then read the records back one at a time.

The file is a :func:`tempfile.TemporaryFile` beside the outputs (the directory
of ``--memwatch-json`` or ``--memwatch-html``, so it lands on the disk the
results go to, not in a RAM-backed ``/tmp``): on POSIX it has no name from the
moment it is created, so nothing is left behind however the session ends, a
``kill -9`` included; elsewhere it is removed when closed. Where no file can
be created the records stay in memory. Nothing here imports pytest.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, Any

from pytest_memwatch.reports.results import Totals


class ResultSpool:
    """Test records (results-document dicts) in arrival order, on disk; totals in memory.

    Iterating yields the records written so far, each a fresh dict; ``len()``
    is their number. Usable as the ``tests`` of a results document by the
    streaming writers (:func:`pytest_memwatch.reports.results_file.iter_dumps`,
    :func:`pytest_memwatch.reports.html.render_report`).

    >>> spool = ResultSpool(None)
    >>> spool.add({"nodeid": "t.py::a", "outcome": "passed"})
    >>> [t["nodeid"] for t in spool], len(spool)
    (['t.py::a'], 1)
    >>> spool.close()
    """

    def __init__(self, directories: Sequence[str | None] = (), *, spool: bool = True) -> None:
        self.totals = Totals()
        self._file: IO[bytes] | None = None
        self._memory: list[dict[str, Any]] | None = None
        self._count = 0
        if spool:
            self._file = _temporary(directories)
        if self._file is None:
            self._memory = []

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def add(self, test: dict[str, Any]) -> None:
        """Record one test (a results-document test dict) and count it in the totals."""
        self.totals.add(test)
        self._count += 1
        if self._file is None:
            assert self._memory is not None
            self._memory.append(test)
            return
        # allow_nan=False, as every memwatch document is written: the error
        # surfaces here, with the test, not at the end.
        line = json.dumps(test, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        self._file.write(line.encode("utf-8") + b"\n")

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._file is None:
            yield from list(self._memory or ())
            return
        f = self._file
        f.flush()
        # Read in chunks at an offset, the writing position put back after
        # each: records may still be added while a reader goes through them.
        offset, left, rest = 0, self._count, b""
        while left:
            end = f.tell()
            f.seek(offset)
            chunk = f.read(1 << 16)
            f.seek(end)
            if not chunk:
                return
            offset += len(chunk)
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines[:left]:
                yield json.loads(line)
            left -= min(left, len(lines))

    def close(self) -> None:
        """Drop the records (the file goes with them)."""
        f, self._file = self._file, None
        if f is not None:
            f.close()
        self._memory = []
        self._count = 0


def _temporary(directories: Sequence[str | None]) -> IO[bytes] | None:
    """An anonymous temporary file in the first usable directory (the system's last)."""
    for directory in [*directories, None]:
        if directory is not None and not os.path.isdir(directory):
            continue
        try:
            return tempfile.TemporaryFile(
                prefix=".memwatch-results-", suffix=".jsonl", dir=directory
            )
        except OSError:
            continue
    return None
