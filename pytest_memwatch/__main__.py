"""``python -m pytest_memwatch``: see :mod:`pytest_memwatch.cli`."""

from __future__ import annotations

from pytest_memwatch.cli import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m pytest_memwatch"))
