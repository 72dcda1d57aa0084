"""Every setting declared once: CLI option, ini key, environment variable, parser.

The plugin generates its ``addoption``/``addini`` calls from :data:`SETTINGS`
and resolves them once per session into a frozen :class:`Settings`, CLI >
environment > ini > default. "Not given" is ``None`` at every layer, so an ini
value is never shadowed by a flag's default. Errors name the setting and where
the bad value came from. Nothing here imports pytest.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from pytest_memwatch.base.limits import short_repr
from pytest_memwatch.base.units import DURATION_EXAMPLE, SIZE_EXAMPLE
from pytest_memwatch.config.values import (
    DEFAULT_REPEAT_BUDGET,
    REPEAT_BUDGET_EXAMPLE,
    Repeat,
    RepeatBudget,
    parse_bool,
    parse_count,
    parse_duration_value,
    parse_frames,
    parse_grace,
    parse_ignore_rule,
    parse_name,
    parse_optional_name,
    parse_path,
    parse_repeat,
    parse_repeat_budget,
    parse_size_value,
    parse_tolerance_text,
)


class SettingError(ValueError):
    """A bad option, ini or environment value; the message is shown as a usage error."""


@dataclass(frozen=True)
class Settings:
    """Every setting's value for one session; a field's default is the setting's default."""

    enabled: bool = False
    repeat: Repeat | None = None
    repeat_budget: RepeatBudget = DEFAULT_REPEAT_BUDGET
    max_growth: int | None = None
    trace: int = 10
    top: int = 10
    json: str | None = None
    html: str | None = None
    save: str | None = None
    compare: str | None = None
    compare_fail: tuple[str, ...] = ()
    storage: str = ".memwatch"
    soak: bool = False
    soak_duration: float | None = None
    soak_resume: bool = False
    resources: bool = False
    resources_ignore: tuple[str, ...] = ()
    resources_grace: float = 1.0
    resources_ignore_existing: bool = False
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether every test is measured (not only marked ones)."""
        # --memwatch-resources alone checks every test: it needs no --memwatch.
        return (
            self.enabled or self.repeat is not None or self.max_growth is not None or self.resources
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            s.name: (
                str(v)
                if isinstance((v := getattr(self, s.name)), (Repeat, RepeatBudget))
                else list(v)
                if isinstance(v, tuple)
                else v
            )
            for s in SETTINGS
        }


_DEFAULTS: Mapping[str, Any] = {
    f.name: f.default for f in fields(Settings) if f.default is not MISSING
}


@dataclass(frozen=True)
class Setting:
    name: str  # attribute on Settings
    option: str  # CLI flag
    help: str
    parse: Callable[[str], Any]
    expected: str  # the expected form, with an example, for error messages
    kind: str = "value"  # "flag" | "value" | "optional" (flag with optional value) | "append"
    env: str | None = None
    ini: bool = True
    const: str | None = None  # value of an "optional" flag given without one
    type_doc: str = "str"

    @property
    def default(self) -> Any:
        """The value when nothing sets it: the :class:`Settings` field's own default."""
        return _DEFAULTS[self.name]

    @property
    def ini_key(self) -> str:
        return "memwatch" if self.name == "enabled" else f"memwatch_{self.name}"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "enabled",
        "--memwatch",
        "measure every test with the cheap memory probes",
        parse_bool,
        "true or false",
        kind="flag",
        env="PYTEST_MEMWATCH",
        type_doc="bool",
    ),
    Setting(
        "repeat",
        "--memwatch-repeat",
        "leak-check every test by re-running it WARMUP:RUNS times (default 2:5)",
        parse_repeat,
        "WARMUP:RUNS, e.g. 2:5",
        kind="optional",
        env="PYTEST_MEMWATCH_REPEAT",
        const="",
        type_doc="WARMUP:RUNS",
    ),
    Setting(
        "repeat_budget",
        "--memwatch-repeat-budget",
        "time a repeated test may spend on extra runs while its trend is unsettled "
        '(duration, or NUMBERx for a multiple of its first run; default "1s")',
        parse_repeat_budget,
        REPEAT_BUDGET_EXAMPLE,
        env="PYTEST_MEMWATCH_REPEAT_BUDGET",
        type_doc="duration|NUMBERx",
    ),
    Setting(
        "max_growth",
        "--memwatch-max-growth",
        "default max_growth budget for every test without its own marker",
        parse_size_value,
        SIZE_EXAMPLE,
        env="PYTEST_MEMWATCH_MAX_GROWTH",
        type_doc="size",
    ),
    Setting(
        "trace",
        "--memwatch-trace",
        "traceback depth for allocation sites when a verdict fails (0: no attribution)",
        parse_frames,
        "a number of frames, e.g. 10",
        env="PYTEST_MEMWATCH_TRACE",
        type_doc="int",
    ),
    Setting(
        "top",
        "--memwatch-top",
        "how many tests the terminal summary lists as growing most",
        parse_count,
        "a whole number from 0 to 100000, e.g. 10",
        type_doc="int",
    ),
    Setting(
        "json",
        "--memwatch-json",
        "write the results document (JSON) to PATH",
        parse_path,
        "a file path, e.g. memwatch.json",
        env="PYTEST_MEMWATCH_JSON",
        type_doc="path",
    ),
    Setting(
        "html",
        "--memwatch-html",
        "write a self-contained HTML leak report to PATH",
        parse_path,
        "a file path, e.g. memwatch.html",
        env="PYTEST_MEMWATCH_HTML",
        type_doc="path",
    ),
    Setting(
        "save",
        "--memwatch-save",
        "save this run as a baseline named NAME under .memwatch/",
        parse_name,
        "a name, e.g. main",
        type_doc="name",
    ),
    Setting(
        "compare",
        "--memwatch-compare",
        "compare with a saved run (NAME, NNNN, or the latest when no value is given)",
        parse_optional_name,
        "a saved run's name or number, e.g. main or 0003",
        kind="optional",
        const="",
        type_doc="name|NNNN",
    ),
    Setting(
        "compare_fail",
        "--memwatch-compare-fail",
        "fail on regressions beyond METRIC:TOLERANCE, e.g. growth:10% or peak:5MB (repeatable)",
        parse_tolerance_text,
        "METRIC:TOLERANCE, e.g. growth:10% or peak:5MB",
        kind="append",
        type_doc="list of METRIC:TOLERANCE",
    ),
    Setting(
        "storage",
        "--memwatch-storage",
        "directory for saved runs",
        parse_path,
        "a directory, e.g. .memwatch",
        type_doc="path",
    ),
    Setting(
        "soak",
        "--memwatch-soak",
        "run soak tests (skipped otherwise)",
        parse_bool,
        "true or false",
        kind="flag",
        env="PYTEST_MEMWATCH_SOAK",
        type_doc="bool",
    ),
    Setting(
        "soak_duration",
        "--memwatch-soak-duration",
        "cap the duration of every soak test",
        parse_duration_value,
        DURATION_EXAMPLE,
        env="PYTEST_MEMWATCH_SOAK_DURATION",
        type_doc="duration",
    ),
    Setting(
        "soak_resume",
        "--memwatch-soak-resume",
        "continue interrupted soak runs from their samples",
        parse_bool,
        "true or false",
        kind="flag",
        type_doc="bool",
    ),
    Setting(
        "resources",
        "--memwatch-resources",
        "also fail tests that leave threads, open files or fds, sockets, child processes, "
        "temp files or pending asyncio tasks behind",
        parse_bool,
        "true or false",
        kind="flag",
        env="PYTEST_MEMWATCH_RESOURCES",
        type_doc="bool",
    ),
    Setting(
        "resources_ignore",
        "--memwatch-resources-ignore",
        "do not count resources matching KIND:GLOB, e.g. thread:ThreadPoolExecutor-* "
        "(kinds: thread, origin, fd, socket, process, tempfile, task; repeatable)",
        parse_ignore_rule,
        "KIND:GLOB, e.g. thread:ThreadPoolExecutor-* or origin:grpc.*",
        kind="append",
        env="PYTEST_MEMWATCH_RESOURCES_IGNORE",
        type_doc="list of KIND:GLOB",
    ),
    Setting(
        "resources_grace",
        "--memwatch-resources-grace",
        "how long to wait for threads, processes and files that are still shutting down "
        "before calling them leaked (0: no wait)",
        parse_grace,
        '"1s", "250ms" or 0 for no wait',
        env="PYTEST_MEMWATCH_RESOURCES_GRACE",
        type_doc="duration",
    ),
    Setting(
        "resources_ignore_existing",
        "--memwatch-resources-ignore-existing",
        "do not count resources that look like ones the process had at session start "
        "(to adopt resource checks on a large suite)",
        parse_bool,
        "true or false",
        kind="flag",
        env="PYTEST_MEMWATCH_RESOURCES_IGNORE_EXISTING",
        type_doc="bool",
    ),
)

BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}


def resolve(
    cli: Mapping[str, Any],
    env: Mapping[str, str],
    ini: Mapping[str, str | list[str] | None],
    *,
    ini_types: Mapping[str, object] | None = None,
) -> Settings:
    """Resolve every setting, CLI > environment > ini > default.

    ``cli`` maps setting names to raw CLI values (``None`` when not given; flags
    give ``True``); ``ini`` maps setting names to raw ini strings (or ``None``).
    ``ini_types`` holds the same ini values as the config file typed them (a
    TOML list or table), where the file has types, to refuse the wrong ones.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in SETTINGS:
        raw: Any = None
        where = "default"
        if cli.get(s.name) is not None:
            raw, where = cli[s.name], f"command line option {s.option}"
        elif s.env and env.get(s.env) not in (None, ""):
            raw, where = env[s.env], f"environment variable {s.env}"
        elif s.ini and ini.get(s.name) not in (None, "", []):
            raw, where = ini[s.name], f"ini key {s.ini_key}"
        if raw is None:
            values[s.name] = tuple(s.default or ()) if s.kind == "append" else s.default
            continue
        sources[s.name] = where
        if s.kind == "flag" and raw is True:
            values[s.name] = True
            continue
        if where.startswith("ini key"):
            _check_ini_type(s, (ini_types or {}).get(s.name, raw), where)
        items = raw if isinstance(raw, list) else [raw]
        if s.kind == "append" and isinstance(raw, str):
            items = [p for p in raw.replace(",", "\n").splitlines() if p.strip()]
        parsed = []
        for item in items:
            try:
                parsed.append(s.parse(str(item)))
            except (ValueError, TypeError) as exc:
                # Most parsers already end with the expected form and its example;
                # saying it twice in one line reads as a glitch.
                detail = str(exc)
                expected = "" if s.expected in detail else f" Expected {s.expected}."
                raise SettingError(
                    f"memwatch: bad value {short_repr(item)} for {s.option} (from {where}): "
                    f"{detail}." + expected
                ) from None
        values[s.name] = tuple(parsed) if s.kind == "append" else parsed[-1]
    _check_distinct_outputs(values, sources)
    return Settings(sources=sources, **values)


def _check_ini_type(s: Setting, raw: object, where: str) -> None:
    """A TOML config file can give a list or a table where a string is meant; refuse it.

    ``str()`` of such a value would otherwise be used as is (``memwatch_json =
    {a = 1}`` wrote a file named ``{'a': 1}``).
    """
    if s.kind == "append":
        if isinstance(raw, str) or (isinstance(raw, list) and all(isinstance(x, str) for x in raw)):
            return
        shape = "a list of strings"
    else:
        if isinstance(raw, str):
            return
        shape = "a string"
    raise SettingError(
        f"memwatch: bad value {short_repr(raw)} for {s.ini_key} (from {where}): expected "
        f"{shape}, got {type(raw).__name__}. Expected {s.expected}."
    )


def _check_distinct_outputs(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """Refuse ``--memwatch-json`` and ``--memwatch-html`` naming one file (HTML replaces JSON)."""
    json_path, html_path = values.get("json"), values.get("html")
    if not (json_path and html_path):
        return
    same = os.path.realpath(json_path) == os.path.realpath(html_path)
    # Two writes into one device (/dev/null) clobber nothing.
    if same and not (os.path.exists(json_path) and not os.path.isfile(json_path)):
        raise SettingError(
            f"memwatch: --memwatch-json (from {sources.get('json')}) and --memwatch-html "
            f"(from {sources.get('html')}) both name {json_path!r}: the HTML report would "
            "replace the results JSON. Give them different paths, e.g. --memwatch-json="
            "memwatch.json --memwatch-html=memwatch.html"
        )
