"""The results document on disk: schema, validation, atomic writing and loading.

Every file the reports layer writes (results JSON, HTML reports, saved
baselines) goes through :func:`atomic_write`, and every results document it
reads goes through :func:`load_results`, so that "never a truncated file" and
"a clear error naming the file" each have one implementation.

The published JSON Schema (``reports/schema/results.schema.json``, copied to
``docs/results.schema.json``) is the single description of the document. At run
time it is checked by :func:`validate`, a small interpreter of the subset of
JSON Schema that file uses: ``jsonschema`` is a test dependency, not a runtime
one, and a pytest plugin should not pull a compiled dependency into every
user's environment only to read its own files. The test suite checks every
document with the real ``jsonschema`` too, and checks that the schema uses no
keyword this interpreter would ignore.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_memwatch.base.files import (
    atomic_write,
    json_kind,
    loads_bounded,
    parse_json_constant,
    parse_json_float,
    parse_json_int,
    read_bounded,
    too_large,
)
from pytest_memwatch.base.limits import MAX_RESULTS_BYTES
from pytest_memwatch.reports.results import SCHEMA_VERSION, Totals

TOOL = "pytest-memwatch"
SUPPORTED_VERSIONS = (SCHEMA_VERSION,)

# Keywords the schema file may use. Annotations are ignored on purpose; any
# other keyword would be silently skipped by validate(), so a test forbids it.
VALIDATED_KEYWORDS = frozenset(
    {
        "type",
        "const",
        "enum",
        "required",
        "properties",
        "additionalProperties",
        "items",
        "minimum",
        "$ref",
        "anyOf",
    }
)
ANNOTATION_KEYWORDS = frozenset(
    {"$schema", "$id", "$defs", "$comment", "title", "description", "examples", "default", "format"}
)


class ResultsError(ValueError):
    """A results file that cannot be read or is not a valid results document.

    The message starts with the file name, e.g.
    ``results.json: not a pytest-memwatch results document (no schema_version)``.
    """


# -- schema -----------------------------------------------------------------------


@cache
def load_schema() -> dict[str, Any]:
    """The published JSON Schema of the results document (draft 2020-12)."""
    text = (
        resources.files("pytest_memwatch")
        .joinpath("reports/schema/results.schema.json")
        .read_text(encoding="utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


_JSON_TYPES: Mapping[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is_type(value: object, name: str) -> bool:
    # bool is an int in Python but not a number in JSON.
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _JSON_TYPES[name])


def _describe(value: object) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref are supported, got {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node  # type: ignore[no-any-return]


def _errors(
    value: object, schema: Mapping[str, Any], root: Mapping[str, Any], path: str
) -> list[str]:
    """Schema violations of ``value``, each as ``"where: what"`` (first ones only)."""
    where = path or "(top level)"
    if "$ref" in schema:
        from_ref = _errors(value, _resolve(schema["$ref"], root), root, path)
        if from_ref:
            return from_ref
    if "anyOf" in schema:
        options = [_errors(value, sub, root, path) for sub in schema["anyOf"]]
        if all(options):
            # The shortest explanation is usually the branch that was meant.
            return min(options, key=len)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            return [f"{where}: {_describe(value)} is not of type {' or '.join(types)}"]
    if "const" in schema and value != schema["const"]:
        return [f"{where}: expected {_describe(schema['const'])}, got {_describe(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(_describe(v) for v in schema["enum"])
        return [f"{where}: {_describe(value)} is not one of {allowed}"]
    if (
        "minimum" in schema
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value < schema["minimum"]
    ):
        return [f"{where}: {_describe(value)} is less than {schema['minimum']}"]
    found: list[str] = []
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                found.append(f"{where}: missing required key {key!r}")
        props: Mapping[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            sub_path = f"{path}/{key}" if path else str(key)
            if key in props:
                found += _errors(item, props[key], root, sub_path)
            elif extra is False:
                found.append(f"{where}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                found += _errors(item, extra, root, sub_path)
            if len(found) >= 5:
                break
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += _errors(item, schema["items"], root, f"{path}/{i}" if path else str(i))
            if len(found) >= 5:
                break
    return found


def validate(doc: object) -> list[str]:
    """Return the schema violations of ``doc`` (empty when it is a valid document)."""
    schema = load_schema()
    return _errors(doc, schema, schema, "")


# -- reading ----------------------------------------------------------------------


def document_version(doc: object, name: str) -> object:
    """The ``schema_version`` of a pytest-memwatch document, before checking it is supported.

    Raises :class:`ResultsError` for anything that is not a memwatch document at all.
    """
    foreign = f"{name}: not a pytest-memwatch results document"
    if not isinstance(doc, dict):
        raise ResultsError(f"{foreign} (the top level is {json_kind(doc)}, not an object)")
    if "schema_version" not in doc:
        raise ResultsError(f"{foreign} (no schema_version)")
    if doc.get("tool") != TOOL:
        raise ResultsError(f"{foreign} (tool is {_describe(doc.get('tool'))})")
    version: object = doc["schema_version"]
    # True == 1 in Python; a boolean version is still not a version.
    return repr(version) if isinstance(version, bool) else version


def check_document(doc: object, name: str) -> dict[str, Any]:
    """Check that ``doc`` is a results document this version can read; return it.

    ``name`` is the file name used in messages. Raises :class:`ResultsError`.
    """
    version = document_version(doc, name)
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
        raise ResultsError(
            f"{name}: schema_version {_describe(version)} is not supported by this "
            f"pytest-memwatch (it reads {supported}); use the pytest-memwatch version "
            "that wrote the file"
        )
    assert isinstance(doc, dict)
    tests = doc.get("tests")
    if isinstance(tests, StreamedTests):
        # Checked one test at a time: the document is never whole in memory.
        problems = validate({**doc, "tests": []})
        if not problems:
            schema = load_schema()
            item = schema["properties"]["tests"]["items"]
            for index, test in enumerate(tests):
                problems = _errors(test, item, schema, f"tests/{index}")
                if problems:
                    break
    else:
        problems = validate(doc)
    if problems:
        # validate() stops early, so the number of other problems is not known exactly.
        more = " (and other problems)" if len(problems) > 1 else ""
        raise ResultsError(f"{name}: does not match the results schema: {problems[0]}{more}")
    return doc


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


# -- reading in a stream --------------------------------------------------------------
# A results document of 50 000 tests is tens of MB of JSON and, parsed whole,
# hundreds of MB of Python objects. The CLI reads it as a stream instead: the
# top-level object is walked key by key, and the ``tests`` array one element
# at a time, each element parsed by the standard library's C decoder
# (``JSONDecoder.raw_decode``) out of a buffer that holds about one test. Any
# valid JSON layout is read this way, not only the one-test-per-line layout
# memwatch writes; no streaming-parser dependency is needed.

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


def write_results(doc: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a results document atomically (see :func:`atomic_write`)."""
    return atomic_write(path, dumps(doc))


# -- merging shards ----------------------------------------------------------------


def merge_documents(
    inputs: Sequence[tuple[str, object]],
) -> tuple[dict[str, Any], list[str]]:
    """Merge shard documents (``(file name, parsed JSON)`` pairs) into one; return it and warnings.

    Tests are concatenated in input order, totals recomputed, and each shard's
    run metadata kept under ``shards`` (a merged input contributes its own
    shards, so merging is associative); the shards' session ledgers are merged
    into one (:func:`pytest_memwatch.reports.ledger.merge_shard_ledgers`). The merged
    ``run`` spans the shards: earliest start, latest finish, the sum of their
    workers. Raises
    :class:`ResultsError` for a foreign or invalid input, mismatched schema
    versions, or a test id in two shards with different results (identical
    copies, e.g. the same shard given twice, are merged).
    """
    if not inputs:
        raise ResultsError("nothing to merge: give at least one results file")
    versions = [(name, document_version(raw, name)) for name, raw in inputs]
    first_name, first_version = versions[0]
    for name, version in versions[1:]:
        if version != first_version:
            raise ResultsError(
                f"{name}: schema_version {_describe(version)} differs from schema_version "
                f"{_describe(first_version)} of {first_name}; merge only results written "
                "by the same pytest-memwatch version"
            )
    docs = [(name, check_document(raw, name)) for name, raw in inputs]

    shards: list[dict[str, Any]] = []
    offsets: list[int] = []
    # Per node id: the input it is taken from, that input's name, and a digest
    # of its result (the tests themselves are read again when written out).
    owner: dict[str, tuple[int, str, bytes]] = {}
    conflicts: list[str] = []
    ledgers: list[tuple[int, Any]] = []
    counted = Totals()
    kept = 0
    for position, (name, doc) in enumerate(docs):
        offset = len(shards)
        offsets.append(offset)
        ledgers.append((offset, doc.get("ledger")))
        own_shards = doc.get("shards") or [
            {"file": name, "run": doc["run"], "tests": len(doc["tests"])}
        ]
        shards.extend(own_shards)
        for test in doc["tests"]:
            bare = {k: v for k, v in test.items() if k != "shard"}
            digest = hashlib.sha256(
                json.dumps(bare, sort_keys=True, default=str).encode("utf-8")
            ).digest()
            nodeid = test["nodeid"]
            # Duplicates within one input are that run's business; across inputs
            # they mean two shards ran the same test.
            if nodeid in owner and owner[nodeid][0] != position:
                if owner[nodeid][2] != digest:
                    conflicts.append(f"{nodeid} is in both {owner[nodeid][1]} and {name}")
                continue
            owner.setdefault(nodeid, (position, name, digest))
            counted.add(test)
            kept += 1
    if conflicts:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise ResultsError(
            f"{conflicts[0]} with different results{more}: each test must run in one shard "
            "only (identical copies are merged)"
        )

    def merged_tests() -> Iterator[dict[str, Any]]:
        for position, (_, doc) in enumerate(docs):
            for test in doc["tests"]:
                if owner[test["nodeid"]][0] == position:
                    yield {**test, "shard": offsets[position] + int(test.get("shard", 0))}

    tests: Iterable[dict[str, Any]]
    if all(isinstance(doc["tests"], list) for _, doc in docs):
        tests = list(merged_tests())
    else:
        tests = _Reiterable(merged_tests, kept)

    runs = [s["run"] for s in shards]
    run = dict(runs[0])
    run["started_at"] = min(str(r["started_at"]) for r in runs)
    finished = [str(r["finished_at"]) for r in runs if r.get("finished_at")]
    run["finished_at"] = max(finished) if finished else None
    run["workers"] = sum(int(r.get("workers") or 1) for r in runs)
    run["unavailable_probes"] = {
        k: v for r in runs for k, v in (r.get("unavailable_probes") or {}).items()
    }
    warnings: list[str] = []
    commits = {r.get("commit") for r in runs}
    if len(commits) > 1:
        run["commit"] = None
        listed = ", ".join(str(c)[:12] for c in sorted(commits, key=str))
        warnings.append(f"the shards come from different commits ({listed})")
    for key in ("plugin_version", "python", "pytest_version"):
        values = {str(r.get(key)) for r in runs}
        if len(values) > 1:
            warnings.append(f"the shards differ in {key} ({', '.join(sorted(values))})")

    merged = {
        "schema_version": docs[0][1]["schema_version"],
        "tool": TOOL,
        "run": run,
        "tests": tests,
        "totals": counted.to_dict(),
        "shards": shards,
    }
    from pytest_memwatch.reports.ledger import merge_shard_ledgers

    ledger = merge_shard_ledgers(ledgers)
    if ledger is not None:
        merged["ledger"] = ledger
    return merged, warnings


class _Reiterable:
    """Tests produced afresh by ``make()`` at each iteration; ``len()`` is known."""

    def __init__(self, make: Callable[[], Iterator[dict[str, Any]]], count: int) -> None:
        self._make = make
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._make()
