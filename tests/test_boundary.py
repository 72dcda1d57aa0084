"""pytest stays at the edge: only the plugin package may import it, and only one
module of it may touch pytest's and xdist's private API.

The engine, storage and report modules must work without pytest (the library
API and the CLI use them), and an import of pytest from one of them would also
make ``import pytest_memwatch`` drag pytest in. Inside the plugin, the private
API a pytest upgrade breaks first is kept to ``plugin/_pytest_private.py``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_memwatch

PACKAGE = Path(pytest_memwatch.__file__).parent
# The only package that defines hooks and may therefore talk to pytest.
HOOK_PACKAGE = PACKAGE / "plugin"
FORBIDDEN = ("pytest", "_pytest")
# The plugin's one module allowed to touch pytest's and xdist's private API.
PRIVATE_MODULE = HOOK_PACKAGE / "_pytest_private.py"
# What it touches: private or undocumented attributes and functions of pytest
# and pytest-xdist. Read as attributes, names, imported names or strings
# (``getattr(item, "_fixtureinfo")``) anywhere else in the plugin, they fail.
PRIVATE_NAMES = frozenset(
    {
        "runtestprotocol",
        "_report_sections",
        "_setupstate",
        "teardown_exact",
        "_fixtureinfo",
        "name2fixturedefs",
        "_finalizers",
        "cached_result",
        "_next_number",
        "gethookproxy",
        "__dict__",
        "known_args_namespace",
        "callspec",
        "wasxfail",
        "WorkerInteractor",
        "torun",
    }
)


def pytest_imports(source: str, filename: str) -> list[str]:
    """Every import of pytest or _pytest in ``source``, as ``line: statement``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names = [arg.value]
        for name in names:
            if name.split(".")[0] in FORBIDDEN:
                found.append(f"{node.lineno}: {name}")
    return found


def _is_dynamic_import(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("import_module", "__import__") and bool(node.args)


def engine_modules() -> list[Path]:
    return sorted(
        p
        for p in PACKAGE.rglob("*.py")
        if HOOK_PACKAGE not in p.parents and "__pycache__" not in p.parts
    )


def plugin_modules() -> list[Path]:
    """The plugin's modules except the one allowed to touch pytest's private API."""
    return sorted(
        p
        for p in HOOK_PACKAGE.rglob("*.py")
        if p != PRIVATE_MODULE and "__pycache__" not in p.parts
    )


def private_uses(source: str, filename: str) -> list[str]:
    """Every import of ``_pytest`` and every private name of pytest or xdist in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(alias.name for alias in node.names)]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names = [arg.value]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]
        for name in names:
            if name.split(".")[0] == "_pytest" or name in PRIVATE_NAMES:
                found.append(f"{getattr(node, 'lineno', '?')}: {name}")
    return found


def test_the_walk_sees_the_package() -> None:
    names = {p.relative_to(PACKAGE).as_posix() for p in engine_modules()}
    assert {"engine/__init__.py", "base/probes.py", "reports/results.py", "api.py"} <= names
    assert not any(name.startswith("plugin/") for name in names)


def test_the_walk_sees_the_plugin_package() -> None:
    names = {p.relative_to(HOOK_PACKAGE).as_posix() for p in plugin_modules()}
    assert {"__init__.py", "state.py", "protocol.py", "soak.py", "xdist.py"} <= names
    assert "_pytest_private.py" not in names
    assert PRIVATE_MODULE.is_file()


@pytest.mark.parametrize("path", plugin_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_plugin_module_leaves_pytest_internals_to_one_module(path: Path) -> None:
    assert private_uses(path.read_text(encoding="utf-8"), str(path)) == []


def test_the_private_module_uses_every_name_listed() -> None:
    # A name no longer used there is dropped from the list, so the list says
    # what the plugin depends on today.
    source = PRIVATE_MODULE.read_text(encoding="utf-8")
    used = {use.split(": ", 1)[1] for use in private_uses(source, str(PRIVATE_MODULE))}
    assert used >= PRIVATE_NAMES
    assert "_pytest.runner" in used


@pytest.mark.parametrize(
    "source",
    [
        "import _pytest",
        "from _pytest.runner import CallInfo",
        "from somewhere import runtestprotocol",
        "item._report_sections.clear()",
        "item.session._setupstate.stack",
        "getattr(item, '_fixtureinfo', None)",
        "fixturedef._finalizers[:] = []",
        "if fixturedef.cached_result is None: pass",
        "factory._next_number",
        "vars(session)['gethookproxy'] = f",
        "report.__dict__.pop('memwatch', None)",
        "config.known_args_namespace.file_or_dir",
        "item.callspec.marks",
        "'wasxfail' in report.__dict__",
        "type(p).__name__ == 'WorkerInteractor'",
        "plugin.torun.put",
        "importlib.import_module('_pytest.python')",
    ],
)
def test_the_private_checker_catches_every_form(source: str) -> None:
    assert private_uses(source, "<test>") != []


@pytest.mark.parametrize(
    "source",
    [
        "import pytest",
        "from pytest import StashKey",
        "item.stash.get(KEY, None)",
        "from pytest_memwatch.plugin import _pytest_private as private",
        "private.run_phases(item, nextitem)",
        '"""Docstrings may name ``runtestprotocol`` and ``__dict__``."""',
    ],
)
def test_the_private_checker_allows_public_api(source: str) -> None:
    assert private_uses(source, "<test>") == []


@pytest.mark.parametrize("path", engine_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_module_does_not_import_pytest(path: Path) -> None:
    assert pytest_imports(path.read_text(encoding="utf-8"), str(path)) == []


@pytest.mark.parametrize(
    "source",
    [
        "import pytest",
        "import _pytest.runner",
        "import os, pytest as pt",
        "from pytest import fixture",
        "from _pytest.config import Config",
        "def f():\n    import pytest",
        "if TYPE_CHECKING:\n    from _pytest.nodes import Item",
        "importlib.import_module('pytest')",
        "__import__('_pytest.python')",
    ],
)
def test_the_checker_catches_every_form(source: str) -> None:
    assert pytest_imports(source, "<test>") != []


@pytest.mark.parametrize(
    "source",
    ["import pytest_memwatch", "from pytest_memwatch import engine", "from . import pytest_x"],
)
def test_the_checker_allows_our_own_package(source: str) -> None:
    assert pytest_imports(source, "<test>") == []


def test_importing_the_package_does_not_import_pytest() -> None:
    code = "import sys, pytest_memwatch; assert 'pytest' not in sys.modules, 'pytest imported'"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def test_the_library_api_runs_without_pytest() -> None:
    code = (
        "import sys\n"
        "from pytest_memwatch import MemoryTracker, memory_limit\n"
        "t = MemoryTracker(); t.set_baseline(); t.take_snapshot('x')\n"
        "assert t.analyze_memory_usage()['snapshots'][0]['label'] == 'x'\n"
        "assert memory_limit(100)(lambda: 3)() == 3\n"
        "assert not any(m == '_pytest' or m.startswith(('pytest.', '_pytest.')) or m == 'pytest'"
        " for m in sys.modules), sorted(m for m in sys.modules if 'pytest' in m)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
