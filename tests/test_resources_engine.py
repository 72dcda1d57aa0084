"""The resource check engine (pytest_memwatch.resources), without pytest in the loop.

Each kind of survivor is made for real in this process (a thread, a file, a
socket pair, a child process, a temp file, an asyncio task) and released in a
``finally``, so a failing assertion leaves nothing behind for the next test.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_memwatch import resources
from pytest_memwatch.base.verdict import Verdict
from pytest_memwatch.config.rules import IgnoreRule, parse_rule
from pytest_memwatch.resources import (
    Liveness,
    Resource,
    ResourceChecker,
    ResourceReport,
    describe_list,
    name_in_leak_verdict,
    resources_verdict,
    survivor,
    threads,
)

HERE = survivor.short_path(__file__)  # relative to the working directory when inside it
EXPECTED = "expected KIND:GLOB, e.g. thread:ThreadPoolExecutor-* or origin:grpc.*"


class NoSleep:
    """Stands in for time.sleep: records the pauses of the grace period."""

    def __init__(self, on_sleep: object = None) -> None:
        self.pauses: list[float] = []
        self.on_sleep = on_sleep

    def __call__(self, seconds: float) -> None:
        self.pauses.append(round(seconds, 4))
        if callable(self.on_sleep):
            self.on_sleep()


def check(grace: float = 0.0, **kwargs: object) -> ResourceChecker:
    return ResourceChecker(grace=grace, sleep=NoSleep(), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def stop_event() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


# -- rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("thread", f"no KIND: prefix; {EXPECTED}"),
        (
            "thred:worker-*",
            "unknown kind 'thred' (known: thread, origin, fd, socket, process, tempfile, "
            f"task); {EXPECTED}",
        ),
        ("thread:  ", f"empty pattern after 'thread:'; {EXPECTED}"),
    ],
)
def test_bad_rules_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rule(text)
    assert str(info.value) == message


def test_rules_parse_and_print_back() -> None:
    rule = parse_rule(" fd : pipe:* ")
    assert rule == IgnoreRule("fd", "pipe:*")
    assert str(rule) == "fd:pipe:*"


def _res(kind: str, *names: str, module: str = "", filename: str = "") -> Resource:
    origin = (resources.Frame(filename or "x.py", 1, "f", module),) if module or filename else ()
    return Resource(kind, (kind, names), "d", names=names, origin=origin)


@pytest.mark.parametrize(
    ("rule", "res", "matches"),
    [
        ("thread:Pool-*", _res("thread", "Pool-3"), True),
        ("thread:Pool-*", _res("thread", "pool-3"), False),  # case-sensitive
        ("thread:Pool-*", _res("fd", "Pool-3"), False),  # another kind
        ("origin:grpc.*", _res("thread", "t", module="grpc._server"), True),
        ("origin:*/vendor/*", _res("task", "c", filename="/app/vendor/x.py"), True),
        ("origin:grpc.*", _res("thread", "t"), False),  # nothing recorded
        ("fd:pipe:*", _res("fd", "pipe:[123]"), True),
        ("socket:*:6379", _res("socket", "127.0.0.1:6379"), True),
        ("tempfile:*.wav", _res("tempfile", "a.wav", "/tmp/a.wav"), True),
        ("task:*spin", _res("task", "Worker.spin", "Task-3"), True),
        ("task:Task-3", _res("task", "Worker.spin", "Task-3"), True),
    ],
)
def test_rule_matching(rule: str, res: Resource, matches: bool) -> None:
    assert parse_rule(rule).matches(res) is matches


# -- each kind, found and named ------------------------------------------------------------


def test_a_thread_is_named_with_where_it_was_started(stop_event: threading.Event) -> None:
    checker = check()
    watch = checker.begin()
    worker = threading.Thread(target=stop_event.wait, name="poller", daemon=True)
    worker.start()  # this line is the origin
    line = sys._getframe().f_lineno - 1
    report = checker.finish(watch)
    [leak] = report.leaked
    assert leak.kind == "thread"
    assert leak.description == (
        f"thread 'poller' (daemon, started at {HERE}:{line} in "
        "test_a_thread_is_named_with_where_it_was_started)"
    )
    assert leak.origin[0].module == __name__
    # The recorder is gone once the watch is closed.
    assert threading.Thread.start is not threads._recording_start


def test_a_thread_started_before_the_watch_shows_what_it_runs(
    stop_event: threading.Event,
) -> None:
    def serve_forever() -> None:
        stop_event.wait()

    worker = threading.Thread(target=serve_forever, name="early", daemon=True)
    res = threads.describe_thread(worker)
    line = serve_forever.__code__.co_firstlineno
    assert res.description == (
        f"thread 'early' (daemon, runs {__name__}.test_a_thread_started_before_the_watch_"
        f"shows_what_it_runs.<locals>.serve_forever, defined at {HERE}:{line})"
    )


def test_a_joined_thread_is_not_a_leak() -> None:
    checker = check(grace=1.0)
    watch = checker.begin()
    worker = threading.Thread(target=lambda: None)
    worker.start()
    worker.join()
    assert checker.finish(watch).leaked == []


def test_files_and_sockets_are_named_by_path_and_peer() -> None:
    checker = check()
    watch = checker.begin()
    f = open(os.devnull)  # noqa: SIM115
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    try:
        report = checker.finish(watch)
        host, port = server.getsockname()
        local = "{}:{}".format(*client.getsockname())
        assert sorted(r.description for r in report.leaked) == sorted(
            [
                f"fd {f.fileno()} (/dev/null)",
                f"socket fd {server.fileno()} (tcp listening on {host}:{port})",
                f"socket fd {client.fileno()} (tcp {local} -> {host}:{port})",
            ]
        )
        sock = next(r for r in report.leaked if "->" in r.description)
        assert sock.kind == "socket" and sock.names[0] == f"{host}:{port}"
    finally:
        f.close()
        client.close()
        server.close()


def test_a_child_process_is_named_with_its_command_line() -> None:
    checker = check()
    watch = checker.begin()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        [leak] = checker.finish(watch).leaked
        assert leak.description == (
            f"process {child.pid} ({sys.executable} -c import time; time.sleep(30))"
        )
    finally:
        child.kill()
        child.wait()


def test_a_child_nobody_waited_for_is_a_zombie_leak() -> None:
    checker = check(grace=2.0)
    watch = checker.begin()
    child = subprocess.Popen(["true"])
    try:
        # The grace period waits while it is running, then sees the zombie.
        checker._sleep = time.sleep
        [leak] = checker.finish(watch).leaked
        assert leak.description.endswith(", exited but never waited for)")
    finally:
        child.wait()


def test_temp_entries_this_process_created() -> None:
    checker = check()
    before = tempfile.NamedTemporaryFile(suffix=".old", delete=False)  # noqa: SIM115
    before.close()
    watch = checker.begin()
    fd, path = tempfile.mkstemp(suffix=".wav")
    os.close(fd)
    folder = tempfile.mkdtemp()
    gone = tempfile.NamedTemporaryFile()  # noqa: SIM115
    gone.close()  # deleted: not a leak
    with open(before.name, "w") as again:  # existed before the watch: not new
        again.write("x")
    try:
        report = checker.finish(watch)
        assert sorted(r.description for r in report.leaked) == sorted(
            [f"temp file {path}", f"temp directory {folder}"]
        )
    finally:
        os.unlink(path)
        os.rmdir(folder)
        os.unlink(before.name)


def test_temp_files_made_and_removed_leave_no_notes() -> None:
    # A test that makes and removes a temp file every run must not make the
    # watch's own notes grow run after run: that would read as a leak.
    checker = check()
    watch = checker.begin()
    for _ in range(5):
        fd, path = tempfile.mkstemp()
        os.close(fd)
        os.unlink(path)
        folder = tempfile.mkdtemp()
        os.rmdir(folder)
        fd, path = tempfile.mkstemp()
        os.close(fd)
        os.replace(path, path + ".moved")
        os.remove(path + ".moved")
    assert watch._temp.seen == {}
    assert checker.finish(watch).leaked == []


def test_pending_asyncio_tasks_are_named_with_their_coroutine() -> None:
    async def forever() -> None:
        await asyncio.sleep(3600)

    checker = check()
    watch = checker.begin()
    loop = asyncio.new_event_loop()
    task = loop.create_task(forever(), name="spinner")
    loop.run_until_complete(asyncio.sleep(0))
    try:
        report = checker.finish(watch)
        [leak] = [r for r in report.leaked if r.kind == "task"]
        line = forever.__code__.co_firstlineno
        assert leak.description == (
            "asyncio task 'spinner' (coroutine test_pending_asyncio_tasks_are_named_with_"
            f"their_coroutine.<locals>.forever, defined at {HERE}:{line}, "
            f"waiting at {HERE}:{line + 1})"
        )
        # The loop's own descriptors (epoll, self-pipe) are left behind too.
        assert {r.kind for r in report.leaked} >= {"task", "fd", "socket"}
        assert Liveness()(leak)
    finally:
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        loop.close()
    assert not Liveness()(leak)


# -- grace period, rules, ignore-existing ---------------------------------------------------


def test_the_grace_period_backs_off_and_stops_when_nothing_is_left(
    stop_event: threading.Event,
) -> None:
    worker = threading.Thread(target=stop_event.wait, daemon=True)

    def release_on_third_pause() -> None:
        if len(sleep.pauses) == 3:
            stop_event.set()
            worker.join()

    sleep = NoSleep(release_on_third_pause)
    checker = ResourceChecker(grace=1.0, sleep=sleep)
    watch = checker.begin()
    worker.start()
    report = checker.finish(watch)
    assert report.leaked == []
    assert sleep.pauses == [0.01, 0.02, 0.04]
    assert report.waited_s == pytest.approx(0.07)


def test_the_grace_period_is_capped(stop_event: threading.Event) -> None:
    sleep = NoSleep()
    checker = ResourceChecker(grace=0.1, sleep=sleep)
    watch = checker.begin()
    threading.Thread(target=stop_event.wait, daemon=True).start()
    report = checker.finish(watch)
    assert len(report.leaked) == 1
    assert sleep.pauses == [0.01, 0.02, 0.04, 0.03]


def test_rules_from_settings_and_marker_excuse_survivors(stop_event: threading.Event) -> None:
    checker = check(rules=["thread:excused-*"])
    watch = checker.begin()
    for name in ("excused-1", "by-marker", "counted"):
        threading.Thread(target=stop_event.wait, name=name, daemon=True).start()
    report = checker.finish(watch, (parse_rule("thread:by-marker"),))
    assert [r.names[0] for r in report.leaked] == ["counted"]
    assert sorted((r.names[0], why) for r, why in report.ignored) == [
        ("by-marker", "thread:by-marker"),
        ("excused-1", "thread:excused-*"),
    ]


def test_ignore_existing_excuses_look_alikes_only(stop_event: threading.Event) -> None:
    threading.Thread(target=stop_event.wait, name="Pool-1", daemon=True).start()
    checker = check(ignore_existing=True)
    checker.remember_existing()
    watch = checker.begin()
    threading.Thread(target=stop_event.wait, name="Pool-27", daemon=True).start()
    threading.Thread(target=stop_event.wait, name="Other-2", daemon=True).start()
    read, write = os.pipe()
    try:
        report = checker.finish(watch)
        assert sorted(r.names[0] for r in report.leaked if r.kind == "thread") == ["Other-2"]
        assert [why for _, why in report.ignored] == ["existed at session start"]
        # A pipe has no name to compare: always counted.
        assert any(r.kind == "fd" and r.names[0].startswith("pipe:") for r in report.leaked)
    finally:
        os.close(read)
        os.close(write)


# -- verdicts ------------------------------------------------------------------------------


def _report(*leaked: Resource) -> ResourceReport:
    return ResourceReport(list(leaked), [], 0.0, 1.0)


def test_resources_verdict_message() -> None:
    many = [Resource("fd", ("fd", i), f"fd {i} (/dev/null)") for i in range(7)]
    verdict = resources_verdict(ResourceReport(many, [], 1.0, 1.0), "option")
    assert verdict.kind == "resources" and not verdict.passed
    assert verdict.message == (
        "resources: 7 left behind after the test and its fixtures were torn down, after "
        "waiting 1.00 s: fd 0 (/dev/null); fd 1 (/dev/null); fd 2 (/dev/null); "
        "fd 3 (/dev/null); fd 4 (/dev/null); and 2 more"
    )
    assert len(verdict.details["leaked"]) == 7
    assert resources_verdict(_report(), "marker").message == "nothing left behind"


def test_a_failed_fd_trend_names_its_descriptors_and_leaves_the_rest() -> None:
    leak = Verdict(
        "leak",
        "marker",
        False,
        "leak: fds grows +1.0 fds/run",
        details={"metrics": {"fds": {"state": "suspect"}, "blocks": {"state": "clean"}}},
    )
    fd = Resource("fd", ("fd", 9), "fd 9 (/dev/null)")
    proc = Resource("process", ("process", 1, "0"), "process 1 (x)")
    rest = name_in_leak_verdict(leak, _report(fd, proc))
    assert rest == [proc]
    assert leak.message == (
        "leak: fds grows +1.0 fds/run; left behind by the measured runs: fd 9 (/dev/null)"
    )
    assert leak.details["resources"]["leaked"][0]["description"] == "fd 9 (/dev/null)"


def test_the_module_has_no_pytest_import() -> None:
    assert "pytest" not in vars(resources)


def test_pending_tasks_skip_a_dead_weakref_proxy() -> None:
    """A dead ``weakref.proxy`` among the collector's objects raises ReferenceError
    from isinstance(); the task scan must step over it, not error the test."""
    import weakref

    from pytest_memwatch.resources.tasks import pending_tasks

    class Referent:
        pass

    referent = Referent()
    proxy = weakref.proxy(referent)
    del referent
    holder = [proxy]  # keeps the dead proxy alive and tracked
    assert pending_tasks() == []
    assert len(holder) == 1


@given(st.lists(st.sampled_from(["a", "bb", "c c", "thread 'x'", "fd 3 (/tmp/f)", "z"])))
def test_a_failure_message_names_alike_survivors_once_with_their_count(
    descriptions: list[str],
) -> None:
    items = [Resource("fd", ("fd", n, d), d) for n, d in enumerate(descriptions)]
    listed = describe_list(items)
    distinct = list(dict.fromkeys(descriptions))
    parts = listed.split("; ") if listed else []
    if len(distinct) > 5:
        assert parts[-1] == f"and {len(distinct) - 5} more"
        parts = parts[:-1]
    assert len(parts) == min(len(distinct), 5)
    for part, text in zip(parts, distinct, strict=False):
        count = descriptions.count(text)
        assert part == (text if count == 1 else f"{text} (x{count})")
