"""The results document's schema, and checking a document against it.

The published JSON Schema (``reports/schema/results.schema.json``, copied to
``docs/results.schema.json``) is the single description of the document. At run
time it is checked by :func:`validate`, a small interpreter of the subset of
JSON Schema that file uses: ``jsonschema`` is a test dependency, not a runtime
one, and a pytest plugin should not pull a compiled dependency into every
user's environment only to read its own files. The test suite checks every
document with the real ``jsonschema`` too, and checks that the schema uses no
keyword this interpreter would ignore.

:func:`check_document` is the one gate every document read from disk passes
(:mod:`~pytest_memwatch.reports.results_file`, :mod:`~pytest_memwatch.reports.stream`,
:mod:`~pytest_memwatch.reports.merge`): a clear :class:`ResultsError` naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any

from pytest_memwatch.base.files import json_kind
from pytest_memwatch.reports.results import SCHEMA_VERSION

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


def describe(value: object) -> str:
    """A JSON value for a message, cut to 60 characters."""
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
            return [f"{where}: {describe(value)} is not of type {' or '.join(types)}"]
    if "const" in schema and value != schema["const"]:
        return [f"{where}: expected {describe(schema['const'])}, got {describe(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(describe(v) for v in schema["enum"])
        return [f"{where}: {describe(value)} is not one of {allowed}"]
    if (
        "minimum" in schema
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value < schema["minimum"]
    ):
        return [f"{where}: {describe(value)} is less than {schema['minimum']}"]
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


# -- the gate every document read passes --------------------------------------------


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
        raise ResultsError(f"{foreign} (tool is {describe(doc.get('tool'))})")
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
            f"{name}: schema_version {describe(version)} is not supported by this "
            f"pytest-memwatch (it reads {supported}); use the pytest-memwatch version "
            "that wrote the file"
        )
    assert isinstance(doc, dict)
    tests = doc.get("tests")
    if isinstance(tests, Iterable) and not isinstance(tests, (list, str, Mapping)):
        # Tests read from disk in a stream (reports.stream.StreamedTests), not
        # JSON: checked one test at a time, the document never whole in memory.
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
