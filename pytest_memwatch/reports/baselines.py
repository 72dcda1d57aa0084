"""Saved runs (baselines), stored the way pytest-benchmark stores benchmark runs.

Layout::

    .memwatch/                      (--memwatch-storage, relative to the rootdir)
        .gitignore                  "*": saved runs are machine-specific, never committed
        CACHEDIR.TAG                so backup tools skip the directory
        Linux-CPython-3.11-64bit/   one directory per machine id
            0001_main.json          NNNN_NAME.json: a complete results document
            0002_feature-x.json

A saved run is an ordinary results document, so every tool that reads one
(``report``, ``compare``, ``history``) reads the other. Writes are atomic
(temp file + rename); a file that cannot be read is reported and left
untouched, never overwritten or renumbered over.
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_memwatch.base.files import default_file_mode, make_dirs, write_temp
from pytest_memwatch.base.limits import has_control_chars
from pytest_memwatch.reports.results_file import iter_dumps, load_results
from pytest_memwatch.reports.validation import ResultsError

_RUN_FILE = re.compile(r"^(?P<number>[0-9]{4,})_(?P<name>.+)\.json$")
GITIGNORE = "# Created by pytest-memwatch: saved runs are specific to one machine.\n*\n"
# The signature is fixed by https://bford.info/cachedir/ ; tools match it byte for byte.
CACHEDIR_TAG = (
    b"Signature: 8a477f597d28d172789f06886806bc55\n"
    b"# This file is a cache directory tag created by pytest-memwatch.\n"
    b"# For information about cache directory tags, see:\n"
    b"#\thttps://bford.info/cachedir/\n"
)


class BaselineError(Exception):
    """A saved run that cannot be found or read; the message says which and why."""


def machine_id() -> str:
    """This machine's storage key, as pytest-benchmark makes it: ``Linux-CPython-3.11-64bit``."""
    return "-".join(
        (
            platform.system() or "unknown",
            platform.python_implementation(),
            ".".join(platform.python_version_tuple()[:2]),
            platform.architecture()[0],
        )
    )


@dataclass(frozen=True)
class SavedRun:
    """One saved run file (not yet read)."""

    path: Path
    number: int
    name: str
    machine: str

    @property
    def label(self) -> str:
        """How messages name the run: ``0003_main``."""
        return self.path.stem

    def load(self) -> dict[str, Any]:
        """Read and validate the run; raise :class:`BaselineError` naming the file."""
        try:
            return load_results(self.path)
        except ResultsError as exc:
            raise BaselineError(f"saved run {exc}; it was left untouched") from None


def resolve_storage(storage: str | os.PathLike[str], rootdir: str | os.PathLike[str]) -> Path:
    """The storage directory: ``storage`` itself when absolute, else under ``rootdir``."""
    path = Path(storage).expanduser()
    return path if path.is_absolute() else Path(rootdir) / path


def ensure_storage(storage: Path) -> None:
    """Create the storage directory with its ``.gitignore`` and ``CACHEDIR.TAG``, atomically.

    As pytest's cache does: the directory is assembled under a temporary name
    and renamed into place, so no process ever sees it without its
    ``.gitignore`` (and a saved run can never be committed by accident).
    """
    if storage.is_dir():
        return
    make_dirs(storage.parent)
    tmp = Path(tempfile.mkdtemp(prefix=".memwatch-tmp-", dir=storage.parent))
    try:
        # mkdtemp makes 0700; the storage directory should be as open as any other.
        os.chmod(tmp, default_file_mode() | 0o111)
        (tmp / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
        (tmp / "CACHEDIR.TAG").write_bytes(CACHEDIR_TAG)
        try:
            tmp.rename(storage)
        except OSError as exc:
            # Another process won the race: its directory is just as good.
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not storage.is_dir():
                raise
    finally:
        if tmp.exists():
            for child in tmp.iterdir():
                child.unlink()
            tmp.rmdir()


def list_runs(storage: Path, machine: str | None = None) -> list[SavedRun]:
    """Saved runs under ``storage`` (one machine's, or all), oldest first per machine.

    Files that do not look like ``NNNN_NAME.json`` are ignored.
    """
    if not storage.is_dir():
        return []
    machines = (
        [machine]
        if machine is not None
        else sorted(p.name for p in storage.iterdir() if p.is_dir() and not p.name.startswith("."))
    )
    runs: list[SavedRun] = []
    for m in machines:
        folder = storage / m
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            match = _RUN_FILE.match(p.name)
            if match and p.is_file():
                runs.append(SavedRun(p, int(match["number"]), match["name"], m))
    return sorted(runs, key=lambda r: (r.machine, r.number, r.name))


def find_run(storage: Path, query: str, machine: str) -> SavedRun | None:
    """The saved run ``query`` names: latest when empty, else by number, name or ``NNNN_NAME``.

    This machine's runs are searched first; when none match there, every
    machine's (the caller warns about comparing across machines).
    """
    for scope in (machine, None):
        runs = list_runs(storage, scope)
        if query:
            runs = [
                r
                for r in runs
                if query in (r.label, r.name) or (query.isdigit() and int(query) == r.number)
            ]
        if runs:
            # Latest: highest number on this machine; across machines, newest file.
            if scope is None:
                return max(runs, key=lambda r: (r.path.stat().st_mtime, r.number))
            return runs[-1]
    return None


def save_run(doc: Mapping[str, Any], storage: Path, name: str, machine: str | None = None) -> Path:
    """Store ``doc`` as the next ``NNNN_NAME.json`` of this machine; return its path.

    Raises ``OSError`` when the storage cannot be written (the caller turns it
    into a warning). No partial file is ever left behind.
    """
    if (
        not name
        or any(c in name for c in "/\\:\0")
        or name.startswith(".")
        or has_control_chars(name)
    ):
        # A newline in a file name hides the run from find_run and list_runs.
        raise ValueError(f"bad name for a saved run: {name!r} (use e.g. main)")
    ensure_storage(storage)
    folder = storage / (machine or machine_id())
    folder.mkdir(exist_ok=True)
    tmp = write_temp(folder, iter_dumps(doc), prefix=".save-")
    try:
        number = max((r.number for r in list_runs(storage, folder.name)), default=0) + 1
        while True:
            target = folder / f"{number:04d}_{name}.json"
            # link() refuses to replace: two runs saving at once never take the
            # same number, and a corrupt older run is never overwritten.
            try:
                os.link(tmp, target)
                break
            except FileExistsError:
                number += 1
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                # File systems without hard links: rename, after checking the name is free.
                if target.exists():
                    number += 1
                    continue
                os.replace(tmp, target)
                break
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return target


def load_history(path: Path) -> tuple[dict[str, list[tuple[SavedRun, dict[str, Any]]]], list[str]]:
    """Every readable saved run under ``path``, grouped by machine, and a problem per bad file.

    ``path`` is a storage directory (``.memwatch``) or one machine's directory in it.
    """
    if any(_RUN_FILE.match(p.name) for p in path.iterdir() if p.is_file()):
        runs = list_runs(path.parent, path.name)
    else:
        runs = list_runs(path)
    grouped: dict[str, list[tuple[SavedRun, dict[str, Any]]]] = {}
    problems: list[str] = []
    for run in runs:
        try:
            loaded = run.load()
        except BaselineError as exc:
            problems.append(str(exc))
            continue
        # Grouped only once read: a machine whose every run is unreadable has no runs.
        grouped.setdefault(run.machine, []).append((run, loaded))
    return grouped, problems
