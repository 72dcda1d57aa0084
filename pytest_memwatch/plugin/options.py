"""Options and configuration: each setting's command-line option and ini key
(generated from :data:`pytest_memwatch.config.settings.SETTINGS`), the markers,
and the session's state, made once in ``pytest_configure``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from pytest_memwatch.config import markers
from pytest_memwatch.config.cmdline import OptionalValue, looks_like_test_path, rescue_test_paths
from pytest_memwatch.config.settings import SETTINGS, Setting, SettingError, resolve
from pytest_memwatch.plugin._pytest_private import add_early_test_paths
from pytest_memwatch.plugin.state import STATE, SessionState
from pytest_memwatch.plugin.summary import SessionSummary, UnmeasuredTests


def _add_option(group: pytest.OptionGroup, s: Setting) -> None:
    # argparse %-formats help strings: a bare "10%" in one crashes `pytest --help`.
    help_text = (s.help + (f" [env {s.env}]" if s.env else "")).replace("%", "%%")
    if s.kind == "flag":
        group.addoption(
            s.option, action="store_true", default=None, dest=f"memwatch_{s.name}", help=help_text
        )
    elif s.kind == "optional":
        group.addoption(
            s.option,
            action="store",
            nargs="?",
            const=s.const,
            default=None,
            dest=f"memwatch_{s.name}",
            metavar=s.type_doc.upper(),
            help=help_text,
        )
    elif s.kind == "append":
        group.addoption(
            s.option,
            action="append",
            default=None,
            dest=f"memwatch_{s.name}",
            metavar="EXPR",
            help=help_text,
        )
    else:
        group.addoption(
            s.option,
            action="store",
            default=None,
            dest=f"memwatch_{s.name}",
            metavar=s.type_doc.upper(),
            help=help_text,
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memwatch", "memory measurement and leak verdicts (pytest-memwatch)")
    for s in SETTINGS:
        _add_option(group, s)
        if s.kind == "append":
            parser.addini(s.ini_key, s.help, type="linelist", default=[])
        else:
            parser.addini(s.ini_key, s.help, type="string", default="")


def _optional_values(cwd: str) -> list[OptionalValue]:
    """The options with an optional value, each with its test of a valid value."""

    def parses(s: Setting) -> Callable[[str], bool]:
        def is_value(token: str) -> bool:
            try:
                s.parse(token)
            except (ValueError, TypeError):
                return False
            return True

        return is_value

    def is_name(token: str) -> bool:
        # A saved run's name is any word; one that names a test path is a path.
        return not looks_like_test_path(token, cwd)

    return [
        OptionalValue(s.option, is_name if s.name == "compare" else parses(s))
        for s in SETTINGS
        if s.kind == "optional"
    ]


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    """``--memwatch-repeat tests/x.py``: the option without a value, then a test path."""
    cwd = str(early_config.invocation_params.dir)
    moved = rescue_test_paths(args, _optional_values(cwd), cwd)
    if moved:
        # pytest parses ``args`` (this same list) again after this hook; its
        # early parse, which found the initial conftests, is told here.
        add_early_test_paths(early_config, moved)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # A marker name the project registered itself (pytest.ini, pyproject, a
    # conftest) stays the project's: memwatch neither registers nor reads it.
    theirs = markers.foreign_names(config.getini("markers"))
    for schema in markers.SCHEMAS.values():
        if schema.name not in theirs:
            config.addinivalue_line("markers", schema.line())
    cli = {s.name: config.getoption(f"memwatch_{s.name}") for s in SETTINGS}
    ini: dict[str, Any] = {s.name: config.getini(s.ini_key) for s in SETTINGS}
    try:
        settings = resolve(cli, os.environ, ini, ini_types=_toml_ini_values(config))
    except SettingError as exc:
        raise pytest.UsageError(str(exc)) from None
    state = SessionState(config, settings)
    config.stash[STATE] = state
    pm = config.pluginmanager
    pm.register(SessionSummary(state), "memwatch-session")
    if state.is_controller and state.writes_results:
        # The results document lists every test, measured or not (docs/results.md).
        loadgroup = config.getoption("dist", None) == "loadgroup"
        pm.register(UnmeasuredTests(state, loadgroup=loadgroup), "memwatch-unmeasured")
    if pm.hasplugin("xdist") or pm.hasplugin("xdist.plugin"):
        # Imported only here: with -p no:xdist (or without xdist) nothing of it loads.
        from pytest_memwatch.plugin import xdist as memwatch_xdist

        pm.register(memwatch_xdist, "memwatch-xdist")


def _toml_ini_values(config: pytest.Config) -> dict[str, object]:
    """The memwatch keys of a pyproject.toml ``[tool.pytest.ini_options]``, as TOML typed them.

    pytest hands a TOML table or number under that table to a string ini key as
    its ``str()`` (``memwatch_json = {a = 1}`` would name a file ``{'a': 1}``),
    so the types are checked on the file itself. Checked on pytest 8.0 and 9.2.
    """
    path = config.inipath
    if path is None or path.name != "pyproject.toml":
        return {}
    import tomllib

    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError):
        return {}  # pytest itself read the file; anything odd here is its to report
    if not isinstance(table, dict):
        return {}
    return {s.name: table[s.ini_key] for s in SETTINGS if s.ini_key in table}
