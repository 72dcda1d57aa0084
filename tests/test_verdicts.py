"""Budgets and the repeated-run leak verdict, on synthetic probe readings.

Each scenario drives a :class:`RepeatPlan` the way the plugin does (``while
plan.wants_more(): record(before, after)``) with readings made up from a growth
pattern, so the rule is tested without any real allocator noise.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_memwatch.base.probes import Sample
from pytest_memwatch.base.verdict import Verdict
from pytest_memwatch.engine.plan import SCREEN_MULTIPLE, RepeatPlan, RunRecord
from pytest_memwatch.engine.verdicts import (
    MEMORY_METRICS,
    RESOURCE_METRICS,
    growth_verdict,
    peak_verdict,
)

Step = Callable[[int], dict[str, int]]
START = {
    "rss": 50_000_000,
    "malloc": 10_000_000,
    "blocks": 100_000,
    "gc_objects": 5_000,
    "fds": 10,
    "threads": 1,
}


def drive(plan: RepeatPlan, step: Step, *, missing: tuple[str, ...] = ()) -> RepeatPlan:
    """Run ``plan`` to completion; run ``i`` changes each metric by ``step(i)``."""
    values = dict(START)
    for name in missing:
        values[name] = None  # type: ignore[assignment]
    t = 0.0
    i = 0
    while plan.wants_more():
        before = Sample(t=t, **values)
        for metric, delta in step(i).items():
            values[metric] += delta
        t += 1.0
        plan.record(before, Sample(t=t, **values), peak_rss=values["rss"])
        i += 1
        assert i < 1000, "the plan never stopped asking for runs"
    return plan


def leak(step: Step, warmup: int = 2, runs: int = 5, **kw: object) -> tuple[RepeatPlan, Verdict]:
    plan = drive(RepeatPlan(warmup, runs, **kw), step)  # type: ignore[arg-type]
    return plan, plan.leak_verdict()


def test_constant_leak_of_one_block_per_run_is_flagged() -> None:
    plan, verdict = leak(lambda i: {"blocks": 1})
    assert not verdict.passed
    assert verdict.kind == "leak"
    assert verdict.source == "marker"
    assert verdict.metric == "blocks"
    assert verdict.measured == 1.0
    n = len(plan.measured)
    assert n >= 5
    assert verdict.message == (
        "leak: blocks grows +1.0 blocks/run (95% CI +1.0 blocks..+1.0 blocks; last runs "
        "+1.0 blocks, +1.0 blocks, +1.0 blocks, +1.0 blocks, +1.0 blocks) "
        f"over {n} runs after 2 warmup"
    )
    metrics = verdict.details["metrics"]
    assert metrics["blocks"]["state"] == "suspect"
    assert metrics["blocks"]["deltas"] == [1.0] * n
    assert metrics["malloc"]["state"] == "clean"


def test_zero_growth_is_clean_without_extra_runs() -> None:
    plan, verdict = leak(lambda i: {})
    assert verdict.passed
    assert verdict.message == "no growth trend over 5 runs"
    assert plan.count == 7
    assert len(plan.measured) == 5
    assert [r.warmup for r in plan.records] == [True, True, False, False, False, False, False]


def test_cache_that_fills_then_stops_is_clean_after_extension() -> None:
    # 100 entries of 80 bytes a run for the first six runs, then the cache is full.
    plan, verdict = leak(lambda i: {"blocks": 100, "malloc": 8000} if i < 6 else {})
    assert plan.count > 7, "still-growing readings must earn more runs"
    assert verdict.passed, verdict.message
    assert plan.count <= 2 + plan.max_runs


def test_slow_cache_with_more_runs_is_clean() -> None:
    plan, verdict = leak(lambda i: {"blocks": 100, "malloc": 8000} if i < 12 else {}, runs=10)
    assert plan.count > 12
    assert verdict.passed, verdict.message


def test_one_time_cost_after_warmup_is_not_a_leak() -> None:
    _, verdict = leak(lambda i: {"blocks": 500, "malloc": 80_000} if i == 3 else {})
    assert verdict.passed, verdict.message


def test_leak_on_every_third_call_is_flagged() -> None:
    # 3 KiB every third call: about 1 KiB a call, well above malloc's noise floor.
    _, verdict = leak(lambda i: {"blocks": 3, "malloc": 3072} if i % 3 == 2 else {})
    assert not verdict.passed
    assert verdict.metric == "malloc"
    assert verdict.measured == pytest.approx(1024.0, rel=0.3)
    assert "blocks grows" in verdict.message


def test_small_leak_on_every_third_call_shows_in_blocks() -> None:
    # A few hundred bytes hide in malloc's noise; the live-block count still shows them.
    _, verdict = leak(lambda i: {"blocks": 3, "malloc": 300} if i % 3 == 2 else {})
    assert not verdict.passed
    assert verdict.metric == "blocks"
    assert verdict.measured == pytest.approx(1.0, rel=0.3)


def test_leak_on_every_seventh_call_is_flagged_with_a_long_enough_window() -> None:
    _, verdict = leak(lambda i: {"blocks": 7, "malloc": 7168} if i % 7 == 6 else {}, runs=10)
    assert not verdict.passed
    assert verdict.metric == "malloc"
    assert verdict.measured == pytest.approx(1024.0, rel=0.3)


def test_fluctuation_returning_to_baseline_is_clean() -> None:
    _, verdict = leak(
        lambda i: (
            {"blocks": 50, "malloc": 4000, "rss": 65536}
            if i % 2 == 0
            else {"blocks": -50, "malloc": -4000, "rss": -65536}
        )
    )
    assert verdict.passed, verdict.message


def test_rss_page_noise_under_the_floor_is_clean() -> None:
    plan, verdict = leak(lambda i: {"rss": [4096, -4096, 8192, -8192, 0][i % 5]})
    assert verdict.passed, verdict.message
    assert plan.count == 7


def test_byte_leak_reports_bytes_first() -> None:
    _, verdict = leak(lambda i: {"rss": 1 << 20, "malloc": 1 << 20, "blocks": 1})
    assert not verdict.passed
    assert verdict.metric == "malloc"
    assert verdict.measured == float(1 << 20)
    assert verdict.message.startswith("leak: malloc grows +1.0 MiB/run (95% CI +1.0 MiB..+1.0 MiB;")
    # Most telling first: bytes, then RSS, then blocks.
    msg = verdict.message
    assert msg.index("malloc grows") < msg.index("rss grows") < msg.index("blocks grows")


def test_resources_are_judged_only_when_asked() -> None:
    fd_leak: Step = lambda i: {"fds": 1}  # noqa: E731
    _, ignored = leak(fd_leak)
    assert ignored.passed
    _, judged = leak(fd_leak, metrics=(*MEMORY_METRICS, *RESOURCE_METRICS))
    assert not judged.passed
    assert judged.metric == "fds"
    assert "fds grows +1.0 fds/run" in judged.message


def test_a_missing_probe_is_left_out_not_read_as_zero() -> None:
    plan = drive(RepeatPlan(1, 4), lambda i: {"blocks": 2}, missing=("malloc",))
    assert plan.deltas("malloc") is None
    assert plan.deltas("blocks") == [2.0] * len(plan.measured)
    verdict = plan.leak_verdict()
    assert not verdict.passed
    assert "malloc" not in verdict.details["metrics"]
    assert all(r.after.malloc is None for r in plan.records)


def test_deltas_are_consecutive_after_readings() -> None:
    # Run deltas follow CPython's -R: after(i) - after(i-1), so what a run
    # replaces from the previous run cancels out.
    growth = [5, 7, 9, 11]
    plan = drive(RepeatPlan(1, 3, extend=False), lambda i: {"blocks": growth[i]})
    assert plan.count == 4
    assert plan.deltas("blocks") == [7.0, 9.0, 11.0]
    plan0 = drive(RepeatPlan(0, 3, extend=False), lambda i: {"blocks": growth[i]})
    assert plan0.deltas("blocks") == [5.0, 7.0, 9.0]


def test_no_extension_when_extend_is_false() -> None:
    plan, verdict = leak(lambda i: {"blocks": 1}, warmup=1, runs=3, extend=False)
    assert plan.count == 4
    assert not verdict.passed


def test_growth_per_call_is_the_median_delta_of_the_larger_byte_metric() -> None:
    plan = drive(RepeatPlan(1, 4, extend=False), lambda i: {"rss": 1000, "malloc": 2000})
    per_call, details = plan.growth_per_call()
    assert per_call == 2000.0
    assert details["malloc"]["median"] == 2000.0
    assert details["rss"]["deltas"] == [1000.0] * 4
    assert details["malloc"]["trend"]["slope"] == 2000.0


def test_growth_per_call_ignores_a_one_off_arena() -> None:
    plan = drive(
        RepeatPlan(0, 5, extend=False),
        lambda i: {"rss": 262_144 if i == 2 else 0, "malloc": 0},
    )
    per_call, _ = plan.growth_per_call()
    assert per_call is not None
    assert per_call < 32 * 1024


def test_growth_per_call_of_a_single_run_is_its_delta() -> None:
    plan = drive(RepeatPlan(0, 1, extend=False), lambda i: {"rss": 4096, "malloc": 100})
    per_call, details = plan.growth_per_call()
    assert per_call == 4096.0
    assert details["delta"]["rss"] == 4096
    assert details["delta"]["blocks"] == 0


def test_growth_per_call_before_any_run() -> None:
    assert RepeatPlan(2, 5).growth_per_call() == (None, {})


def test_plan_argument_checks() -> None:
    with pytest.raises(ValueError, match=r"^warmup must be >= 0, got -1$"):
        RepeatPlan(-1, 5)
    with pytest.raises(ValueError, match=r"^runs must be >= 1, got 0$"):
        RepeatPlan(2, 0)


def test_plan_refuses_more_records_than_it_has_room_for() -> None:
    plan = RepeatPlan(0, 2, extend=False)
    s = Sample(t=0.0, **START)
    plan.record(s, s)
    plan.record(s, s)
    assert not plan.wants_more()
    with pytest.raises(RuntimeError, match="called more often than planned"):
        plan.record(s, s)


def test_run_record_to_dict() -> None:
    before = Sample(t=0.0, **START)
    after = Sample(t=1.0, **{**START, "blocks": START["blocks"] + 3, "rss": START["rss"] - 4096})
    rec = RunRecord(before, after, peak_rss=START["rss"] + 1, warmup=True)
    d = rec.to_dict()
    assert d["warmup"] is True
    assert d["delta"] == {
        "rss": -4096,
        "malloc": 0,
        "blocks": 3,
        "gc_objects": 0,
        "fds": 0,
        "threads": 0,
    }
    assert d["after"] == after.to_dict()
    assert d["peak_rss"] == START["rss"] + 1


def test_records_keep_the_peaks() -> None:
    plan = drive(RepeatPlan(0, 2, extend=False), lambda i: {"rss": 8192})
    assert [r.peak_rss for r in plan.records] == [START["rss"] + 8192, START["rss"] + 16384]


# -- budgets -------------------------------------------------------------------


def test_growth_verdict_over_the_limit() -> None:
    v = growth_verdict(262_144.0, 32_768, source="marker", runs=1, details={"x": 1})
    assert not v.passed
    assert v.message == "max_growth: 256.0 KiB left behind per call, over the limit of 32.0 KiB"
    assert (v.kind, v.source, v.metric, v.limit, v.measured) == (
        "max_growth",
        "marker",
        "bytes",
        32_768,
        262_144.0,
    )
    assert v.details == {"x": 1}


def test_growth_verdict_within_the_limit_over_several_runs() -> None:
    v = growth_verdict(1024.0, 1024, source="option", runs=5, details={})
    assert v.passed  # the limit itself is allowed
    assert v.message == (
        "max_growth: 1.0 KiB left behind per call (median over 5 runs), within the limit of 1.0 KiB"
    )
    assert v.source == "option"


def test_growth_verdict_without_a_byte_probe_passes_and_says_why() -> None:
    v = growth_verdict(None, 1024, source="marker", runs=1, details={})
    assert v.passed
    assert v.message == "growth could not be measured on this platform (no RSS or malloc probe)"


def test_peak_verdict() -> None:
    over = peak_verdict(50.0 * 1024 * 1024, 10 * 1024 * 1024, source="marker")
    assert not over.passed
    assert over.message == (
        "max_memory: peak 50.0 MiB above the memory at test start, over the limit of 10.0 MiB"
    )
    assert (over.metric, over.limit, over.measured) == ("peak_rss", 10 * 1024 * 1024, 50 * 2**20)
    within = peak_verdict(512.0, 1024, source="marker")
    assert within.passed
    assert within.message.endswith("within the limit of 1.0 KiB")
    unknown = peak_verdict(None, 1024, source="marker")
    assert unknown.passed
    assert unknown.message == "peak could not be measured on this platform"


def test_verdict_to_dict_is_plain_data() -> None:
    v = growth_verdict(2048.0, 1024, source="marker", runs=1, details={"delta": {"rss": 2048}})
    assert v.to_dict() == {
        "kind": "max_growth",
        "source": "marker",
        "passed": False,
        "message": "max_growth: 2.0 KiB left behind per call, over the limit of 1.0 KiB",
        "metric": "bytes",
        "limit": 1024,
        "measured": 2048.0,
        "details": {"delta": {"rss": 2048}},
    }


# -- repetition by evidence, within a time budget ------------------------------


class FakeClock:
    """CPU seconds that advance by ``per_run`` each time the plan reads them (once a run)."""

    def __init__(self, per_run: float) -> None:
        self.now = 0.0
        self.per_run = per_run

    def __call__(self) -> float:
        value = self.now
        self.now += self.per_run
        return value


def timed(step: Step, budget: float = 1.0, per_run: float = 0.01, **kw: object):
    plan = RepeatPlan(2, 5, budget=budget, clock=FakeClock(per_run), **kw)  # type: ignore[arg-type]
    drive(plan, step)
    return plan, plan.leak_verdict()


def test_a_bounded_cache_still_filling_after_the_default_runs_passes_once_it_is_full() -> None:
    # One 1 KiB entry per call for 40 calls, then the cache is full: flagged
    # without a budget (20 runs, all growing), passed when the plan can wait.
    def filling(i: int) -> dict[str, int]:
        return {"blocks": 2, "malloc": 1072} if i < 40 else {}

    _, untimed = leak(filling)
    assert not untimed.passed
    plan, verdict = timed(filling)
    assert verdict.passed, verdict.message
    assert verdict.message.startswith("no growth trend over ")
    assert 40 < len(plan.measured) < 100
    assert verdict.details["stopped"] == "settled"


def test_a_leak_every_10th_call_beyond_the_window_is_flagged() -> None:
    # The first step falls on a measured run, the next only after the window.
    def tenth(i: int) -> dict[str, int]:
        return {"blocks": 1, "malloc": 8240} if i % 10 == 3 else {}

    _, untimed = leak(tenth)
    assert untimed.passed
    plan, verdict = timed(tenth)
    assert not verdict.passed
    assert "blocks grows" in verdict.message
    assert "still growing when the 1 s budget ran out" in verdict.message
    assert verdict.details["stopped"] == "budget"
    # 1 s of 10 ms runs, less the warmup, plus at most one stride past it.
    assert 95 <= len(plan.measured) <= 115


def test_a_late_one_time_step_passes_after_enough_level_runs() -> None:
    plan, verdict = timed(lambda i: {"blocks": 200, "malloc": 1600} if i == 3 else {})
    assert verdict.passed
    assert verdict.details["stopped"] == "settled"
    # Twice the requested runs of level readings after the step.
    assert len(plan.measured) >= 1 + 2 * 5


def test_a_burst_that_stopped_is_not_a_leak_when_the_budget_runs_out_on_it() -> None:
    # Measured on CPython 3.13 (10 runs judged): a one-time step, then a few
    # hundred bytes to 4 KiB of allocator noise on three runs in a row, then
    # level readings. Its slope's interval clears the floor, but a climb that
    # has been level for as long as its longest gap is no evidence of a leak.
    malloc = [64, 2736, 0, 0, 1088, 4528, 1440, 0, 0, 0]

    def burst(i: int) -> dict[str, int]:
        return {"malloc": malloc[i - 2]} if 2 <= i < 2 + len(malloc) else {}

    def judged(step: Step, budget: float) -> Verdict:
        plan = RepeatPlan(2, 10, budget=budget, clock=FakeClock(0.01))
        return drive(plan, step).leak_verdict()

    verdict = judged(burst, budget=0.001)
    assert verdict.passed, verdict.message
    assert verdict.details["inconclusive"] is True
    assert verdict.details["metrics"]["malloc"]["state"] == "changing"
    assert verdict.details["metrics"]["malloc"]["trend"]["low"] > 256
    # The same on CPython 3.11, the burst on the first runs measured exactly.
    later = [0, 3472, 0, 0, 1088, 2300, 1600, 0, 0, 0]
    other = judged(lambda i: {"malloc": later[i - 2]} if 2 <= i < 12 else {}, budget=0.001)
    assert other.passed and other.details["inconclusive"] is True, other.message
    # With time to spare it settles as a one-time cost.
    settled = judged(burst, budget=1.0)
    assert settled.passed and settled.details["stopped"] == "settled", settled.message
    # The same readings still climbing at the end are a leak.
    growing = judged(lambda i: {"malloc": malloc[(i + 5) % len(malloc)] + 512}, budget=0.001)
    assert not growing.passed, growing.message


def test_a_steady_climb_fails_when_the_budget_runs_out() -> None:
    _, verdict = timed(lambda i: {"blocks": 1}, budget=0.5)
    assert not verdict.passed
    assert verdict.details["stopped"] == "budget"
    assert "(still growing when the 500 ms budget ran out)" in verdict.message


def test_a_budget_that_runs_out_while_ambiguous_says_so_instead_of_guessing() -> None:
    # Growth on some runs only, too irregular for a staircase or a clear slope.
    pattern = [0, 300, 0, 0, 900, 0, 300, 0, 0, 0, 600, 0]
    _, verdict = timed(lambda i: {"malloc": pattern[i % len(pattern)] * 3}, budget=0.2)
    assert verdict.passed
    assert verdict.details["inconclusive"] is True
    assert verdict.details["stopped"] == "budget"
    assert verdict.message == (
        "no verdict: malloc still changing after 20 runs when the 200 ms budget ran out; "
        "give it more time (--memwatch-repeat-budget) to decide"
    )
    # With time to spare the same slow climb (+525 B/run on average) is judged.
    _, settled = timed(lambda i: {"malloc": pattern[i % len(pattern)] * 3}, budget=5.0)
    assert not settled.passed, settled.message
    assert settled.message.startswith("leak: malloc grows ")


def test_a_multiple_budget_is_relative_to_the_first_run() -> None:
    plan = RepeatPlan(2, 5, budget_multiple=20, clock=FakeClock(0.01))
    drive(plan, lambda i: {"blocks": 1})
    # The first run took 10 ms, so the budget is 200 ms.
    assert plan.budget_seconds() == pytest.approx(0.2)
    assert 15 <= len(plan.measured) <= 25
    assert plan.leak_verdict().details["stopped"] == "budget"


def test_a_large_steady_climb_stops_at_the_growth_cap() -> None:
    plan, verdict = timed(lambda i: {"malloc": 8 * 1024 * 1024}, budget=1000.0, per_run=0.001)
    assert not verdict.passed
    assert verdict.details["stopped"] == "cap"
    assert len(plan.measured) <= 20


def screened(
    step: Step, *, budget: float = 1.0, per_run: float = 0.01
) -> tuple[RepeatPlan, list[bool]]:
    """Drive a screening plan; also return whether each run was a screened (cheap) one."""
    plan = RepeatPlan(2, 5, budget=budget, clock=FakeClock(per_run), screen=True)
    seen: list[bool] = []

    def recorded(i: int) -> dict[str, int]:
        seen.append(plan.screening)
        return step(i)

    drive(plan, recorded)
    return plan, seen


def test_a_clean_screen_is_the_verdict_and_growth_goes_on_in_exact_mode() -> None:
    clean, _ = screened(lambda i: {})
    assert clean.count == 7 and clean.screening
    assert clean.leak_verdict().details["screened"] == 0
    # Growth in the screen: at least `runs` more runs, measured exactly; the
    # first exact run (after the switch) is left out of the series.
    plan, seen = screened(lambda i: {"blocks": 1})
    verdict = plan.leak_verdict()
    assert not verdict.passed
    assert seen[:7] == [True] * 7 and not any(seen[7:])
    assert verdict.details["screened"] == 5
    assert len(plan.deltas("blocks") or []) == plan.count - 2 - 1
    assert plan.collect_before is False


def test_a_one_time_step_in_the_screen_settles_there_without_exact_runs() -> None:
    # One block kept once, in the second screened run (the interpreter's or
    # pytest's own one-time cost): more cheap runs show it stays level.
    plan, seen = screened(lambda i: {"blocks": 1, "malloc": 1088} if i == 3 else {})
    verdict = plan.leak_verdict()
    assert verdict.passed, verdict.message
    assert all(seen) and plan.screening
    assert verdict.details["screened"] == 0
    assert 7 < plan.count <= 2 + SCREEN_MULTIPLE * 5


def test_a_suspect_screen_goes_exact_at_once() -> None:
    plan, seen = screened(lambda i: {"malloc": 4096})
    assert not plan.leak_verdict().passed
    # Five screened runs, then exact ones: no cheap extension of a clear climb.
    assert seen[:7] == [True] * 7 and not any(seen[7:])


def test_a_screen_that_never_settles_goes_exact_at_its_limit() -> None:
    # Noise that wanders above the floor now and then stays ambiguous: the
    # screen stops at its limit and the verdict is judged on exact runs.
    pattern = [0, 300, 0, 0, 900, 0, 300, 0, 0, 0, 600, 0]
    base_limit = RepeatPlan(2, 5, budget=1.0, clock=FakeClock(0.01), screen=True).max_runs
    plan, seen = screened(lambda i: {"malloc": pattern[i % len(pattern)] * 3})
    verdict = plan.leak_verdict()
    screened_runs = verdict.details["screened"]
    assert 5 < screened_runs <= SCREEN_MULTIPLE * 5
    assert seen[: 2 + screened_runs] == [True] * (2 + screened_runs)
    assert not any(seen[2 + screened_runs :])
    # The extra screened runs do not eat into the exact runs' limit.
    assert plan.max_runs == base_limit + screened_runs - 5
    assert len(plan.deltas("malloc") or []) == plan.count - 2 - 1


def test_a_spent_budget_ends_the_screen() -> None:
    # Each run costs 100 ms against a 500 ms budget: the budget is spent by the
    # end of the requested runs, so an unsettled screen goes exact at once.
    plan, seen = screened(lambda i: {"blocks": 1} if i == 3 else {}, budget=0.5, per_run=0.1)
    assert seen[:7] == [True] * 7 and not any(seen[7:])
    assert plan.leak_verdict().details["screened"] == 5


# -- messages as a headline and details ------------------------------------------------

LONG_LEAK = (
    "leak: rss grows +1.0 MiB/run (95% CI +1.0 MiB..+1.0 MiB; last runs +1.0 MiB, +1.0 MiB); "
    "blocks grows +32.0 blocks/run (95% CI +32.0 blocks..+32.0 blocks; last runs +32.0 blocks, "
    "+32.0 blocks) over 6 runs after 2 warmup (still growing when the 1 s budget ran out); "
    "left behind by the measured runs: fd 5 (/dev/null); fd 6 (/dev/null)"
)


def test_a_long_message_is_a_headline_with_details() -> None:
    from pytest_memwatch.engine.messages import headline, message_lines

    assert message_lines(LONG_LEAK) == [
        "leak: rss grows +1.0 MiB/run; blocks grows +32.0 blocks/run over 6 runs after 2 warmup",
        "rss: 95% CI +1.0 MiB..+1.0 MiB",
        "rss: last runs +1.0 MiB, +1.0 MiB",
        "blocks: 95% CI +32.0 blocks..+32.0 blocks",
        "blocks: last runs +32.0 blocks, +32.0 blocks",
        "still growing when the 1 s budget ran out",
        "left behind by the measured runs:",
        "  fd 5 (/dev/null)",
        "  fd 6 (/dev/null)",
    ]
    assert headline(LONG_LEAK) == message_lines(LONG_LEAK)[0]
    assert message_lines("max_growth: 1.0 MiB left behind per call") == [
        "max_growth: 1.0 MiB left behind per call"
    ]


@given(
    st.lists(
        st.text(alphabet="ab (;):'x", min_size=1, max_size=30), min_size=1, max_size=8
    ).map("; ".join)
)
def test_message_lines_never_lose_a_word(message: str) -> None:
    from pytest_memwatch.engine.messages import message_lines

    lines = message_lines(message, width=10)
    assert lines
    # Nothing is lost: every letter of the message is in some line, as often.
    assert sorted(c for c in message if c.isalpha()) == sorted(
        c for line in lines for c in line if c.isalpha()
    ), (message, lines)


def test_an_apostrophe_is_not_a_quote() -> None:
    from pytest_memwatch.engine.messages import message_lines

    message = (
        "leak: fds grows +1.0 fds/run (95% CI +1.0 fds..+1.0 fds; last runs +1.0 fds, +1.0 fds) "
        "over 72 runs after 1 warmup (still growing past the harness's growth cap); "
        "left behind by the measured runs: fd 19 (/dev/null); file '/tmp/a; b'"
    )
    assert message_lines(message) == [
        "leak: fds grows +1.0 fds/run over 72 runs after 1 warmup",
        "95% CI +1.0 fds..+1.0 fds",
        "last runs +1.0 fds, +1.0 fds",
        "still growing past the harness's growth cap",
        "left behind by the measured runs:",
        "  fd 19 (/dev/null)",
        "  file '/tmp/a; b'",
    ]


def test_rss_kept_in_steps_while_the_exact_counters_are_clean_is_no_verdict() -> None:
    # Measured on CPython 3.12 (boltons' test_toggle_gc_postcollect, which
    # churns two million dicts a run): RSS kept 1 MiB every other run over the
    # 10 runs judged, with no block and no malloc byte left. Under a budget
    # that asks for more runs.
    step = 1024 * 1024

    def judged(fn: Step, budget: float | None) -> Verdict:
        plan = RepeatPlan(2, 10, budget=budget, clock=FakeClock(0.01))
        return drive(plan, fn).leak_verdict()

    def arenas(i: int) -> dict[str, int]:
        return {"rss": step if i % 2 else 0}

    verdict = judged(arenas, 0.001)
    assert verdict.passed, verdict.message
    assert verdict.details["inconclusive"] is True
    assert verdict.details["metrics"]["rss"]["state"] == "changing"
    # Without a budget the staircase decides, as before.
    assert not judged(arenas, None).passed
    # RSS growing on every run is a leak whatever the counters say.
    every = judged(lambda i: {"rss": step}, 0.001)
    assert not every.passed and "rss grows" in every.message
    # And with blocks kept alongside, the steps are a leak.
    assert not judged(lambda i: {"rss": step, "blocks": 3} if i % 2 else {}, 0.001).passed
