"""Resource checks end to end: --memwatch-resources, no_leaks(resources=, ignore=), ini rules.

Runs that measure go through a subprocess; the bad-input runs measure nothing
and stay in process.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Runner

EXPECTED_RULE = "expected KIND:GLOB, e.g. thread:ThreadPoolExecutor-* or origin:grpc.*"
OPT_OUT = "To opt this test out: @pytest.mark.memwatch_skip(reason)."


def failure_lines(result: pytest.RunResult) -> dict[str, str]:
    """The memwatch failure of each failed test, by test name: its headline and,
    each on a line of its own below, its details (indented by two spaces)."""
    out: dict[str, str] = {}
    current = None
    taking = False
    for line in result.stdout.lines:
        header = re.match(r"^_+ (\S+) _+$", line)
        if header:
            current = header.group(1)
            taking = False
        elif current and line.startswith("memwatch ") and current not in out:
            out[current] = line
            taking = True
        elif taking and current and line.startswith("  "):
            out[current] += "\n" + line
        else:
            taking = False
    return out


LEAKS = """
import asyncio, os, tempfile, threading, time
import pytest

EVENT = threading.Event()
KEEP = []

def test_leaves_a_thread():
    threading.Thread(target=EVENT.wait, name="poller", daemon=True).start()

def test_leaves_a_file():
    KEEP.append(open(os.devnull))

def test_leaves_a_temp_file():
    fd, path = tempfile.mkstemp(suffix=".memwatch-test")
    os.close(fd)
    KEEP.append(path)

async def forever():
    await asyncio.sleep(3600)

def test_leaves_a_task():
    loop = asyncio.new_event_loop()
    KEEP.append((loop, loop.create_task(forever(), name="spinner")))
    loop.run_until_complete(asyncio.sleep(0))

def test_thread_still_finishing_is_waited_for():
    threading.Thread(target=time.sleep, args=(0.05,)).start()

def test_joins_its_thread():
    t = threading.Thread(target=time.sleep, args=(0.001,))
    t.start()
    t.join()

def test_closes_its_file(tmp_path):
    with open(tmp_path / "x", "w") as f:
        f.write("x")

def teardown_module():
    for item in KEEP:
        if isinstance(item, str):
            os.unlink(item)
"""


def test_every_kind_is_named_and_clean_tests_pass(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_leaks=LEAKS)
    result = runner.sub("--memwatch-resources", "--memwatch-trace=0", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=4)
    lines = failure_lines(result)
    prefix = "memwatch resources: {} left behind after the test and its fixtures were torn down, "
    wait = r"after waiting 1\.00 s\n  "
    assert re.fullmatch(
        re.escape(prefix.format(1))
        + wait
        + r"thread 'poller' \(daemon, started at test_leaks\.py:8 in test_leaves_a_thread\)",
        lines["test_leaves_a_thread"],
    ), lines
    assert re.fullmatch(
        re.escape(prefix.format(1)) + wait + r"fd \d+ \(/dev/null\)", lines["test_leaves_a_file"]
    ), lines
    assert re.fullmatch(
        re.escape(prefix.format(1)) + wait + r"temp file /\S+\.memwatch-test",
        lines["test_leaves_a_temp_file"],
    ), lines
    # The event loop's own descriptors are left too: named before the task.
    assert re.fullmatch(
        re.escape(prefix.format(4))
        + wait
        + r"fd \d+ \(anon_inode:\[eventpoll\]\)\n  socket fd \d+ \(unix .*\)\n  "
        r"socket fd \d+ \(unix .*\)\n  asyncio task 'spinner' \(coroutine forever, "
        r"defined at test_leaks\.py:18, waiting at test_leaks\.py:19\)",
        lines["test_leaves_a_task"],
    ), lines
    assert "FAILED (memwatch) test_leaks.py::test_leaves_a_thread" in result.stdout.str()


REPEATED = """
import os, subprocess, sys, threading
import pytest

KEEP = []
HELD = {}

def replace_process(key):
    # Each run stops the previous run's child and starts its own: memory stays
    # flat, and the last run's child is left behind.
    old = HELD.pop(key, None)
    if old is not None:
        old.kill()
        old.wait()
    HELD[key] = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

def replace_thread(name):
    old = HELD.pop(name, None)
    if old is not None:
        old[0].set()
        old[1].join()
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name=name, daemon=True)
    thread.start()
    HELD[name] = (stop, thread)

@pytest.mark.no_leaks(warmup=1, runs=3)
def test_leaks_a_descriptor_per_run():
    KEEP.append(open(os.devnull))

@pytest.mark.no_leaks(warmup=1, runs=3)
def test_leaves_a_process():
    replace_process("checked")

@pytest.mark.no_leaks(warmup=1, runs=3, resources=False)
def test_not_checked():
    replace_process("unchecked")

@pytest.mark.no_leaks(warmup=1, runs=3, ignore="thread:excused-by-marker")
def test_excused_by_its_marker():
    replace_thread("excused-by-marker")

@pytest.mark.no_leaks(warmup=1, runs=3)
def test_excused_by_ini():
    replace_thread("excused-by-ini-1")

_pool = []

@pytest.mark.no_leaks(warmup=1, runs=3)
def test_lazy_pool_started_in_warmup():
    if not _pool:
        _pool.append(threading.Thread(target=threading.Event().wait, daemon=True))
        _pool[0].start()

def teardown_module():
    for held in HELD.values():
        if isinstance(held, subprocess.Popen):
            held.kill()
            held.wait()
        else:
            held[0].set()
"""


def test_no_leaks_checks_resources_with_rules(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makepyfile(test_rep=REPEATED)
    pytester.makeini(
        """
        [pytest]
        memwatch_resources_ignore =
            thread:excused-by-ini-*
        memwatch_resources_grace = 0
        """
    )
    result = runner.sub("--memwatch-trace=0", "-p", "no:cacheprovider", "--memwatch-json=r.json")
    result.assert_outcomes(passed=4, failed=2)
    lines = failure_lines(result)
    assert set(lines) == {"test_leaks_a_descriptor_per_run", "test_leaves_a_process"}
    # One verdict: the trend already counts descriptors, so it names them itself.
    assert re.fullmatch(
        r"memwatch leak: .*; fds grows \+1\.0 fds/run over \d+ runs after 1 warmup\n"
        r".*\n  left behind by the measured runs:\n    fd \d+ \(/dev/null\)\n.*",
        lines["test_leaks_a_descriptor_per_run"],
        re.S,
    ), lines
    # No trend counts processes: a resources verdict of its own, no waiting (grace 0).
    assert re.fullmatch(
        r"memwatch resources: 1 left behind after the test and its fixtures were torn "
        r"down\n  process \d+ \(\S+ -c import time; time\.sleep\(60\)\)",
        lines["test_leaves_a_process"],
    ), lines
    doc = json.loads((pytester.path / "r.json").read_text())
    verdicts = {t["nodeid"].split("::")[1]: t["verdicts"] for t in doc["tests"]}
    marker = next(v for v in verdicts["test_excused_by_its_marker"] if v["kind"] == "resources")
    assert marker["passed"] and marker["source"] == "marker"
    assert [i["rule"] for i in marker["details"]["ignored"]] == ["thread:excused-by-marker"]
    ini = next(v for v in verdicts["test_excused_by_ini"] if v["kind"] == "resources")
    assert {i["rule"] for i in ini["details"]["ignored"]} == {"thread:excused-by-ini-*"}
    assert all(v["kind"] != "resources" for v in verdicts["test_not_checked"])
    lazy = next(v for v in verdicts["test_lazy_pool_started_in_warmup"] if v["kind"] == "resources")
    assert lazy["passed"] and lazy["message"] == "nothing left behind"


EXISTING = """
import threading
import pytest

EVENT = threading.Event()
threading.Thread(target=EVENT.wait, name="Pool-1", daemon=True).start()

def test_grows_the_pool():
    threading.Thread(target=EVENT.wait, name="Pool-2", daemon=True).start()
"""


@pytest.mark.parametrize(
    ("flag", "outcome"),
    [([], "failed"), (["--memwatch-resources-ignore-existing"], "passed")],
    ids=["counted", "ignored"],
)
def test_ignore_what_existed_at_session_start(
    pytester: pytest.Pytester, runner: Runner, flag: list[str], outcome: str
) -> None:
    pytester.makepyfile(test_existing=EXISTING)
    result = runner.sub(
        "--memwatch-resources",
        "--memwatch-resources-grace=0",
        "--memwatch-trace=0",
        "-p",
        "no:cacheprovider",
        *flag,
    )
    result.assert_outcomes(**{outcome: 1})


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        (
            "memwatch_resources_ignore =\n    thred:worker-*",
            "ERROR: memwatch: bad value 'thred:worker-*' for --memwatch-resources-ignore (from "
            "ini key memwatch_resources_ignore): unknown kind 'thred' (known: thread, origin, fd, "
            f"socket, process, tempfile, task); {EXPECTED_RULE}.",
        ),
        (
            "memwatch_resources_ignore = worker-*",
            "ERROR: memwatch: bad value 'worker-*' for --memwatch-resources-ignore (from ini key "
            f"memwatch_resources_ignore): no KIND: prefix; {EXPECTED_RULE}.",
        ),
        (
            "memwatch_resources_grace = soon",
            "ERROR: memwatch: bad value 'soon' for --memwatch-resources-grace (from ini key "
            'memwatch_resources_grace): expected "1s", "250ms" or 0 for no wait.',
        ),
    ],
    ids=["unknown-kind", "no-kind", "grace"],
)
def test_bad_ini_values_are_usage_errors(
    pytester: pytest.Pytester, runner: Runner, ini: str, message: str
) -> None:
    pytester.makepyfile(test_x="def test_x(): pass")
    pytester.makeini(f"[pytest]\n{ini}\n")
    result = runner.inproc("--memwatch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.lines, result.stderr.lines


def test_bad_marker_rules_error_that_test_at_setup(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.no_leaks(ignore=["thread:ok-*", "task"])
        def test_bad_rule():
            pass

        @pytest.mark.no_leaks(ignore=3)
        def test_not_a_rule():
            pass

        def test_fine():
            pass
        """
    )
    result = runner.inproc("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=2)
    signature = (
        "Expected no_leaks(*, warmup=2, runs=5, resources=True, ignore=(), compare_fail=()), "
        "e.g. @pytest.mark.no_leaks(warmup=2, runs=8). " + OPT_OUT
    )
    assert (
        "memwatch: test_bad.py::test_bad_rule: bad marker "
        "@pytest.mark.no_leaks(ignore=['thread:ok-*', 'task']): ignore='task': no KIND: prefix; "
        f"{EXPECTED_RULE}. {signature}"
    ) in result.stdout.lines
    assert (
        "memwatch: test_bad.py::test_not_a_rule: bad marker @pytest.mark.no_leaks(ignore=3): "
        "ignore=3: expected 'KIND:GLOB' or a list of them, e.g. ignore=['thread:worker-*']. "
        f"{signature}"
    ) in result.stdout.lines


def test_a_module_scoped_loop_in_a_thread_is_not_charged_to_each_test(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    # The loop and its tasks exist before the tests that use them, while the
    # long-lived heap is frozen: the collector does not list them then, and
    # every test read them as left behind. A task a test does leave is named.
    pytester.makepyfile(
        test_service="""
        import asyncio, threading
        import pytest

        @pytest.fixture(scope="module")
        def loop():
            loop = asyncio.new_event_loop()
            async def serve():
                await asyncio.sleep(3600)
            ready = threading.Event()
            def main():
                asyncio.set_event_loop(loop)
                loop.create_task(serve(), name="server")
                loop.call_soon(ready.set)
                loop.run_forever()
            thread = threading.Thread(target=main, name="service-loop")
            thread.start()
            ready.wait(10)
            yield loop
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

        def call(loop, fn):
            async def run():
                return fn()
            return asyncio.run_coroutine_threadsafe(run(), loop).result(10)

        @pytest.mark.no_leaks(warmup=1, runs=3)
        @pytest.mark.parametrize("n", [1, 2, 3])
        def test_clean_request(loop, n):
            assert call(loop, lambda: n) == n

        @pytest.mark.no_leaks(warmup=1, runs=3)
        def test_leaves_a_task(loop):
            async def forever():
                await asyncio.sleep(3600)
            call(loop, lambda: loop.create_task(forever(), name="left-behind"))
        """
    )
    result = runner.sub("--memwatch-trace=0", "-p", "no:randomly")
    result.assert_outcomes(passed=3, failed=1)
    failures = failure_lines(result)
    assert list(failures) == ["test_leaves_a_task"], failures
    # The same line stands in the failure's section and in the short summary.
    lefts = {ln for ln in result.stdout.lines if ln.startswith("memwatch resources: ")}
    assert len(lefts) == 1, lefts
    blocks = [block for block in runner.verdicts(result) if block[0] in lefts]
    # Once in the failure's section, and again under it in the short summary.
    assert blocks and all(block == blocks[0] for block in blocks), blocks
    left = blocks[0]
    # Alike tasks are named once, with their count.
    assert len(left) == len(set(left)), left
    left = "\n".join(left)
    assert "asyncio task 'left-behind'" in left
    assert "'server'" not in left
