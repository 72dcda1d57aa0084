"""The bounds every reader enforces, in one place.

Markers, options, ini keys, environment variables, the fixture, the library
API, results files and soak samples files all read numbers a user (or a file)
can make arbitrarily large. Python integers have no upper bound, so a value
such as ``10**400`` would otherwise reach ``float()`` or preallocate a buffer
per run and abort the session. Each bound is documented in docs/reference.md.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

# A size in bytes: 8 EiB, more memory than any machine addresses.
MAX_SIZE = 2**63 - 1
# A duration in seconds: one year (a soak run, an interval, a sample time).
MAX_DURATION = 366 * 86400.0
# Repetitions of one test (markers, --memwatch-repeat, check_leaks): each run
# keeps a reading per metric, and a verdict needs far fewer runs than this.
MAX_RUNS = 1000
MAX_WARMUP = 1000
# Integers read from results and samples files (byte counts, object counts):
# what a signed 64-bit counter holds.
MAX_JSON_INT = 2**63 - 1
# A results document read by the CLI or as a baseline: read at most this many
# bytes, so `report /dev/zero` is an error rather than a MemoryError.
MAX_RESULTS_BYTES = 1024 * 1024 * 1024
# How many distinct items a message names before "and N more" (a failed
# resources check, the session ledger's lines).
MESSAGE_ITEMS = 5
# The session ledger's tests that left the most memory behind: each process
# keeps this many, and merging the processes' ledgers keeps this many again.
TOP_GROWTH = 10


def check_count(name: str, value: object, *, minimum: int, maximum: int) -> int:
    """Return ``value`` when it is a whole number in range; else raise a named error.

    ``TypeError`` for a non-integer (bool included), ``ValueError`` for one out
    of range; both messages name ``name``, the value and the expected form.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name}={short_repr(value)}: expected a whole number from {minimum} to {maximum}, "
            f"e.g. {name}={max(minimum, 3)}"
        )
    if not minimum <= value <= maximum:
        raise ValueError(
            f"{name}={short_repr(value)}: must be from {minimum} to {maximum}, "
            f"e.g. {name}={max(minimum, 3)}"
        )
    return value


def short_repr(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for quoting bad input in a message.

    A huge integer is described by its number of digits: quoting 400 digits
    buries the message, and ``repr`` of one over 4300 digits raises.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        digits = int(value.bit_length() * 0.30103) + 1
        return f"{'-' if value < 0 else ''}<a {digits}-digit integer>"
    try:
        text = repr(value)
    except Exception as exc:  # a user object whose __repr__ raises, or a huge int inside
        return f"<{type(value).__name__} object (repr failed: {type(exc).__name__})>"
    return text if len(text) <= limit else f"{text[: limit - 12]}...({len(text)} chars)"


def has_control_chars(text: str) -> bool:
    """Whether ``text`` holds a newline, tab or any other control or format character."""
    return any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text)


def short_list(texts: Iterable[str], limit: int = MESSAGE_ITEMS) -> str:
    """``texts`` joined by ``"; "``, alike ones named once with a count, cut after ``limit``.

    A test that leaks a thread per call leaves many alike; listing each buries
    the one line that matters. Order of first appearance is kept:
    ``short_list(["a", "b", "a"]) == "a (x2); b"``, and past ``limit``
    distinct items the rest is counted (``"...; and 3 more"``).
    """
    counts: dict[str, int] = {}
    for text in texts:
        counts[text] = counts.get(text, 0) + 1
    grouped = [t if n == 1 else f"{t} (x{n})" for t, n in counts.items()]
    more = len(grouped) - limit
    return "; ".join(grouped[:limit]) + (f"; and {more} more" if more > 0 else "")
