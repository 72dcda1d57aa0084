"""The results file: reading a document whole and writing one.

Every file the reports layer writes (results JSON, HTML reports, saved
baselines) goes through :func:`~pytest_memwatch.base.files.atomic_write`, and
every results document it reads goes through :func:`load_results` (or
:func:`pytest_memwatch.reports.stream.load_results_stream` for a file too large
to hold whole), so that "never a truncated file" and "a clear error naming the
file" each have one implementation. What a valid document is:
:mod:`pytest_memwatch.reports.validation`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from pytest_memwatch.base.files import loads_bounded, read_bounded
from pytest_memwatch.reports.validation import ResultsError, check_document

# -- reading ----------------------------------------------------------------------


def read_json(path: str | os.PathLike[str]) -> object:
    """Parse a JSON file; raise :class:`ResultsError` naming the file when it can't."""
    name = os.fspath(path)
    try:
        raw = read_bounded(path)
    except IsADirectoryError:
        raise ResultsError(f"{name}: is a directory, not a results file") from None
    except OSError as exc:
        raise ResultsError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if not raw.strip():
        raise ResultsError(f"{name}: empty file, not a results document")
    try:
        # Decode explicitly: json.loads(bytes) would guess UTF-16/32 from the first bytes.
        return loads_bounded(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ResultsError(f"{name}: not valid JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        # A document always ends with "}": anything else was cut off mid-write.
        hint = "" if raw.rstrip().endswith((b"}", b"]")) else " (the file ends early: truncated?)"
        raise ResultsError(f"{name}: not valid JSON{hint}: {exc}") from None
    except RecursionError:
        raise ResultsError(f"{name}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # NumberOutOfRange, or int()'s digit limit
        raise ResultsError(f"{name}: not a results document this version can read: {exc}") from None


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a results document; raise :class:`ResultsError` naming the file.

    >>> doc = load_results("memwatch.json")  # doctest: +SKIP
    >>> doc["totals"]["failed_verdicts"]  # doctest: +SKIP
    0
    """
    return check_document(read_json(path), os.fspath(path))


# -- writing ----------------------------------------------------------------------


def dumps(doc: Mapping[str, Any]) -> str:
    """Serialise a results document the way every memwatch file is written."""
    return "".join(iter_dumps(doc))


def iter_dumps(doc: Mapping[str, Any]) -> Iterator[str]:
    """Serialise a results document in pieces, its tests one per line.

    ``doc["tests"]`` may be any iterable (a :class:`pytest_memwatch.reports.spool.ResultSpool`):
    the tests are read and written one at a time, so a document of 50 000
    tests is never held as one string. One test per line also lets a reader
    take a test at a time (:func:`iter_tests`).
    """

    # allow_nan=False: NaN/Infinity are not JSON, and other tools would choke on them.
    def encode(value: object) -> str:
        # Nested lines one space further in; JSON strings hold no raw newline.
        return json.dumps(value, indent=1, ensure_ascii=False, allow_nan=False).replace("\n", "\n ")

    keys = list(doc)
    yield "{"
    for i, key in enumerate(keys):
        yield ("\n " if i == 0 else ",\n ") + json.dumps(key, ensure_ascii=False) + ": "
        value = doc[key]
        if key != "tests" or isinstance(value, (str, bytes, Mapping)):
            yield encode(value)
            continue
        first = True
        for test in value:
            yield ("[\n  " if first else ",\n  ") + json.dumps(
                test, ensure_ascii=False, allow_nan=False
            )
            first = False
        yield "[]" if first else "\n ]"
    yield "\n}\n"
