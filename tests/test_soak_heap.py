"""End to end: a soak judged on the allocators' counts beside RSS.

The process frees a heap first, so a leak of ``bytearray`` buffers climbs in
malloc bytes inside pages it already holds while RSS stays flat; judged on
RSS alone such a run passed. A sawtooth in the same heap must still pass.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import Runner

SUITE = """
    import time
    import pytest

    HELD = []

    def _slack():
        # 64 MiB of 10 KiB buffers freed under a pinned one: glibc keeps the pages.
        freed = [bytearray(10 * 1024) for _ in range(6400)]
        pin = bytearray(10 * 1024)
        del freed
        return pin

    @pytest.mark.soak("3s", interval="0.05s", max_growth_rate="4 MiB/h")
    def test_heap_leak(soak):
        pin = _slack()
        # A 10 KiB buffer kept every 20 ms: 1.7 GiB/h of heap, no new pages.
        for tick in soak:
            HELD.append(bytearray(10 * 1024))
            soak.sleep(0.02)
        del pin

    @pytest.mark.soak("3s", interval="0.05s", max_growth_rate="4 MiB/h")
    def test_heap_sawtooth(soak):
        pin = _slack()
        buf = []
        for tick in soak:
            buf.append(bytearray(10 * 1024))
            if len(buf) >= 25:
                buf.clear()
            soak.sleep(0.02)
        del pin
"""


def test_heap_leak_with_rss_slack_fails_and_sawtooth_passes(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_heap=SUITE)
    result = runner.sub("--memwatch-soak", "--memwatch-soak-duration=3s", "--memwatch-json=r.json")
    result.assert_outcomes(passed=1, failed=1)
    tests = {t["nodeid"].split("::")[-1]: t for t in json.loads(
        (pytester.path / "r.json").read_text())["tests"]}

    leak = next(v for v in tests["test_heap_leak"]["verdicts"] if v["kind"] == "soak")
    assert not leak["passed"]
    # malloc bytes decide, and the message says RSS did not show it.
    assert leak["metric"] == "malloc" and leak["details"]["decided_by"] == "malloc"
    assert leak["message"].startswith("soak: malloc grows +")
    assert " while rss " in leak["message"]
    assert leak["message"].endswith(", over the limit of +4.0 MiB/h")
    assert leak["measured"] > 100 * 1024 * 1024 / 3600
    rates = leak["details"]["rates"]
    assert set(rates) >= {"rss", "malloc", "blocks"}
    assert rates["malloc"]["low"] > rates["rss"]["high"]

    saw = next(v for v in tests["test_heap_sawtooth"]["verdicts"] if v["kind"] == "soak")
    assert saw["passed"], saw["message"]
    assert saw["details"]["decided_by"] is None
    assert saw["message"].endswith(", within the limit of +4.0 MiB/h")
    assert "(heap: malloc " in saw["message"]
