"""Options whose value is optional must not swallow the test paths after them.

``pytest --memwatch-repeat tests/test_unit.py`` is parsed by argparse as the
option with the value ``tests/test_unit.py``: the user meant the option without
a value, then a test path. :func:`rescue_test_paths` rewrites such a command
line, before pytest parses it for real, into ``--memwatch-repeat= tests/...``
(the empty value is the option's "no value" form). A token is only moved back
to the test paths when it is not a valid value for the option and it names a
test: an existing file or directory, a ``.py`` file, or a node id with ``::``.
Everything else stays where it is, so a bad value still gets its usage error.

Pure: no pytest import; the plugin calls it from ``pytest_load_initial_conftests``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class OptionalValue:
    """An option that takes an optional value, and the test of a valid value."""

    option: str
    is_value: Callable[[str], bool]


def looks_like_test_path(token: str, cwd: str) -> bool:
    """True when ``token`` names something pytest would collect."""
    if not token or token.startswith("-"):
        return False
    if "::" in token:
        return True
    path = token.split("::", 1)[0]
    if path.endswith(".py"):
        return True
    try:
        return os.path.exists(os.path.join(cwd, path))
    except (OSError, ValueError):  # NUL bytes, names too long
        return False


def rescue_test_paths(args: list[str], options: Iterable[OptionalValue], cwd: str) -> list[str]:
    """Rewrite ``args`` in place; return the test paths that were moved back.

    Only ``--option VALUE`` (two tokens) is ambiguous: ``--option=VALUE`` says
    what it means and is left alone, and so is everything after ``--``.
    """
    by_flag = {o.option: o for o in options}
    moved: list[str] = []
    i = 0
    while i < len(args) - 1:
        token = args[i]
        if token == "--":
            break
        opt = by_flag.get(token)
        if opt is not None:
            value = args[i + 1]
            if not opt.is_value(value) and looks_like_test_path(value, cwd):
                args[i] = f"{token}="
                moved.append(value)
                i += 2
                continue
        i += 1
    return moved
