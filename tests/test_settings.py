"""Settings: one declaration per setting, resolved CLI > environment > ini > default.

The error messages are asserted in full: they are the usage error a user gets,
and they must name the option and where the bad value came from.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_memwatch.base.units import MiB
from pytest_memwatch.config.settings import BY_NAME, SETTINGS, SettingError, Settings, resolve
from pytest_memwatch.config.values import (
    DEFAULT_REPEAT,
    DEFAULT_REPEAT_BUDGET,
    Repeat,
    RepeatBudget,
)

SIZE_USE = 'use 50 (MiB) or "512 KiB", "2MB", "1.5 GiB", "64B"'


def res(
    cli: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    ini: dict[str, Any] | None = None,
) -> Settings:
    return resolve(cli or {}, env or {}, ini or {})


def error(
    cli: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    ini: dict[str, Any] | None = None,
) -> str:
    with pytest.raises(SettingError) as info:
        res(cli, env, ini)
    return str(info.value)


def test_defaults() -> None:
    s = res()
    assert s == Settings()
    assert s.enabled is False
    assert s.repeat is None
    assert s.max_growth is None
    assert s.trace == 10
    assert s.top == 10
    assert s.storage == ".memwatch"
    assert s.compare_fail == ()
    assert s.sources == {}
    assert not s.active


def test_settings_are_frozen() -> None:
    s = res()
    with pytest.raises(AttributeError):
        s.enabled = True  # type: ignore[misc]


def test_every_setting_is_declared_once_with_an_ini_key_and_an_option() -> None:
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    options = [s.option for s in SETTINGS]
    assert len(options) == len(set(options))
    assert all(o.startswith("--memwatch") for o in options)
    assert BY_NAME["enabled"].ini_key == "memwatch"
    assert BY_NAME["max_growth"].ini_key == "memwatch_max_growth"
    assert all(s.env is None or s.env.startswith("PYTEST_MEMWATCH") for s in SETTINGS)
    # Every setting has a field on Settings, and a default of the field's own default.
    defaults = Settings()
    for s in SETTINGS:
        expected = tuple(s.default or ()) if s.kind == "append" else s.default
        assert getattr(defaults, s.name) == expected, s.name


def test_the_contract_options_exist() -> None:
    options = {s.option for s in SETTINGS}
    assert {
        "--memwatch",
        "--memwatch-repeat",
        "--memwatch-max-growth",
        "--memwatch-html",
        "--memwatch-json",
        "--memwatch-save",
        "--memwatch-compare",
        "--memwatch-compare-fail",
        "--memwatch-soak",
        "--memwatch-soak-duration",
        "--memwatch-resources",
        "--memwatch-trace",
    } <= options


# -- precedence ------------------------------------------------------------------


def test_cli_beats_env_beats_ini() -> None:
    ini = {"max_growth": "1 MiB"}
    env = {"PYTEST_MEMWATCH_MAX_GROWTH": "2 MiB"}
    cli = {"max_growth": "3 MiB"}
    assert res(ini=ini).max_growth == 1 * MiB
    assert res(env=env, ini=ini).max_growth == 2 * MiB
    s = res(cli=cli, env=env, ini=ini)
    assert s.max_growth == 3 * MiB
    assert s.sources == {"max_growth": "command line option --memwatch-max-growth"}
    assert res(env=env, ini=ini).sources == {
        "max_growth": "environment variable PYTEST_MEMWATCH_MAX_GROWTH"
    }
    assert res(ini=ini).sources == {"max_growth": "ini key memwatch_max_growth"}


def test_not_given_is_none_at_every_layer() -> None:
    # An unset flag is None, not False, so it never shadows the ini or the env.
    s = res(cli={"enabled": None}, env={"PYTEST_MEMWATCH": ""}, ini={"enabled": "true"})
    assert s.enabled is True
    assert s.sources == {"enabled": "ini key memwatch"}
    # Empty ini values (pytest's default for a string ini) count as not given.
    assert res(ini={"enabled": "", "max_growth": "", "compare_fail": []}) == Settings()


def test_flag_from_each_source() -> None:
    assert res(cli={"enabled": True}).enabled is True
    assert res(env={"PYTEST_MEMWATCH": "1"}).enabled is True
    assert res(ini={"enabled": "yes"}).enabled is True
    assert res(ini={"enabled": "true"}).active


@pytest.mark.parametrize("text", ["1", "true", "True", "YES", "on", " on "])
def test_true_spellings(text: str) -> None:
    assert res(env={"PYTEST_MEMWATCH": text}).enabled is True


@pytest.mark.parametrize("text", ["0", "false", "no", "OFF"])
def test_false_spellings(text: str) -> None:
    assert res(env={"PYTEST_MEMWATCH": text}).enabled is False


def test_env_can_switch_off_what_the_ini_switches_on() -> None:
    s = res(env={"PYTEST_MEMWATCH": "0"}, ini={"enabled": "true"})
    assert s.enabled is False
    assert s.sources["enabled"] == "environment variable PYTEST_MEMWATCH"


def test_repeat() -> None:
    # --memwatch-repeat given without a value (argparse const "") means 2:5.
    assert res(cli={"repeat": ""}).repeat == DEFAULT_REPEAT == Repeat(2, 5)
    assert res(cli={"repeat": "1:8"}).repeat == Repeat(1, 8)
    assert res(cli={"repeat": " 0:1 "}).repeat == Repeat(0, 1)
    assert res(env={"PYTEST_MEMWATCH_REPEAT": "3:4"}).repeat == Repeat(3, 4)
    assert res(ini={"repeat": "2:6"}).repeat == Repeat(2, 6)
    assert str(Repeat(2, 5)) == "2:5"
    assert res(cli={"repeat": ""}).active


def test_active_when_any_option_measures_every_test() -> None:
    assert res(cli={"max_growth": "1"}).active
    assert res(cli={"repeat": "1:2"}).active
    assert not res(cli={"trace": "5"}).active


def test_sizes_and_durations() -> None:
    assert res(cli={"max_growth": "50"}).max_growth == 50 * MiB
    assert res(cli={"max_growth": "0.5"}).max_growth == MiB // 2
    assert res(cli={"max_growth": "512 KiB"}).max_growth == 512 * 1024
    assert res(cli={"soak_duration": "30m"}).soak_duration == 1800.0
    assert res(cli={"soak_duration": "90"}).soak_duration == 90.0


def test_trace_and_top() -> None:
    assert res(cli={"trace": "0"}).trace == 0
    assert res(cli={"trace": "100"}).trace == 100
    assert res(ini={"top": "3"}).top == 3


def test_append_setting_from_cli_and_ini() -> None:
    s = res(cli={"compare_fail": ["growth:10%", "peak:5MB"]})
    assert s.compare_fail == ("growth:10%", "peak:5MB")
    assert res(ini={"compare_fail": ["growth:10%"]}).compare_fail == ("growth:10%",)


def test_to_dict_is_json_ready() -> None:
    d = res(cli={"repeat": "1:3", "compare_fail": ["growth:10%"]}).to_dict()
    assert d["repeat"] == "1:3"
    assert d["compare_fail"] == ["growth:10%"]
    assert set(d) == {s.name for s in SETTINGS}


# -- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cli", "env", "ini", "message"),
    [
        (
            {"max_growth": "lots"},
            {},
            {},
            "memwatch: bad value 'lots' for --memwatch-max-growth (from command line option "
            f"--memwatch-max-growth): cannot read 'lots' as a size; {SIZE_USE}.",
        ),
        (
            {},
            {"PYTEST_MEMWATCH_MAX_GROWTH": "-5"},
            {},
            "memwatch: bad value '-5' for --memwatch-max-growth (from environment variable "
            "PYTEST_MEMWATCH_MAX_GROWTH): expected a non-negative size, got -5.0; "
            f"{SIZE_USE}.",
        ),
        (
            {},
            {"PYTEST_MEMWATCH": "maybe"},
            {},
            "memwatch: bad value 'maybe' for --memwatch (from environment variable "
            "PYTEST_MEMWATCH): expected true/false (also 1/0, yes/no, on/off). "
            "Expected true or false.",
        ),
        (
            {},
            {},
            {"enabled": "perhaps"},
            "memwatch: bad value 'perhaps' for --memwatch (from ini key memwatch): "
            "expected true/false (also 1/0, yes/no, on/off). Expected true or false.",
        ),
        (
            {},
            {},
            {"trace": "-1"},
            "memwatch: bad value '-1' for --memwatch-trace (from ini key memwatch_trace): "
            "expected a number of frames from 0 (no attribution) to 100, e.g. 10. "
            "Expected a number of frames, e.g. 10.",
        ),
        (
            {"trace": "abc"},
            {},
            {},
            "memwatch: bad value 'abc' for --memwatch-trace (from command line option "
            "--memwatch-trace): expected a number of frames from 0 (no attribution) to 100, "
            "e.g. 10. Expected a number of frames, e.g. 10.",
        ),
        (
            {"repeat": "2:0"},
            {},
            {},
            "memwatch: bad value '2:0' for --memwatch-repeat (from command line option "
            "--memwatch-repeat): RUNS must be from 1 to 1000, e.g. 2:5. Expected WARMUP:RUNS, e.g. 2:5.",
        ),
        (
            {"repeat": "-1:3"},
            {},
            {},
            "memwatch: bad value '-1:3' for --memwatch-repeat (from command line option "
            "--memwatch-repeat): WARMUP must be from 0 to 1000, e.g. 2:5. "
            "Expected WARMUP:RUNS, e.g. 2:5.",
        ),
        (
            {},
            {"PYTEST_MEMWATCH_REPEAT": "five"},
            {},
            "memwatch: bad value 'five' for --memwatch-repeat (from environment variable "
            "PYTEST_MEMWATCH_REPEAT): expected WARMUP:RUNS, e.g. 2:5.",
        ),
        (
            {"repeat": "a:b"},
            {},
            {},
            "memwatch: bad value 'a:b' for --memwatch-repeat (from command line option "
            "--memwatch-repeat): expected two whole numbers WARMUP:RUNS, e.g. 2:5.",
        ),
        (
            {"top": "many"},
            {},
            {},
            "memwatch: bad value 'many' for --memwatch-top (from command line option "
            "--memwatch-top): expected a whole number from 0 to 100000, e.g. 10.",
        ),
        (
            {},
            {},
            {"soak_duration": "forever"},
            "memwatch: bad value 'forever' for --memwatch-soak-duration (from ini key "
            "memwatch_soak_duration): cannot read 'forever' as a duration; "
            'use "90s", "30m", "8h" or a number of seconds.',
        ),
        (
            {"save": "a/b"},
            {},
            {},
            "memwatch: bad value 'a/b' for --memwatch-save (from command line option "
            "--memwatch-save): expected a name without slashes or colons, not starting with a dot, e.g. main. "
            "Expected a name, e.g. main.",
        ),
        (
            {"json": " "},
            {},
            {},
            "memwatch: bad value ' ' for --memwatch-json (from command line option "
            "--memwatch-json): expected a file path, e.g. memwatch.json.",
        ),
    ],
)
def test_error_messages(
    cli: dict[str, Any], env: dict[str, str], ini: dict[str, Any], message: str
) -> None:
    assert error(cli, env, ini) == message


def test_a_bad_value_in_a_shadowed_layer_is_not_read() -> None:
    # The CLI wins, so a broken ini value underneath it must not fail the run.
    s = res(cli={"max_growth": "1"}, ini={"max_growth": "lots"})
    assert s.max_growth == MiB


def test_setting_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        res(cli={"trace": "-3"})


def test_repeat_budget() -> None:
    assert res().repeat_budget == DEFAULT_REPEAT_BUDGET == RepeatBudget(seconds=1.0)
    assert res(cli={"repeat_budget": "5s"}).repeat_budget == RepeatBudget(seconds=5.0)
    assert res(cli={"repeat_budget": "250ms"}).repeat_budget == RepeatBudget(seconds=0.25)
    assert res(cli={"repeat_budget": "2"}).repeat_budget == RepeatBudget(seconds=2.0)
    assert res(cli={"repeat_budget": " 20X "}).repeat_budget == RepeatBudget(multiple=20.0)
    env = {"PYTEST_MEMWATCH_REPEAT_BUDGET": "1.5x"}
    assert res(env=env).repeat_budget == RepeatBudget(multiple=1.5)
    assert res(ini={"repeat_budget": "3s"}).repeat_budget == RepeatBudget(seconds=3.0)
    assert res(cli={"repeat_budget": "20x"}).to_dict()["repeat_budget"] == "20x"
    assert res().to_dict()["repeat_budget"] == "1s"


@pytest.mark.parametrize(
    ("value", "where", "source"),
    [
        ("soon", "cli", "command line option --memwatch-repeat-budget"),
        ("0x", "env", "environment variable PYTEST_MEMWATCH_REPEAT_BUDGET"),
        ("-2s", "ini", "ini key memwatch_repeat_budget"),
        ("xx", "cli", "command line option --memwatch-repeat-budget"),
        ("0", "cli", "command line option --memwatch-repeat-budget"),
    ],
)
def test_bad_repeat_budget(value: str, where: str, source: str) -> None:
    layer = {"repeat_budget": value}
    if where == "env":
        message = error(env={"PYTEST_MEMWATCH_REPEAT_BUDGET": value})
    else:
        message = error(**{where: layer})
    assert message.startswith(
        f"memwatch: bad value {value!r} for --memwatch-repeat-budget (from {source}): expected "
    )
    assert message.endswith('e.g. "1s", "500ms", "30s" or "20x" (20 times the first run).')
