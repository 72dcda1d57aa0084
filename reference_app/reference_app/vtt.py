"""WebVTT reading and writing in constant memory (seed 001).

:class:`VTTReader` yields one :class:`Cue` at a time from a file of any size:
it holds the current line and the current cue, nothing else. Lines are read
with a length limit, so even a file without newlines cannot make it buffer
more than ``max_line_chars``; a cue's text is capped at ``max_cue_chars``;
and at most ``max_errors`` problems are kept (the rest are only counted).

Malformed input never crashes the reader. By default each problem is recorded
as a :class:`VTTIssue` with its line number and the reader carries on with
the next cue; with ``strict=True`` the first problem raises :class:`VTTError`
carrying the line number.

:class:`VTTWriter` writes cues as they come; writing to a path goes through a
temporary file that replaces the target only when the writer is closed
without error, so an interrupted write (disk full, crash) leaves the previous
file intact.

Fault ``vtt_reader_keeps_cues``: every cue read is also appended to a
module-level history list, so memory grows with every file read.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from reference_app import faults

FAULT_KEEPS_CUES = faults.register(
    "vtt_reader_keeps_cues",
    "VTT streaming",
    "the reader appends every cue to a module-level list, so each file read stays in memory",
).name

# Cues kept under the fault (a "debug history" nobody trims).
_CUE_HISTORY: list[Cue] = []

_TIMESTAMP = re.compile(r"^(?:(\d{1,9}):)?([0-5]\d):([0-5]\d)\.(\d{3})$")
_TIMING = re.compile(r"^(\S+)[ \t]+-->[ \t]+(\S+)(?:[ \t]+(.*))?$")
_TAG = re.compile(r"<[^>]*>")


class VTTError(ValueError):
    """A malformed WebVTT file (strict mode); ``line`` is 1-based."""

    def __init__(self, line: int, message: str, source: str = "") -> None:
        where = f"{source}:{line}" if source else f"line {line}"
        super().__init__(f"{where}: {message}")
        self.line = line
        self.reason = message


@dataclass(frozen=True, slots=True)
class VTTIssue:
    """One problem found while reading; ``line`` is 1-based."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class Cue:
    """One cue: times in seconds, raw payload text (lines joined by ``\\n``)."""

    start: float
    end: float
    text: str
    identifier: str | None = None
    settings: str = ""
    line: int = 0  # line of the timing line in the source, 0 when not read from a file

    @property
    def plain_text(self) -> str:
        """The payload without markup tags, with entities like ``&amp;`` decoded."""
        return html.unescape(_TAG.sub("", self.text))

    @property
    def duration(self) -> float:
        return self.end - self.start


def parse_timestamp(text: str) -> float:
    """``"01:02:03.450"`` or ``"02:03.450"`` to seconds; ValueError otherwise."""
    match = _TIMESTAMP.match(text)
    if match is None:
        raise ValueError(f"invalid timestamp {text!r} (expected HH:MM:SS.mmm or MM:SS.mmm)")
    hours, minutes, seconds, millis = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def format_timestamp(seconds: float) -> str:
    """Seconds to ``HH:MM:SS.mmm`` (rounded to the millisecond)."""
    if seconds < 0:
        raise ValueError(f"a timestamp cannot be negative, got {seconds}")
    total_ms = round(seconds * 1000)
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def _block_keyword(line: str, word: str) -> bool:
    return line.startswith(word) and (len(line) == len(word) or line[len(word)] in " \t")


class VTTReader:
    """Iterate the cues of a WebVTT file without loading it.

    Example::

        reader = VTTReader("talk.vtt")
        for cue in reader:
            print(cue.start, cue.plain_text)
        for issue in reader.errors:      # malformed cues, with line numbers
            print(issue)

    ``source`` is a path or an open text stream. Iterating twice reads the
    file twice (a stream is read from its current position).
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | IO[str],
        *,
        strict: bool = False,
        max_errors: int = 1000,
        max_line_chars: int = 1 << 20,
        max_cue_chars: int = 1 << 16,
        config_faults: Iterable[str] | None = None,
    ) -> None:
        self.source = source
        self.strict = strict
        self.max_errors = max_errors
        self.max_line_chars = max_line_chars
        self.max_cue_chars = max_cue_chars
        self.errors: list[VTTIssue] = []
        self.error_count = 0
        self.cue_count = 0
        self._keep = faults.is_enabled(FAULT_KEEPS_CUES, config_faults)
        self._name = os.fspath(source) if isinstance(source, str | os.PathLike) else ""

    def __iter__(self) -> Iterator[Cue]:
        self.errors = []
        self.error_count = 0
        self.cue_count = 0
        if not isinstance(self.source, str | os.PathLike):
            yield from self._parse(self.source)
            return
        # utf-8-sig drops a byte order mark; universal newlines accept CRLF and CR.
        with open(self.source, encoding="utf-8-sig", errors="replace") as stream:
            yield from self._parse(stream)

    def _issue(self, line: int, message: str) -> None:
        if self.strict:
            raise VTTError(line, message, self._name)
        self.error_count += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(VTTIssue(line, message))

    def _lines(self, stream: IO[str]) -> Iterator[tuple[int, str | None]]:
        """(line number, line without its newline); ``None`` for an over-long line.

        Whitespace-only lines come out empty: they separate blocks like blank
        lines do in the files people actually write.
        """
        number = 0
        limit = self.max_line_chars
        while True:
            line = stream.readline(limit)
            if not line:
                return
            number += 1
            if line.endswith("\n"):
                line = line[:-1]
            elif len(line) >= limit:
                # Skip the rest of the line in bounded pieces, then report it.
                while True:
                    rest = stream.readline(limit)
                    if not rest or rest.endswith("\n"):
                        break
                self._issue(number, f"line longer than {limit} characters; its cue is skipped")
                yield number, None
                continue
            if line.startswith("\ufeff"):  # a BOM on a stream not opened by us
                line = line[1:]
            line = line.rstrip("\r")
            yield number, line if line.strip() else ""

    def _parse(self, stream: IO[str]) -> Iterator[Cue]:
        lines = self._lines(stream)
        first = next(lines, None)
        if first is None:
            self._issue(1, "empty file: a WebVTT file starts with the line 'WEBVTT'")
            return
        number, line = first
        pending: tuple[int, str | None] | None = None
        if line is not None and _block_keyword(line, "WEBVTT"):
            # Header lines run up to the first blank line.
            for number, line in lines:
                if not line:
                    break
                if line is not None and "-->" in line:
                    self._issue(
                        number, "cue timing inside the header; a blank line must follow the header"
                    )
                    pending = (number, line)
                    break
        else:
            self._issue(number, f"missing 'WEBVTT' header (found {(line or '')[:40]!r})")
            pending = (number, line)  # read it as the start of the first block

        keep = self._keep
        while True:
            if pending is not None:
                number, line = pending
                pending = None
            else:
                step = next(lines, None)
                if step is None:
                    return
                number, line = step
            if line is None:
                self._skip_block(lines)
                continue
            if not line:
                continue
            if (
                _block_keyword(line, "NOTE")
                or _block_keyword(line, "STYLE")
                or _block_keyword(line, "REGION")
            ):
                self._skip_block(lines)
                continue
            identifier: str | None = None
            if "-->" not in line:
                identifier = line
                step = next(lines, None)
                if step is None or step[1] is None or "-->" not in step[1]:
                    if step is not None and step[1]:
                        self._issue(
                            step[0],
                            f"expected a cue timing line ('START --> END') after cue "
                            f"identifier {identifier!r}, found {step[1][:60]!r}",
                        )
                    else:
                        self._issue(
                            number,
                            f"cue identifier {identifier!r} is not followed by a timing line "
                            "('START --> END')",
                        )
                    if step is not None and step[1] != "":
                        self._skip_block(lines)
                    continue
                number, line = step[0], step[1]  # step[1] narrowed to str above
            timing = self._timing(number, line)
            if timing is None:
                self._skip_block(lines)
                continue
            start, end, settings = timing
            text_lines: list[str] = []
            size = 0
            too_long = False
            for step in lines:
                if step[1] is None:
                    too_long = True
                    text_lines.clear()
                    continue
                if not step[1]:
                    break
                if "-->" in step[1]:
                    # A timing line inside a payload: the blank line separating
                    # cues is missing. The spec starts a new cue here; so do we.
                    self._issue(step[0], "missing blank line before this cue")
                    pending = step
                    break
                size += len(step[1]) + 1
                if size > self.max_cue_chars:
                    if not too_long:
                        self._issue(
                            step[0],
                            f"cue text longer than {self.max_cue_chars} characters; cue skipped",
                        )
                    too_long = True
                    text_lines.clear()  # stop buffering: memory stays bounded
                    continue
                if not too_long:
                    text_lines.append(step[1])
            if too_long:
                continue
            cue = Cue(start, end, "\n".join(text_lines), identifier, settings, number)
            self.cue_count += 1
            if keep:
                _CUE_HISTORY.append(cue)
            yield cue

    def _timing(self, number: int, line: str) -> tuple[float, float, str] | None:
        match = _TIMING.match(line.strip())
        if match is None:
            self._issue(number, f"malformed cue timing {line[:60]!r} (expected 'START --> END')")
            return None
        raw_start, raw_end, settings = match.groups()
        try:
            start = parse_timestamp(raw_start)
            end = parse_timestamp(raw_end)
        except ValueError as exc:
            self._issue(number, str(exc))
            return None
        if end <= start:
            self._issue(number, f"cue ends ({raw_end}) before it starts ({raw_start})")
            return None
        return start, end, settings or ""

    def _skip_block(self, lines: Iterator[tuple[int, str | None]]) -> None:
        """Consume lines up to the next blank line (end of the current block)."""
        for _number, line in lines:
            if line == "":
                return


def read_cues(
    source: str | os.PathLike[str] | IO[str],
    *,
    strict: bool = False,
    errors: list[VTTIssue] | None = None,
    config_faults: Iterable[str] | None = None,
) -> Iterator[Cue]:
    """Generator over the cues of ``source``; problems go to ``errors`` when given.

    Example::

        problems: list[VTTIssue] = []
        texts = [cue.text for cue in read_cues("talk.vtt", errors=problems)]
    """
    reader = VTTReader(source, strict=strict, config_faults=config_faults)
    try:
        yield from reader
    finally:
        if errors is not None:
            errors.extend(reader.errors)


def escape_text(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` as WebVTT cue text requires."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class VTTWriter:
    """Write cues to a WebVTT file one at a time.

    Example::

        with VTTWriter("out.vtt") as writer:
            writer.write_cue(0.0, 1.5, "Hello & welcome")

    With a path the output appears (atomically, replacing any previous file)
    only when the ``with`` block ends without an exception. With a stream the
    caller owns it and the cues go straight into it.
    """

    def __init__(self, target: str | os.PathLike[str] | IO[str], *, header: str = "") -> None:
        if "\n" in header or "-->" in header:
            raise ValueError("the header text must be one line without '-->'")
        self._path: Path | None = None
        self._tmp: str | None = None
        self._last_start = 0.0
        self.cue_count = 0
        self._out: IO[str]
        if not isinstance(target, str | os.PathLike):
            self._out = target
        else:
            self._path = Path(target)
            fd, self._tmp = tempfile.mkstemp(
                prefix=f".{self._path.name}.", suffix=".tmp", dir=self._path.parent or "."
            )
            self._out = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        self._out.write(f"WEBVTT {header}\n\n" if header else "WEBVTT\n\n")

    def write_cue(
        self,
        start: float,
        end: float,
        text: str,
        *,
        identifier: str | None = None,
        settings: str = "",
        escape: bool = True,
    ) -> None:
        """Append one cue. ``escape=False`` keeps markup such as ``<v Speaker>``.

        Raises ValueError for times out of order (the format requires
        non-decreasing starts and ``end > start``) or text that would break
        the file's structure.
        """
        if not 0 <= start < end:
            raise ValueError(f"cue times must satisfy 0 <= start < end, got {start} and {end}")
        if start < self._last_start:
            raise ValueError(
                f"cue starts at {start}s, before the previous cue ({self._last_start}s); "
                "WebVTT requires cues in start order"
            )
        if identifier is not None and (
            "\n" in identifier or "-->" in identifier or not identifier.strip()
        ):
            raise ValueError(f"invalid cue identifier {identifier!r}")
        if "\n" in settings or "-->" in settings:
            raise ValueError(f"invalid cue settings {settings!r}")
        body = escape_text(text) if escape else text
        if "-->" in body:
            raise ValueError("cue text contains '-->'; pass escape=True")
        # A blank line would end the cue early; drop empty lines instead.
        payload = "\n".join(part for part in body.splitlines() if part.strip())
        parts = [] if identifier is None else [identifier]
        timing = f"{format_timestamp(start)} --> {format_timestamp(end)}"
        parts.append(f"{timing} {settings}" if settings else timing)
        if payload:
            parts.append(payload)
        self._out.write("\n".join(parts) + "\n\n")
        self._last_start = start
        self.cue_count += 1

    def write_note(self, text: str) -> None:
        """A NOTE block (a comment); it may not contain '-->' or blank lines."""
        if "-->" in text:
            raise ValueError("a NOTE cannot contain '-->'")
        body = "\n".join(part for part in text.splitlines() if part.strip())
        self._out.write(f"NOTE {body}\n\n")

    def close(self) -> None:
        """Finish the file: flush, fsync and move it into place (path targets)."""
        if self._path is None or self._tmp is None:
            self._out.flush()
            return
        try:
            self._out.flush()
            os.fsync(self._out.fileno())
            self._out.close()
            os.chmod(self._tmp, 0o644)  # mkstemp makes 0600; a subtitle file is not secret
            os.replace(self._tmp, self._path)
        except BaseException:
            self.abort()
            raise
        self._tmp = None

    def abort(self) -> None:
        """Drop what was written; an existing file at the target stays as it was."""
        with contextlib.suppress(OSError):
            self._out.close()
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._tmp = None

    def __enter__(self) -> VTTWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def segment_fields(segment: Any) -> tuple[float | None, float | None, str]:
    """(start, end, text) of a transcript segment.

    Accepted forms: a mapping or object with ``start``, ``end`` and ``text``;
    an object with ``start_seconds``, ``seconds`` and ``text`` (the chunked
    processor's ``ChunkResult``); or a ``(start, end, text)`` tuple.
    """
    if isinstance(segment, Mapping):
        return segment.get("start"), segment.get("end"), str(segment["text"])
    if isinstance(segment, tuple | list):
        start, end, text = segment
        return start, end, str(text)
    if hasattr(segment, "start_seconds"):
        start = float(segment.start_seconds)
        return start, start + float(segment.seconds), str(segment.text)
    return getattr(segment, "start", None), getattr(segment, "end", None), str(segment.text)


def write_transcript(
    target: str | os.PathLike[str] | IO[str], segments: Iterable[Any], *, header: str = ""
) -> int:
    """Write transcript segments as WebVTT; returns the number of cues written.

    ``segments`` take any form :func:`segment_fields`
    accepts (the transcription's chunk results among them), in start order.
    Empty segments are skipped; a segment whose end is not after its start
    (an engine reporting a zero-length word) is given one millisecond, since
    WebVTT requires ``end > start``. Used by ``transcribe --vtt out.vtt``.
    """
    with VTTWriter(target, header=header) as writer:
        for segment in segments:
            start, end, text = segment_fields(segment)
            if not text.strip():
                continue
            if start is None or end is None:
                raise ValueError(f"segment {text[:40]!r} has no start/end time; VTT needs both")
            start = max(start, 0.0)
            writer.write_cue(start, max(end, start + 0.001), text.strip())
        return writer.cue_count
