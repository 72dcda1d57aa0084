"""Reading a results file in bounded memory: its tests one at a time.

A results document of 50 000 tests is tens of MB of JSON and, parsed whole,
hundreds of MB of Python objects. The CLI reads it as a stream instead: the
top-level object is walked key by key, and the ``tests`` array one element
at a time, each element parsed by the standard library's C decoder
(``JSONDecoder.raw_decode``) out of a buffer that holds about one test. Any
valid JSON layout is read this way, not only the one-test-per-line layout
memwatch writes; no streaming-parser dependency is needed.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from typing import Any

from pytest_memwatch.base.files import (
    parse_json_constant,
    parse_json_float,
    parse_json_int,
    too_large,
)
from pytest_memwatch.base.limits import MAX_RESULTS_BYTES
from pytest_memwatch.reports.validation import ResultsError, check_document

_CHUNK = 1 << 16
_WS = " \t\n\r"
_NUMBER_START = frozenset("-0123456789")
_NUMBER_CHARS = frozenset("-+.eE0123456789")


class _Reader:
    """A character buffer over a file, refilled as the parser needs more."""

    def __init__(self, f: Any, name: str) -> None:
        self.f = f
        self.name = name
        self.buf = ""
        self.pos = 0
        # Characters dropped from the front of the buffer (for error offsets).
        self.base = 0
        self.eof = False
        self.read = 0
        # The same bounds as the whole-file reader (loads_bounded, read_bounded).
        self.decoder = json.JSONDecoder(
            parse_int=parse_json_int,
            parse_float=parse_json_float,
            parse_constant=parse_json_constant,
        )

    def more(self) -> bool:
        if self.eof:
            return False
        chunk = self.f.read(_CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.read += len(chunk)
        if "\0" in chunk:
            raise ResultsError(
                f"{self.name}: cannot read: binary data (NUL bytes), not a text file"
            )
        if self.read > MAX_RESULTS_BYTES:
            raise ResultsError(f"{self.name}: cannot read: {too_large(MAX_RESULTS_BYTES)}")
        if self.pos > _CHUNK:
            self.base += self.pos
            self.buf, self.pos = self.buf[self.pos :], 0
        self.buf += chunk
        return True

    def peek(self) -> str:
        """The next character that is not white space ("" at the end of the file)."""
        while True:
            buf, pos = self.buf, self.pos
            while pos < len(buf) and buf[pos] in _WS:
                pos += 1
            self.pos = pos
            if pos < len(buf):
                return buf[pos]
            if not self.more():
                return ""

    def expect(self, chars: str, what: str) -> str:
        c = self.peek()
        if c == "" or c not in chars:
            self.fail(f"expected {what}")
        self.pos += 1
        return c

    def value(self) -> Any:
        """Parse one JSON value, reading on until it is complete."""
        if self.peek() in _NUMBER_START:
            # A number cut by the buffer's end parses as a shorter number
            # ("0." as 0): read on until something follows it.
            while True:
                end = self.pos
                while end < len(self.buf) and self.buf[end] in _NUMBER_CHARS:
                    end += 1
                if end < len(self.buf) or not self.more():
                    break
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # Most likely cut by the buffer's end: read on, and fail only
                # when the file has no more to give.
                if self.more():
                    continue
                truncated = exc.pos >= len(self.buf) - 1 or "Unterminated" in exc.msg
                hint = " (the file ends early: truncated?)" if truncated else ""
                raise ResultsError(
                    f"{self.name}: not valid JSON{hint}: {exc.msg}: character {self.base + exc.pos}"
                ) from None
            except RecursionError:
                raise ResultsError(f"{self.name}: not valid JSON (nested too deeply)") from None
            except ValueError as exc:  # NumberOutOfRange, or int()'s digit limit
                raise ResultsError(
                    f"{self.name}: not a results document this version can read: {exc}"
                ) from None
            self.pos = end
            return value

    def fail(self, message: str) -> None:
        hint = " (the file ends early: truncated?)" if self.peek() == "" else ""
        raise ResultsError(f"{self.name}: not valid JSON{hint}: {message}")


def _open_text(path: str | os.PathLike[str], name: str) -> Any:
    try:
        f = open(path, encoding="utf-8-sig")  # noqa: SIM115 (closed by the caller)
    except IsADirectoryError:
        raise ResultsError(f"{name}: is a directory, not a results file") from None
    except OSError as exc:
        raise ResultsError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(f.fileno())
        if stat.S_ISREG(st.st_mode) and st.st_size > MAX_RESULTS_BYTES:
            raise ResultsError(f"{name}: cannot read: {too_large(MAX_RESULTS_BYTES)}")
    except BaseException:
        f.close()
        raise
    return f


def _walk(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """Read a document: yield ``(index, test)`` for each test, then ``(-1, head)``.

    In ``head`` an array of tests is replaced by an empty list, and its
    length is under the key ``"\0count"``.
    """
    name = os.fspath(path)
    f = _open_text(path, name)
    with f:
        r = _Reader(f, name)
        try:
            first = r.peek()
            if first == "":
                raise ResultsError(f"{name}: empty file, not a results document")
            if first != "{":
                # Not an object: the caller says what it is.
                yield -1, {"__not_object__": r.value()}
                return
            r.pos += 1
            head: dict[str, Any] = {}
            if r.peek() == "}":
                r.pos += 1
            else:
                while True:
                    if r.peek() != '"':
                        r.fail("expected a key")
                    key = r.value()
                    r.expect(":", "':'")
                    if key == "tests" and r.peek() == "[":
                        r.pos += 1
                        count = 0
                        if r.peek() == "]":
                            r.pos += 1
                        else:
                            while True:
                                yield count, r.value()
                                count += 1
                                if r.expect(",]", "',' or ']' in the tests") == "]":
                                    break
                        head[key] = []
                        head["\0count"] = count
                    else:
                        head[key] = r.value()
                    if r.expect(",}", "',' or '}'") == "}":
                        break
            if r.peek() != "":
                r.fail("extra data after the document")
        except UnicodeDecodeError:
            raise ResultsError(f"{name}: not valid JSON (not UTF-8 text)") from None
        yield -1, head


class StreamedTests:
    """The tests of a results file, read from disk each time they are iterated.

    Stands for the ``tests`` list of a document from :func:`load_results_stream`;
    ``len()`` is their number. The file was checked when it was loaded.
    """

    def __init__(self, path: str | os.PathLike[str], count: int) -> None:
        self.path = path
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for index, test in _walk(self.path):
            if index < 0:
                return
            yield test


def read_json_stream(path: str | os.PathLike[str]) -> object:
    """Parse a results file in bounded memory; its ``tests`` become a :class:`StreamedTests`.

    The whole file is read once here (a JSON error anywhere is raised now, as
    :class:`ResultsError` naming the file); the tests are not kept. Not
    checked against the schema: see :func:`load_results_stream`.
    """
    head: dict[str, Any] = {}
    for index, value in _walk(path):
        if index < 0:
            head = value
    if "__not_object__" in head:
        return head["__not_object__"]
    count = head.pop("\0count", None)
    if count is not None:
        head["tests"] = StreamedTests(path, count)
    return head


def load_results_stream(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Like :func:`load_results`, in bounded memory: ``tests`` is a :class:`StreamedTests`.

    The file is read twice (parsed, then each test checked against the
    schema), holding one test at a time.
    """
    return check_document(read_json_stream(path), os.fspath(path))
