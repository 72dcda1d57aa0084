"""Short, safe descriptions of objects and their types, for the attribution report."""

from __future__ import annotations

import reprlib
import sys
from collections import deque

from pytest_memwatch.base.units import format_size

_repr = reprlib.Repr()
_repr.maxstring = 80
_repr.maxother = 80
_repr.maxlist = 4
_repr.maxdict = 4

# reprlib abbreviates these itself; anything else bigger than this is named, not printed.
_REPR_SAFE = (str, list, tuple, dict, set, frozenset, deque, int, float, bool, type(None))
_REPR_MAX_SIZE = 4096


def short_repr(obj: object) -> str:
    """A repr of at most about 80 characters, never the repr of a large object.

    ``reprlib`` abbreviates containers and strings, but for any other type it
    builds the full repr first: for a 200 MiB ``bytearray`` that is an 800 MiB string.
    """
    try:
        if not isinstance(obj, _REPR_SAFE):
            size = sys.getsizeof(obj)
            if size > _REPR_MAX_SIZE:
                return f"<{type_name(obj)} of {format_size(size)}>"
        return _repr.repr(obj)
    except Exception as exc:  # a broken __repr__ or __sizeof__ must not break the report
        return f"<{type(obj).__name__} (repr failed: {type(exc).__name__})>"


def qualified_name(t: type) -> str:
    mod = t.__module__
    return t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"


def type_name(obj: object) -> str:
    return qualified_name(type(obj))
