"""Property tests: generated hostile values thrown at every reader memwatch has.

Each reader (marker arguments, options, ini keys, environment variables,
results files, saved runs, soak samples files, the fixture and library
arguments) must answer with a valid result or its own named error, never with
another exception. The pure readers get many examples; the end-to-end paths
through an inner pytest, which cost a second or more each, get a few.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import pickle
from functools import cache
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from _reports_sample import sample_doc
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pytest_memwatch import cli, soak
from pytest_memwatch.api import MemoryMonitoringService, MemoryTracker, memory_limit
from pytest_memwatch.base.limits import MAX_DURATION, MAX_SIZE, short_repr
from pytest_memwatch.base.units import UnitError, parse_duration, parse_rate, parse_size
from pytest_memwatch.config.markers import SCHEMAS, MarkerError
from pytest_memwatch.config.settings import SETTINGS, SettingError, Settings, resolve
from pytest_memwatch.config.tolerances import parse_tolerance
from pytest_memwatch.engine import MarkCall, build_spec
from pytest_memwatch.fixture import MemwatchHandle
from pytest_memwatch.reports.baselines import BaselineError, SavedRun, load_history
from pytest_memwatch.reports.compare import compare_docs
from pytest_memwatch.reports.merge import merge_documents
from pytest_memwatch.reports.results_file import load_results, read_json
from pytest_memwatch.reports.soak import report_document
from pytest_memwatch.reports.validation import ResultsError

PURE = settings(max_examples=200, deadline=None)
FILES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
END_TO_END = settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


huge_ints = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 3, max_value=2**63 + 3),
    st.builds(lambda e, s: s * 10**e, st.integers(0, 1200), st.sampled_from([1, -1])),
    st.builds(lambda: 10**5000),  # built, not st.just: hypothesis would repr() it
)
number_text = st.builds(
    lambda sign, digits, unit: sign + digits + unit,
    st.sampled_from(["", "-", " ", "+"]),
    st.from_regex(r"[0-9]{0,450}(\.[0-9]{0,4})?(e[0-9]{1,3})?", fullmatch=True),
    st.sampled_from(["", " KiB", "MB", "b", "s", "ms", "h", "d", " MiB/h", "KiB/min", "%", "x"]),
)
hostile = st.one_of(
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    number_text,
    st.text(max_size=40),
    st.booleans(),
    st.none(),
    st.lists(st.one_of(st.integers(), st.text(max_size=8), number_text), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.builds(BadRepr),  # built, not st.just: hypothesis would repr() the instance
    st.builds(object),
)


# -- the unit parsers -----------------------------------------------------------------


@PURE
@given(hostile)
def test_parse_size_gives_bytes_in_range_or_a_unit_error(value: Any) -> None:
    try:
        n = parse_size(value)
    except UnitError as exc:
        assert str(exc)
        return
    assert isinstance(n, int) and 0 <= n <= MAX_SIZE


@PURE
@given(hostile)
def test_parse_duration_gives_seconds_in_range_or_a_unit_error(value: Any) -> None:
    try:
        s = parse_duration(value)
    except UnitError:
        return
    assert isinstance(s, float) and 0 < s <= MAX_DURATION and not math.isnan(s)


@PURE
@given(st.one_of(hostile, st.builds(lambda a, b: f"{a}/{b}", number_text, number_text)))
def test_parse_rate_gives_a_finite_rate_or_a_unit_error(value: Any) -> None:
    try:
        r = parse_rate(value)
    except UnitError:
        return
    assert math.isfinite(r) and r >= 0


@PURE
@given(st.builds(lambda m, t: f"{m}:{t}",
                 st.sampled_from(["growth", "peak", "blocks", "rss", "x"]), number_text)
       | st.text(max_size=30))
def test_parse_tolerance_gives_a_tolerance_or_a_value_error(text: str) -> None:
    try:
        tol = parse_tolerance(text)
    except ValueError:
        return
    assert math.isfinite(tol.absolute or 0) and math.isfinite(tol.relative or 0)


@PURE
@given(hostile)
def test_short_repr_never_raises_and_stays_short(value: Any) -> None:
    assert len(short_repr(value)) <= 80


# -- marker arguments ---------------------------------------------------------------


kwarg_names = st.sampled_from(
    ["limit", "warmup", "runs", "resources", "ignore", "compare_fail", "duration",
     "interval", "max_growth_rate", "reason", "bogus"]
)


@PURE
@given(
    st.sampled_from(sorted(SCHEMAS)),
    st.lists(hostile, max_size=3),
    st.dictionaries(kwarg_names, hostile, max_size=3),
)
def test_every_marker_argument_gives_values_or_a_named_marker_error(
    name: str, args: list[Any], kwargs: dict[str, Any]
) -> None:
    calls = [MarkCall(name, tuple(args), kwargs)]
    try:
        build_spec("t.py::test_x", calls, Settings())
    except MarkerError as exc:
        message = str(exc)
        assert message.startswith(f"memwatch: t.py::test_x: bad marker @pytest.mark.{name}(")
        assert "Expected " in message
        return
    values = SCHEMAS[name].parse(args, kwargs)
    for key in ("warmup", "runs"):
        if isinstance(values.get(key), int):
            assert values[key] <= 1000


# -- options, ini keys and environment variables ------------------------------------------


setting_text = st.one_of(
    number_text,
    st.text(max_size=30),
    st.builds(lambda a, b: f"{a}:{b}", number_text, number_text),
    st.builds(lambda m, t: f"{m}:{t}", st.sampled_from(["peak", "thread", "blocks"]), number_text),
)


@PURE
@given(
    st.sampled_from([s.name for s in SETTINGS]),
    st.sampled_from(["cli", "env", "ini", "toml"]),
    setting_text,
    hostile,
)
def test_every_setting_gives_settings_or_a_named_setting_error(
    name: str, layer: str, text: str, toml_value: Any
) -> None:
    setting = next(s for s in SETTINGS if s.name == name)
    cli_values: dict[str, Any] = {}
    env: dict[str, str] = {}
    ini: dict[str, Any] = {}
    types: dict[str, Any] = {}
    if layer == "cli":
        cli_values[name] = [text] if setting.kind == "append" else text
    elif layer == "env":
        assume(setting.env is not None and "\0" not in text)
        env[setting.env] = text  # type: ignore[index]
    else:
        ini[name] = text
        if layer == "toml":
            types[name] = toml_value
    try:
        resolved = resolve(cli_values, env, ini, ini_types=types)
    except SettingError as exc:
        assert str(exc).startswith("memwatch: ")
        return
    repeat = resolved.repeat
    if repeat is not None:
        assert 0 <= repeat.warmup <= 1000 and 1 <= repeat.runs <= 1000
    assert 0 <= resolved.top <= 100_000
    if resolved.max_growth is not None:
        assert 0 <= resolved.max_growth <= MAX_SIZE


# -- results files, saved runs and the CLI --------------------------------------------------


@cache
def _base_doc() -> dict[str, Any]:
    return sample_doc()


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            found += _paths(v, (*prefix, i))
    return found


DOC_PATHS = _paths(sample_doc())
json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), huge_ints.filter(lambda n: abs(n) < 10**4000),
        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
        st.sampled_from(["<script>alert(1)</script>", "", "passed", "rss", "growth"]),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=3),
    max_leaves=6,
)


def mutate(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def write_text(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, allow_nan=True), encoding="utf-8")
    return path


def run_cli(*argv: str) -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    status = cli.main(list(argv), out=out, err=err)
    return status, err.getvalue()


@FILES
@given(st.sampled_from(DOC_PATHS), json_values)
# Found by this test: a failed leak verdict whose free-form details hold a number as "metrics".
@example(path=("tests", 1, "verdicts", 0, "details", "metrics"), value=1)
def test_a_mutated_results_file_is_read_rendered_and_compared_or_named(
    tmp_path_factory: pytest.TempPathFactory, path: tuple[Any, ...], value: Any
) -> None:
    folder = tmp_path_factory.mktemp("doc")
    target = write_text(folder / "r.json", mutate(_base_doc(), path, value))
    try:
        doc = load_results(target)
    except ResultsError as exc:
        assert str(exc).startswith(str(target))
        status, err = run_cli("report", str(target), "-o", str(folder / "r.html"))
        assert status == cli.ERROR and err.startswith(f"memwatch: {target}")
        return
    # Valid against the schema: every consumer must cope with it.
    from pytest_memwatch.reports.html import render_report

    assert "<script>alert(1)</script>" not in render_report(doc)
    compare_docs(_base_doc(), doc, ["growth:10%", "peak:5MB", "blocks:100"])
    compare_docs(doc, _base_doc(), ["growth:10%"])
    merge_documents([("a.json", doc)])
    good = write_text(folder / "good.json", _base_doc())
    for argv in (
        ("report", str(target), "-o", str(folder / "r.html")),
        ("compare", str(good), str(target), "--fail", "peak:1MB"),
        ("compare", str(target), str(good), "--html", str(folder / "c.html")),
    ):
        status, err = run_cli(*argv)
        assert status in (cli.OK, cli.REGRESSION), (argv, err)


@FILES
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_are_a_results_document_or_a_named_error(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    target = tmp_path_factory.mktemp("raw") / "r.json"
    target.write_bytes(raw)
    try:
        read_json(target)
        load_results(target)
    except ResultsError as exc:
        assert str(exc).startswith(str(target))


@FILES
@given(st.sampled_from(DOC_PATHS), json_values)
def test_a_mutated_saved_run_is_loaded_or_skipped_by_name(
    tmp_path_factory: pytest.TempPathFactory, path: tuple[Any, ...], value: Any
) -> None:
    storage = tmp_path_factory.mktemp("store")
    machine = storage / "Linux-CPython-3.11-64bit"
    machine.mkdir()
    write_text(machine / "0001_main.json", _base_doc())
    bad = write_text(machine / "0002_next.json", mutate(_base_doc(), path, value))
    try:
        SavedRun(bad, 2, "next", machine.name).load()
    except BaselineError as exc:
        assert str(exc).startswith(f"saved run {bad}")
    grouped, problems = load_history(storage)
    assert len(grouped[machine.name]) + len(problems) == 2
    status, err = run_cli("history", str(storage), "-o", str(storage / "h.html"))
    assert status == cli.OK, err


HEADER = {
    "format": "pytest-memwatch-soak", "version": 1, "nodeid": "t.py::test_x",
    "duration_s": 20.0, "interval_s": 0.5, "warmup_s": 2.0, "limit_rate": None,
}
sample_fields = st.fixed_dictionaries(
    {"t": json_values | st.floats(0, 30)},
    optional={f: json_values | st.integers(0, 2**40) for f in soak.FIELDS},
)
soak_records = st.one_of(
    sample_fields,
    st.fixed_dictionaries({"event": st.sampled_from(["resume", "end", "x"]), "t": json_values,
                           "complete": st.booleans()}),
    st.sampled_from(sorted(HEADER)).flatmap(lambda k: json_values.map(lambda v: {**HEADER, k: v})),
    json_values,
)


@FILES
@given(st.lists(soak_records, max_size=6), st.booleans())
def test_a_samples_file_is_read_reported_and_resumed_or_named(
    tmp_path_factory: pytest.TempPathFactory, records: list[Any], keep_header: bool
) -> None:
    folder = tmp_path_factory.mktemp("soak")
    plan = soak.SoakPlan("t.py::test_x", 20.0, 0.5, 2.0, None)
    path = folder / soak.samples_filename(plan.nodeid)
    lines = ([HEADER] if keep_header else []) + records
    path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in lines))
    try:
        found = soak.read_samples(path)
    except soak.SoakError as exc:
        assert str(exc).startswith(f"{path}")
        status, err = run_cli("soak-report", str(path), "-o", str(folder / "s.html"))
        assert status == cli.ERROR and err.startswith(f"memwatch: {path}")
        return
    assert all(0 <= s["t"] <= MAX_DURATION for s in found.samples)
    report_document(path)
    status, err = run_cli("soak-report", str(path), "-o", str(folder / "s.html"))
    assert status == cli.OK, err
    try:
        run = soak.SoakRun.prepare(plan, folder, resume=True, install_signals=False)
    except soak.SoakError as exc:
        assert str(exc).startswith("cannot resume")
    else:
        run.release()


# -- the fixture and the library API ------------------------------------------------------


@PURE
@given(hostile, hostile, hostile)
def test_check_leaks_arguments_are_checked_before_anything_runs(
    warmup: Any, runs: Any, resources: Any
) -> None:
    valid = (
        all(isinstance(v, int) and not isinstance(v, bool) for v in (warmup, runs))
        and 0 <= warmup <= 1000 and 2 <= runs <= 1000 and isinstance(resources, bool)
    )
    assume(not valid)  # a valid call would measure up to 2000 runs
    calls = []
    with pytest.raises((TypeError, ValueError)) as info:
        MemwatchHandle().check_leaks(
            lambda: calls.append(1), warmup=warmup, runs=runs, resources=resources
        )
    assert str(info.value).startswith("memwatch.check_leaks: ")
    assert calls == []


@PURE
@given(hostile, hostile, hostile)
def test_library_constructors_give_named_errors(interval: Any, warn: Any, limit: Any) -> None:
    try:
        svc = MemoryMonitoringService(interval, warn_mb=warn, limit_mb=limit)
    except (TypeError, ValueError) as exc:  # UnitError is a ValueError
        assert str(exc)
    else:
        assert 0 < svc.interval <= MAX_DURATION
    for make in (lambda: MemoryTracker(spike_threshold=warn), lambda: memory_limit(limit)):
        try:
            make()
        except UnitError:
            pass


# -- end to end: an inner pytest with generated marker arguments and option values ----------


def _pickled(value: Any) -> str:
    return base64.b64encode(pickle.dumps(value)).decode()


marker_calls = st.tuples(
    st.sampled_from(["max_growth", "max_memory", "no_leaks", "soak"]),
    st.lists(hostile.filter(lambda v: not isinstance(v, (BadRepr,)) and type(v) is not object),
             max_size=2),
    st.dictionaries(kwarg_names, hostile.filter(lambda v: type(v) not in (BadRepr, object)),
                    max_size=2),
)


@END_TO_END
@given(marker_calls)
def test_generated_marker_arguments_never_abort_the_session(
    pytester: pytest.Pytester, call: tuple[str, list[Any], dict[str, Any]]
) -> None:
    name, args, kwargs = call
    # A valid count runs the test that many times in process: keep the run short.
    assume(not any(
        k in ("runs", "warmup") and type(v) is int and 8 < v <= 1000 for k, v in kwargs.items()
    ))
    pytester.makepyfile(
        test_gen=f"""
        import base64, pickle, sys
        import pytest
        sys.set_int_max_str_digits(0)
        ARGS = pickle.loads(base64.b64decode({_pickled(args)!r}))
        KWARGS = pickle.loads(base64.b64decode({_pickled(kwargs)!r}))

        @pytest.mark.{name}(*ARGS, **KWARGS)
        def test_marked():
            pass

        def test_other():
            pass
        """
    )
    result = pytester.runpytest_inprocess(
        "-p", "no:randomly", "-p", "no:cacheprovider", "--memwatch-trace=0"
    )
    text = result.stdout.str()
    assert "INTERNALERROR" not in text, text
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("errors", 0) + outcomes.get(
        "skipped", 0) + outcomes.get("failed", 0) == 2, text
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), text


@END_TO_END
@given(st.sampled_from([s for s in SETTINGS if s.kind != "flag"]), setting_text)
def test_generated_option_values_are_a_usage_error_or_a_run(
    pytester: pytest.Pytester, setting: Any, text: str
) -> None:
    # Paths stay inside the inner run's directory: no absolute, home or parent paths.
    assume("\0" not in text and not text.lstrip().startswith(("-", "/", "~")))
    assume(".." not in text)
    # Valid values that make the one test long (many repeats, a long grace) add time only.
    try:
        parsed = setting.parse(text)
    except (ValueError, TypeError):
        parsed = None
    if setting.name == "repeat" and parsed is not None:
        assume(parsed.warmup + parsed.runs <= 8)
    if setting.name == "resources_grace" and parsed is not None:
        assume(parsed <= 1.0)
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest_inprocess(
        # No attribution (a tracemalloc re-run over this process's heap), unless
        # the generated option is --memwatch-trace itself (given last, it wins).
        "-p", "no:randomly", "-p", "no:cacheprovider", "--memwatch-trace=0",
        f"{setting.option}={text}",
        f"--memwatch-storage={pytester.path / 'store'}",
    )
    text_out = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text_out and "Traceback" not in text_out, text_out
    if result.ret == pytest.ExitCode.USAGE_ERROR:
        assert f"for {setting.option} (from command line option" in result.stderr.str()
    else:
        # A run: in process, a repeated test can get a real leak verdict (pytester
        # records every hook call), which is the plugin working, not breaking.
        assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), text_out
