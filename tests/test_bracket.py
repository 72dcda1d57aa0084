"""Where the readings of a measured test sit, and what the cheap path costs.

The before-reading is taken when the test's first function-scoped fixture is
about to be set up (or at the end of setup without one) and the after-reading
by a finalizer registered on the test at that moment: the window holds the test
and its function-scoped fixtures, never a module's or class's fixtures, on the
first test that sets them up or the last that tears them down. Everything that
measures runs in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from pytest_memwatch.base.probes import Prober

if TYPE_CHECKING:
    from conftest import Runner

MIB = 1024 * 1024

SCOPES = """
    import pytest

    HELD = []


    def _touched(size):
        block = bytearray(size)
        block[::4096] = b"x" * len(block[::4096])
        return block


    @pytest.fixture(scope="module")
    def module_buffer():
        block = _touched(8 * 1024 * 1024)
        yield block
        del block[:]


    @pytest.fixture(scope="class")
    def class_buffer():
        block = _touched(8 * 1024 * 1024)
        yield block
        del block[:]


    @pytest.fixture
    def leaky_function_fixture():
        yield
        HELD.append(_touched(4 * 1024 * 1024))  # kept after its teardown


    @pytest.fixture
    def tidy_function_fixture():
        block = _touched(4 * 1024 * 1024)
        yield block
        del block[:]


    def test_first_uses_module(module_buffer):
        assert len(module_buffer)


    def test_leaks_in_fixture_teardown(module_buffer, leaky_function_fixture):
        pass


    def test_tidy_fixture(module_buffer, tidy_function_fixture):
        assert len(tidy_function_fixture)


    class TestGroup:
        def test_class_first(self, class_buffer):
            assert len(class_buffer)

        def test_class_last(self, class_buffer):
            assert len(class_buffer)


    def test_last_uses_module(module_buffer):
        assert len(module_buffer)
"""


def growth(doc: dict, name: str) -> int:
    test = next(t for t in doc["tests"] if t["nodeid"].endswith(name))
    return max(test["growth"]["rss"], test["growth"]["malloc"])


def test_higher_scoped_fixtures_stay_outside_the_window(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_scopes=textwrap.dedent(SCOPES))
    result = runner.sub("--memwatch", "--memwatch-json=out.json", "-q")
    result.assert_outcomes(passed=6)
    doc = json.loads((pytester.path / "out.json").read_text())
    # 8 MiB module and class buffers: set up by the first test of their scope,
    # torn down after the last; charged to neither.
    for name in ("test_first_uses_module", "test_class_first", "test_class_last"):
        assert abs(growth(doc, name)) < MIB, (name, growth(doc, name))
    last = next(t for t in doc["tests"] if t["nodeid"].endswith("test_last_uses_module"))
    assert last["growth"]["malloc"] > -MIB
    # A function fixture's teardown is inside the window: what it keeps is charged.
    assert growth(doc, "test_leaks_in_fixture_teardown") > 3 * MIB
    # What a function fixture frees in its teardown is not (malloc: RSS may keep
    # the freed pages, glibc raises its mmap threshold after the first big free).
    tidy = next(t for t in doc["tests"] if t["nodeid"].endswith("test_tidy_fixture"))
    assert abs(tidy["growth"]["malloc"]) < MIB
    # Its allocation counts toward the peak of the test that asked for it.
    assert tidy["peak_growth"] > 3 * MIB


CUSTOM_ITEMS = """
    import pytest

    HELD = []


    class SpecItem(pytest.Item):
        def __init__(self, *, size, **kwargs):
            super().__init__(**kwargs)
            self.size = size

        def runtest(self):
            block = bytearray(self.size)
            block[::4096] = b"x" * len(block[::4096])
            HELD.append(block)

        def reportinfo(self):
            return self.path, 0, self.name


    class SpecFile(pytest.File):
        def collect(self):
            for line in self.path.read_text().split():
                name, size = line.split("=")
                yield SpecItem.from_parent(self, name=name, size=int(size))


    def pytest_collect_file(parent, file_path):
        if file_path.suffix == ".spec":
            return SpecFile.from_parent(parent, path=file_path)
"""


def test_items_without_fixtures_are_measured(pytester: pytest.Pytester, runner: Runner) -> None:
    # Items that are not Python functions (no fixture closure) are bracketed by
    # the setup hook and a finalizer like any other.
    pytester.makeconftest(textwrap.dedent(CUSTOM_ITEMS))
    (pytester.path / "cases.spec").write_text(f"small=1024 big={6 * MIB}\n")
    result = runner.sub("--memwatch", "--memwatch-json=out.json", "-q")
    result.assert_outcomes(passed=2)
    doc = json.loads((pytester.path / "out.json").read_text())
    assert {t["nodeid"] for t in doc["tests"]} == {"cases.spec::small", "cases.spec::big"}
    assert growth(doc, "::big") > 5 * MIB
    assert growth(doc, "::small") < MIB


def test_a_custom_item_with_a_budget_fails_it(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makeconftest(textwrap.dedent(CUSTOM_ITEMS))
    (pytester.path / "cases.spec").write_text(f"big={6 * MIB}\n")
    result = runner.sub("--memwatch-max-growth=2MiB", "-q")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cases.spec::big*"])


def run_python(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_MEMWATCH")}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    return out.stdout.strip()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="Linux /proc needed")
def test_probes_do_not_import_psutil_where_proc_serves() -> None:
    out = run_python(
        """
        import sys
        from pytest_memwatch.base.probes import Prober
        sample = Prober().sample()
        assert sample.rss and sample.threads and sample.fds, sample
        print("psutil" in sys.modules)
        """
    )
    assert out == "False"


def test_an_inactive_plugin_builds_no_prober_and_imports_no_psutil(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "With neither the flag nor a marker the plugin costs nothing but its
    # import." Autoload off, so no other plugin imports psutil behind its back.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(
        test_quiet="""
            import sys

            def test_nothing_measured():
                from pytest_memwatch.base import probes
                assert probes._PROBER is None
                # Loaded on first use: the soak engine, the library API, psutil.
                loaded = {"psutil", "pytest_memwatch.soak", "pytest_memwatch.api"}
                assert not loaded & set(sys.modules)
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "pytest_memwatch.plugin", "-p", "no:cacheprovider", timeout=120
    )
    result.assert_outcomes(passed=1)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="Linux /proc needed")
def test_fd_count_matches_a_fresh_listing() -> None:
    prober = Prober()
    try:
        before = prober.fds()
        assert before == len(os.listdir("/proc/self/fd")) - 1
        r, w = os.pipe()
        try:
            assert prober.fds() == (before or 0) + 2
        finally:
            os.close(r)
            os.close(w)
        assert prober.fds() == before
    finally:
        prober.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="Linux /proc needed")
def test_readings_after_fork_count_the_childs_own_table() -> None:
    out = run_python(
        """
        import os
        from pytest_memwatch.base.probes import get_prober
        prober = get_prober()
        prober.fds()
        pid = os.fork()
        if pid == 0:
            r, w = os.pipe()
            first = prober.sample(collect=False)
            ok = first.fds == len(os.listdir("/proc/self/fd")) - 1
            # Every kept descriptor was reopened at the first reading: the
            # next one counts the same, and threads are the child's (one).
            again = prober.sample(collect=False)
            ok = ok and again.fds == first.fds and again.threads == first.threads == 1
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """
    )
    assert out == "0"


def test_peak_skips_the_status_read_when_the_readings_bound_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prober = Prober()
    try:
        if prober._peak_mode != "hwm":
            pytest.skip("no resettable high-water mark here")
        reads: list[int] = []
        real = prober._read_hwm

        def counted() -> int | None:
            reads.append(1)
            return real()

        monkeypatch.setattr(prober, "_read_hwm", counted)
        watch = prober.start_peak()
        # A floor far above anything this process reached: ru_maxrss proves it.
        assert watch.stop(floor=1 << 50) == 1 << 50
        assert reads == []
        # A floor below the peak: the exact figure comes from VmHWM.
        watch = prober.start_peak()
        block = bytearray(32 * MIB)
        block[::4096] = b"x" * len(block[::4096])
        del block
        peak = watch.stop(floor=1)
        assert reads == [1]
        assert peak is not None and peak > 32 * MIB
    finally:
        prober.close()
