"""Marker schemas: parsing, the --markers lines, and the full error messages.

The messages are asserted character for character: they are what a user reads
when a marker is wrong, and they must name the test, the marker, the bad value,
an example of the right form and the way to opt out.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_memwatch.base.units import MiB
from pytest_memwatch.config import markers
from pytest_memwatch.config.markers import SCHEMAS, MarkerError, describe_call, error_message
from pytest_memwatch.config.settings import Settings
from pytest_memwatch.config.values import Repeat
from pytest_memwatch.engine import MarkCall, build_spec

SIZE_USE = 'use 50 (MiB) or "512 KiB", "2MB", "1.5 GiB", "64B"'
DURATION_USE = 'use "90s", "30m", "8h" or a number of seconds'
OPT_OUT = "To opt this test out: @pytest.mark.memwatch_skip(reason)."


def parse(name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return SCHEMAS[name].parse(args, kwargs)


def problem(name: str, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(MarkerError) as info:
        SCHEMAS[name].parse(args, kwargs)
    return str(info.value)


def test_every_documented_marker_has_a_schema() -> None:
    assert set(SCHEMAS) == {"max_growth", "max_memory", "no_leaks", "memwatch_skip", "soak"}


# -- valid arguments -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("max_growth", markers.MaxGrowthValues),
        ("max_memory", markers.MaxMemoryValues),
        ("no_leaks", markers.NoLeaksValues),
        ("soak", markers.SoakValues),
    ],
)
def test_the_typed_values_of_a_marker_are_its_parameters(name: str, shape: type) -> None:
    # The engine reads parsed markers through these types: a parameter added to
    # a schema must be added to its type, and the other way round.
    assert set(shape.__annotations__) == {p.name for p in SCHEMAS[name].params}
    example = {"max_growth": (1,), "max_memory": (1,), "no_leaks": (), "soak": ()}[name]
    assert set(parse(name, *example)) == set(shape.__annotations__)


def test_max_growth_valid() -> None:
    assert parse("max_growth", 50) == {
        "limit": 50 * MiB,
        "warmup": 0,
        "runs": 1,
        "compare_fail": (),
    }
    assert parse("max_growth", "512 KiB", warmup=1, runs=3) == {
        "limit": 512 * 1024,
        "warmup": 1,
        "runs": 3,
        "compare_fail": (),
    }
    assert parse("max_growth", limit="2MB")["limit"] == 2_000_000
    assert parse("max_growth", 0.5)["limit"] == MiB // 2
    assert parse("max_growth", 1, compare_fail="growth:10%")["compare_fail"] == ("growth:10%",)


def test_max_memory_valid() -> None:
    assert parse("max_memory", 200) == {"limit": 200 * MiB, "compare_fail": ()}
    assert parse("max_memory", "1.5 GiB")["limit"] == 3 * 1024**3 // 2


def test_no_leaks_valid() -> None:
    assert parse("no_leaks") == {
        "warmup": 2,
        "runs": 5,
        "resources": True,
        "ignore": (),
        "compare_fail": (),
    }
    assert parse("no_leaks", warmup=0, runs=2, resources=False) == {
        "warmup": 0,
        "runs": 2,
        "resources": False,
        "ignore": (),
        "compare_fail": (),
    }
    assert parse("no_leaks", ignore="thread:worker-*")["ignore"] == ("thread:worker-*",)
    assert parse("no_leaks", ignore=["thread:worker-*"])["ignore"] == ("thread:worker-*",)
    assert parse("no_leaks", compare_fail=["growth:10%", "peak:5MB"])["compare_fail"] == (
        "growth:10%",
        "peak:5MB",
    )


def test_memwatch_skip_valid() -> None:
    assert parse("memwatch_skip") == {"reason": ""}
    assert parse("memwatch_skip", "spawns a JVM") == {"reason": "spawns a JVM"}


def test_soak_valid() -> None:
    assert parse("soak") == {
        "duration": 600.0,
        "interval": 30.0,
        "max_growth_rate": None,
        "warmup": ("fraction", 0.1),
    }
    values = parse("soak", "8h", interval="10s", max_growth_rate="1 MiB/h", warmup="5m")
    assert values == {
        "duration": 28800.0,
        "interval": 10.0,
        "max_growth_rate": pytest.approx(MiB / 3600),
        "warmup": ("seconds", 300.0),
    }
    assert parse("soak", "1h", warmup="0%")["warmup"] == ("fraction", 0.0)


# -- invalid arguments: the problem part -------------------------------------------


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "expected"),
    [
        (
            "max_growth",
            ("ten megs",),
            {},
            f"limit='ten megs': cannot read 'ten megs' as a size; {SIZE_USE}",
        ),
        ("max_growth", (-5,), {}, f"limit=-5: expected a non-negative size, got -5; {SIZE_USE}"),
        (
            "max_growth",
            ([1, 2],),
            {},
            f"limit=[1, 2]: expected a size, got list [1, 2]; {SIZE_USE}",
        ),
        ("max_growth", (), {}, "missing required argument limit"),
        (
            "max_growth",
            (10,),
            {"size": 3},
            "unknown keyword argument(s) size; known: compare_fail, limit, runs, warmup",
        ),
        ("max_growth", (10,), {"runs": 0}, "runs=0: must be 1 or more, e.g. runs=3"),
        ("max_growth", (10,), {"warmup": -1}, "warmup=-1: must be 0 or more, e.g. warmup=3"),
        ("max_growth", (10,), {"runs": 2.5}, "runs=2.5: expected a whole number, e.g. runs=3"),
        ("max_growth", (10,), {"runs": True}, "runs=True: expected a whole number, e.g. runs=3"),
        ("max_growth", (10, 20), {}, "takes at most 1 positional argument(s), got 2"),
        ("max_growth", (10,), {"limit": 5}, "limit given both by position and by keyword"),
        ("max_memory", ("x",), {}, f"limit='x': cannot read 'x' as a size; {SIZE_USE}"),
        ("max_memory", (), {}, "missing required argument limit"),
        (
            "max_memory",
            (10,),
            {"warmup": 1},
            "unknown keyword argument(s) warmup; known: compare_fail, limit",
        ),
        ("no_leaks", (), {"runs": 1}, "runs=1: must be 2 or more, e.g. runs=3"),
        ("no_leaks", (), {"warmup": -1}, "warmup=-1: must be 0 or more, e.g. warmup=3"),
        ("no_leaks", (), {"resources": "yes"}, "resources='yes': expected True or False"),
        ("no_leaks", (3,), {}, "takes at most 0 positional argument(s), got 1"),
        (
            "no_leaks",
            (),
            {"compare_fail": 5},
            "compare_fail=5: expected 'growth:10%' or a list of them",
        ),
        (
            "no_leaks",
            (),
            {"ignore": 5},
            "ignore=5: expected 'KIND:GLOB' or a list of them, e.g. ignore=['thread:worker-*']",
        ),
        (
            "no_leaks",
            (),
            {"ignore": "bogus"},
            "ignore='bogus': no KIND: prefix; expected KIND:GLOB, "
            "e.g. thread:ThreadPoolExecutor-* or origin:grpc.*",
        ),
        ("memwatch_skip", (5,), {}, "reason=5: expected a string"),
        (
            "soak",
            ("forever",),
            {},
            f"duration='forever': cannot read 'forever' as a duration; {DURATION_USE}",
        ),
        (
            "soak",
            ("1h",),
            {"max_growth_rate": "1 MiB"},
            "max_growth_rate='1 MiB': cannot read '1 MiB' as a rate; "
            'use "1 MiB/h", "512 KiB/min"',
        ),
        (
            "soak",
            ("1h",),
            {"warmup": "150%"},
            "warmup='150%': percentage must be from 0 to below 100",
        ),
        ("soak", ("1h",), {"warmup": "abc%"}, "warmup='abc%': expected a percentage like '10%'"),
        (
            "soak",
            ("1h",),
            {"warmup": "xyz"},
            f"warmup='xyz': cannot read 'xyz' as a duration; {DURATION_USE} "
            "or a percentage like '10%'",
        ),
    ],
)
def test_invalid_arguments(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], expected: str
) -> None:
    assert problem(name, *args, **kwargs) == expected


# -- the full message --------------------------------------------------------------


def test_error_message_names_test_marker_value_example_and_opt_out() -> None:
    msg = error_message(
        "tests/test_x.py::test_parse",
        "max_growth",
        ("ten megs",),
        {"runs": 0},
        "the problem",
    )
    assert msg == (
        "memwatch: tests/test_x.py::test_parse: bad marker "
        "@pytest.mark.max_growth('ten megs', runs=0): the problem. "
        "Expected max_growth(limit, *, warmup=0, runs=1, compare_fail=()), "
        'e.g. @pytest.mark.max_growth("512 KiB", warmup=1, runs=3). ' + OPT_OUT
    )


def test_describe_call() -> None:
    assert describe_call("no_leaks", (), {}) == "@pytest.mark.no_leaks()"
    assert describe_call("max_growth", ([1, 2],), {"warmup": -1}) == (
        "@pytest.mark.max_growth([1, 2], warmup=-1)"
    )


def test_build_spec_raises_the_full_message() -> None:
    calls = [MarkCall("no_leaks", (), {"runs": 0})]
    with pytest.raises(MarkerError) as info:
        build_spec("t.py::test_a", calls, Settings())
    assert str(info.value) == (
        "memwatch: t.py::test_a: bad marker @pytest.mark.no_leaks(runs=0): "
        "runs=0: must be 2 or more, e.g. runs=3. "
        "Expected no_leaks(*, warmup=2, runs=5, resources=True, ignore=(), compare_fail=()), "
        "e.g. @pytest.mark.no_leaks(warmup=2, runs=8). " + OPT_OUT
    )


# -- --markers lines -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "line"),
    [
        (
            "max_growth",
            "max_growth(limit, *, warmup=0, runs=1, compare_fail=()): memory the test leaves "
            "behind per call must stay under limit (bare number = MiB; 50 (MiB) or "
            '"512 KiB", "2MB", "1.5 GiB", "64B"). '
            'Example: @pytest.mark.max_growth("512 KiB", warmup=1, runs=3)',
        ),
        (
            "max_memory",
            "max_memory(limit, *, compare_fail=()): peak memory during the test, above what "
            "the process held at its start, must stay under limit. "
            "Example: @pytest.mark.max_memory(200)",
        ),
        (
            "no_leaks",
            "no_leaks(*, warmup=2, runs=5, resources=True, ignore=(), compare_fail=()): re-run "
            "the test and fail it when memory or resources grow run after run. "
            "Example: @pytest.mark.no_leaks(warmup=2, runs=8)",
        ),
        (
            "memwatch_skip",
            "memwatch_skip(reason=''): do not measure this test, whatever the options say. "
            'Example: @pytest.mark.memwatch_skip("spawns a JVM")',
        ),
        (
            "soak",
            "soak(duration='10m', *, interval='30s', max_growth_rate=None, warmup='10%'): a "
            "long-running test sampled over time and judged by its growth rate; skipped unless "
            "soak runs are asked for (--memwatch-soak or -m soak). "
            'Example: @pytest.mark.soak("8h", interval="30s", max_growth_rate="1 MiB/h", '
            'warmup="10%")',
        ),
    ],
)
def test_marker_lines(name: str, line: str) -> None:
    assert SCHEMAS[name].line() == line


def test_every_example_parses() -> None:
    # The example in each line and error message must itself be a valid call.
    for schema in SCHEMAS.values():
        example = schema.example
        prefix = f"@pytest.mark.{schema.name}("
        assert example.startswith(prefix) and example.endswith(")")
        args, kwargs = eval(f"(lambda *a, **k: (a, k)){example[len(prefix) - 1 :]}")
        schema.parse(args, kwargs)


# -- build_spec: markers and settings together ----------------------------------------


def test_spec_from_stacked_markers() -> None:
    calls = [
        MarkCall("max_growth", ("512 KiB",), {"runs": 3, "warmup": 1}),
        MarkCall("max_memory", (100,), {}),
    ]
    spec = build_spec("t.py::test_a", calls, Settings())
    assert spec.max_growth == {"limit": 512 * 1024, "warmup": 1, "runs": 3, "compare_fail": ()}
    assert spec.max_memory == {"limit": 100 * MiB, "compare_fail": ()}
    assert spec.marker_names == ["max_growth", "max_memory"]
    assert spec.has_verdict and spec.measured and not spec.wants_leak_verdict
    plan = spec.plan()
    assert plan is not None
    assert (plan.warmup, plan.runs, plan.max_runs) == (1, 3, 3)


def test_closest_marker_wins() -> None:
    # Calls come closest first (case, function, class, module; see plugin.collection._mark_calls).
    calls = [MarkCall("max_growth", (1,), {}), MarkCall("max_growth", (50,), {})]
    spec = build_spec("t.py::test_a", calls, Settings())
    assert spec.max_growth is not None and spec.max_growth["limit"] == MiB
    # A bad value is reported even where a closer marker overrides it.
    calls = [MarkCall("max_growth", (1,), {}), MarkCall("max_growth", ("ten megs",), {})]
    with pytest.raises(MarkerError, match=r"bad marker @pytest.mark.max_growth\('ten megs'\)"):
        build_spec("t.py::test_a", calls, Settings())


def test_option_budget_applies_only_without_a_marker() -> None:
    settings = Settings(max_growth=4 * MiB)
    plain = build_spec("t.py::test_a", [], settings)
    assert plain.max_growth == {"limit": 4 * MiB, "warmup": 0, "runs": 1}
    assert plain.max_growth_source == "option"
    assert plain.plan() is None
    marked = build_spec("t.py::test_b", [MarkCall("max_growth", ("1 KiB",), {})], settings)
    assert marked.max_growth is not None and marked.max_growth["limit"] == 1024
    assert marked.max_growth_source == "marker"


def test_repeat_option_gives_every_test_a_leak_verdict() -> None:
    spec = build_spec("t.py::test_a", [], Settings(repeat=Repeat(1, 3)))
    assert spec.repeat == Repeat(1, 3)
    assert spec.leak_source == "option"
    plan = spec.plan()
    assert plan is not None and (plan.warmup, plan.runs) == (1, 3)
    # Extensions are bounded by the default time budget, screened first.
    assert (plan.budget, plan.budget_multiple, plan.screening) == (1.0, None, True)
    # A no_leaks marker takes over from the option.
    marked = build_spec(
        "t.py::test_a", [MarkCall("no_leaks", (), {"runs": 4})], Settings(repeat=Repeat(1, 3))
    )
    assert marked.repeat is None and marked.leak_source == "marker"
    assert marked.resources is True


def test_memwatch_skip_spec() -> None:
    spec = build_spec("t.py::test_a", [MarkCall("memwatch_skip", (), {})], Settings())
    assert not spec.measured
    assert spec.skip_reason == "memwatch_skip"
    spec = build_spec("t.py::test_a", [MarkCall("memwatch_skip", ("JVM",), {})], Settings())
    assert spec.skip_reason == "JVM"


def test_unknown_marker_names_are_ignored() -> None:
    spec = build_spec("t.py::test_a", [MarkCall("parametrize", ("x", [1]), {})], Settings())
    assert spec.marker_names == []
    assert not spec.has_verdict


def test_module_has_no_pytest_import() -> None:
    assert "pytest" not in vars(markers)
