"""Ignore rules for resources left behind: ``KIND:GLOB``, parsed and matched.

The rules are configuration (``--memwatch-resources-ignore``, the ``no_leaks``
marker's ``ignore=``), so they are parsed here, below the resource watch that
applies them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


class _Frame(Protocol):
    @property
    def module(self) -> str: ...

    @property
    def filename(self) -> str: ...


class Survivor(Protocol):
    """What a rule is matched against: a resource's kind, names and where it began."""

    @property
    def kind(self) -> str: ...

    @property
    def names(self) -> tuple[str, ...]: ...

    @property
    def origin(self) -> Sequence[_Frame]: ...


# Each rule kind and what its glob is matched against (docs/resources.md).
RULE_KINDS: Mapping[str, str] = {
    "thread": "a thread's name",
    "origin": "the module name or file that started a thread or defines a task's coroutine",
    "fd": "an open file's path or type (pipe:*, anon_inode:*)",
    "socket": "a socket's peer address, or its local address when unconnected",
    "process": "a child process's command line",
    "tempfile": "the name of an entry in the temp directory",
    "task": "an asyncio task's coroutine name or task name",
}


RULE_EXAMPLE = "KIND:GLOB, e.g. thread:ThreadPoolExecutor-* or origin:grpc.*"


# pytest's own base temp directory ("pytest-of-<user>") is made by the first test
# that asks for tmp_path and stays for the next runs: not the test's leak.
DEFAULT_RULES = ("tempfile:pytest-of-*",)


@dataclass(frozen=True)
class IgnoreRule:
    """``KIND:GLOB``: survivors of that kind whose name matches are not leaks."""

    kind: str
    pattern: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.pattern}"

    def matches(self, res: Survivor) -> bool:
        if self.kind == "origin":
            return any(
                fnmatch.fnmatchcase(f.module, self.pattern)
                or fnmatch.fnmatchcase(f.filename, self.pattern)
                for f in res.origin
            )
        if self.kind != res.kind:
            return False
        return any(fnmatch.fnmatchcase(name, self.pattern) for name in res.names)


def parse_rule(text: str) -> IgnoreRule:
    """Parse ``KIND:GLOB``; ``ValueError`` says what is wrong and shows the expected form."""
    kind, sep, pattern = text.strip().partition(":")
    kind, pattern = kind.strip(), pattern.strip()
    if not sep:
        raise ValueError(f"no KIND: prefix; expected {RULE_EXAMPLE}")
    if kind not in RULE_KINDS:
        raise ValueError(
            f"unknown kind {kind!r} (known: {', '.join(RULE_KINDS)}); expected {RULE_EXAMPLE}"
        )
    if not pattern:
        raise ValueError(f"empty pattern after '{kind}:'; expected {RULE_EXAMPLE}")
    return IgnoreRule(kind, pattern)


def parse_rules(texts: Iterable[str]) -> tuple[IgnoreRule, ...]:
    return tuple(parse_rule(t) for t in texts)
