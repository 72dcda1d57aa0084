"""Files every layer writes and reads: atomic writes, directories, bounded JSON reads.

Every file memwatch writes (results JSON, HTML reports, saved baselines, soak
samples) goes through :func:`atomic_write` or :func:`make_dirs`, and every JSON
file it reads goes through :func:`read_bounded` and :func:`loads_bounded`, so
"never a truncated file" and "a clear error naming the file" each have one
implementation.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from pytest_memwatch.base.limits import MAX_JSON_INT, MAX_RESULTS_BYTES, short_repr


def json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


class NumberOutOfRange(ValueError):
    pass


def parse_json_int(text: str) -> int:
    # Byte and object counts fit in 64 bits; a 400-digit integer would reach
    # float() in the comparison and the reports and raise OverflowError there.
    # Checked on the text: int() of more than 4300 digits raises by itself.
    digits = len(text.lstrip("-"))
    if digits > 19 or abs(value := int(text)) > MAX_JSON_INT:
        shown = text if digits <= 30 else f"{text[:12]}...({digits} digits)"
        raise NumberOutOfRange(f"the integer {shown} is out of range (at most 2**63-1)")
    return value


def parse_json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NumberOutOfRange(f"the number {short_repr(text)} is out of range")
    return value


def parse_json_constant(text: str) -> float:
    # json.loads accepts NaN and Infinity, which are not JSON.
    raise NumberOutOfRange(f"{text} is not a JSON number")


def loads_bounded(text: str) -> object:
    """``json.loads`` that refuses NaN, Infinity, and numbers no memwatch file holds.

    Raises ``ValueError`` (``json.JSONDecodeError`` for bad syntax).
    """
    return json.loads(
        text,
        parse_int=parse_json_int,
        parse_float=parse_json_float,
        parse_constant=parse_json_constant,
    )


def read_bounded(path: str | os.PathLike[str], limit: int = MAX_RESULTS_BYTES) -> bytes:
    """Read a text file of at most ``limit`` bytes; ``OSError`` when it is larger or binary.

    A bound, not ``read()``: ``/dev/zero`` or a FIFO never ends. Text files hold
    no NUL byte, so a binary stream is refused at its first chunk.
    """
    chunks: list[bytes] = []
    total = 0
    with open(path, "rb") as f:
        if stat.S_ISREG(os.fstat(f.fileno()).st_mode) and os.fstat(f.fileno()).st_size > limit:
            raise OSError(errno.EFBIG, too_large(limit))
        while chunk := f.read(1024 * 1024):
            if b"\0" in chunk:
                raise OSError(errno.EINVAL, "binary data (NUL bytes), not a text file")
            total += len(chunk)
            if total > limit:
                raise OSError(errno.EFBIG, too_large(limit))
            chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int) -> str:
    return f"larger than {limit // (1024 * 1024)} MiB, the most pytest-memwatch reads"


def default_file_mode() -> int:
    """The permissions a new file gets from the umask (``mkstemp`` would give 0600)."""
    # The umask can only be read by setting it; restore it at once.
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def make_dirs(path: Path) -> None:
    """``mkdir -p``, with a message that names the file in the way when there is one."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        # mkdir says "File exists" when a parent is a regular file: say which one.
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        raise NotADirectoryError(errno.ENOTDIR, f"{blocker} is not a directory") from None


Data = str | bytes | Iterable[str]


def write_temp(directory: str | os.PathLike[str], data: Data, *, prefix: str) -> str:
    """Write ``data`` to a new, fully flushed temporary file in ``directory``; return its path.

    ``data`` may be text in pieces (an iterable of ``str``, e.g.
    :func:`iter_dumps`), written as they come. The caller renames the file
    into place (or links it); on error, the renderer's included, nothing is
    left behind.
    """
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, (str, bytes)):
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            else:
                text = io.TextIOWrapper(f, encoding="utf-8", newline="")
                for piece in data:
                    text.write(piece)
                text.flush()
                # Detached, not closed: f is closed by its own with block.
                text.detach()
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_file_mode())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write(path: str | os.PathLike[str], data: Data) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The data goes to a temporary file in the target directory (so the final
    ``os.replace`` is a rename within one file system), is flushed to disk, and
    replaces the target in one step. Missing parent directories are created.
    On any error the temporary file is removed and the target is untouched;
    the ``OSError`` propagates for the caller to report. Returns the path written.
    """
    existing = _stat_or_none(path)
    if existing is not None and not (
        stat.S_ISREG(existing.st_mode) or stat.S_ISDIR(existing.st_mode)
    ):
        # A device or a pipe (/dev/null, /dev/stdout): replacing it with a regular
        # file would destroy it (as root, even /dev/null). Write into it instead.
        return _write_in_place(path, existing.st_mode, data)
    # realpath: replacing a symlink would cut the link instead of updating its target.
    target = Path(os.path.realpath(path))
    make_dirs(target.parent)
    tmp = write_temp(target.parent, data, prefix=f".{target.name}.")
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def _stat_or_none(path: str | os.PathLike[str]) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        # Missing (the usual case), or a parent that is not a directory: the
        # atomic path below reports that with its own message.
        return None


def _write_in_place(path: str | os.PathLike[str], mode: int, data: Data) -> Path:
    """Write into a character device or a FIFO, as a shell redirection would.

    Block devices and sockets are refused: writing a report over a disk is
    never what was meant. A FIFO nobody reads is refused rather than waited on.
    """
    name = os.fspath(path)
    if not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        kind = (
            "a block device"
            if stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "not a regular file"
        )
        raise OSError(
            errno.EINVAL,
            f"{name} is {kind}; memwatch writes only regular files, character devices and pipes",
        )
    flags = os.O_WRONLY | (os.O_NONBLOCK if stat.S_ISFIFO(mode) else 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OSError(errno.ENXIO, f"{name} is a pipe that nobody reads") from None
        raise
    try:
        if flags & os.O_NONBLOCK:
            os.set_blocking(fd, True)
        pieces = [data] if isinstance(data, (str, bytes)) else data
        for piece in pieces:
            view = memoryview(piece.encode("utf-8") if isinstance(piece, str) else piece)
            while view:
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return Path(path)
