"""Switchable faults: each reproduces a classic leak in one component.

Faults are off by default. They are switched on by name, either through the
``REFERENCE_APP_FAULTS`` environment variable (comma-separated names) or through
the ``faults`` entry of a component's config. Every component declares its own
faults at import time with :func:`register`, so ``reference_app.faults.FAULTS``
is the one catalogue that docs and tests read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

ENV_VAR = "REFERENCE_APP_FAULTS"


@dataclass(frozen=True)
class Fault:
    name: str
    component: str
    leaks: str  # what it leaks, in one sentence, for docs/ and failure messages


FAULTS: dict[str, Fault] = {}


def register(name: str, component: str, leaks: str) -> Fault:
    """Declare a fault; calling twice with the same arguments is harmless."""
    fault = Fault(name, component, leaks)
    existing = FAULTS.get(name)
    if existing is not None and existing != fault:
        raise ValueError(f"fault {name!r} registered twice with different descriptions")
    FAULTS[name] = fault
    return fault


def parse(spec: str | Iterable[str] | None) -> frozenset[str]:
    """Turn ``"a,b"`` or ``["a", "b"]`` into a set of names; empty parts are ignored."""
    if spec is None:
        return frozenset()
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    return frozenset(p.strip() for p in parts if p and p.strip())


def enabled_from_env() -> frozenset[str]:
    return parse(os.environ.get(ENV_VAR))


def is_enabled(name: str, configured: Iterable[str] | None = None) -> bool:
    """True when fault ``name`` is switched on by config or by the environment.

    Unknown names in the environment are reported by :func:`validate`, not here,
    so that a component can ask cheaply on its hot path.
    """
    if name not in FAULTS:
        raise KeyError(f"unknown fault {name!r}; known: {', '.join(sorted(FAULTS))}")
    return name in parse(configured) or name in enabled_from_env()


def validate(names: Iterable[str]) -> None:
    unknown = sorted(set(names) - set(FAULTS))
    if unknown:
        raise ValueError(
            f"unknown fault(s) {', '.join(unknown)}; known faults: {', '.join(sorted(FAULTS))}"
        )
