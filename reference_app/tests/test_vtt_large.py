"""The VTT reader's memory stays flat on a ~200 MB file.

Runs in a child process so the measurement sees only the reader: the child
generates the file, records its RSS, reads every cue while sampling RSS, and
reports the peak growth. A second run with the ``vtt_reader_keeps_cues``
fault on a smaller file shows the same measurement does catch a reader that
holds on to what it read.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from _part2_helpers import run_python

RSS_BOUND_MB = 30.0

CHILD = r"""
import json, sys, time
import psutil
from reference_app.vtt import VTTReader, format_timestamp

path, target_mb = sys.argv[1], float(sys.argv[2])
started = time.perf_counter()
# Generate by repeating one block of 1000 cues (times restart in each block;
# the reader does not require global order). Writing blocks keeps generation
# at disk speed, so the test's time goes to reading.
lines = []
for i in range(1000):
    t = i * 2.0
    lines.append(f"{i}\n{format_timestamp(t)} --> {format_timestamp(t + 1.5)} align:start\n"
                 f"Speaker {i % 7}: this is cue number {i} of the generated file &amp; more\n"
                 f"with a second line of text to make it realistic\n\n")
block = "".join(lines)
blocks = int(target_mb * 1024 * 1024 / len(block)) + 1
with open(path, "w", encoding="utf-8") as fh:
    fh.write("WEBVTT\n\n")
    for _ in range(blocks):
        fh.write(block)
del lines, block
generated = time.perf_counter() - started

proc = psutil.Process()
reader = VTTReader(path)
rss_before = proc.memory_info().rss
peak = rss_before
count = 0
started = time.perf_counter()
for cue in reader:
    count += 1
    if count % 20_000 == 0:
        peak = max(peak, proc.memory_info().rss)
peak = max(peak, proc.memory_info().rss)
print(json.dumps({
    "bytes": __import__("os").path.getsize(path),
    "cues": count,
    "expected_cues": blocks * 1000,
    "errors": reader.error_count,
    "rss_before_mb": rss_before / 2**20,
    "growth_mb": (peak - rss_before) / 2**20,
    "generate_seconds": generated,
    "read_seconds": time.perf_counter() - started,
}))
"""


def measure(tmp_path: Path, megabytes: float, faults: str = "") -> dict[str, float]:
    path = tmp_path / "big.vtt"
    env = {"REFERENCE_APP_FAULTS": faults} if faults else {}
    try:
        result = run_python(CHILD, str(path), str(megabytes), cwd=tmp_path, env=env, timeout=300)
    finally:
        path.unlink(missing_ok=True)
    assert result.returncode == 0, result.stderr
    data: dict[str, float] = json.loads(result.stdout)
    print(f"\nVTT {megabytes:.0f} MB, faults={faults or 'none'}: {data}", file=sys.stderr)
    return data


def test_reading_200_mb_grows_rss_by_less_than_30_mb(tmp_path: Path) -> None:
    started = time.perf_counter()
    data = measure(tmp_path, 200)
    assert data["bytes"] >= 200 * 1024 * 1024
    assert data["cues"] == data["expected_cues"] and data["errors"] == 0
    assert data["growth_mb"] < RSS_BOUND_MB, f"RSS grew by {data['growth_mb']:.1f} MiB"
    assert time.perf_counter() - started < 120  # generous: about 25 s on a 2-core VM


def test_the_measurement_catches_a_reader_that_keeps_its_cues(tmp_path: Path) -> None:
    # 25 MB is ~110 000 cues: kept, they cost well over the bound.
    data = measure(tmp_path, 25, faults="vtt_reader_keeps_cues")
    assert data["cues"] == data["expected_cues"]
    assert data["growth_mb"] > RSS_BOUND_MB


def test_the_child_does_not_see_this_checkout_as_the_package(tmp_path: Path) -> None:
    """Guard for the helper: cwd must not shadow ``reference_app`` with the project dir."""
    result = run_python(
        "import reference_app, sys; print(reference_app.__file__)", cwd=tmp_path, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(os.path.join("reference_app", "__init__.py"))
