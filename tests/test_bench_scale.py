"""bench/scale.py end to end on a small suite: its table, and the malloc probe's cost table.

The script is run as a user runs it (a subprocess), on 100 tests, without the
browser part.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "scale.py"


def test_scale_prints_its_table_and_the_malloc_probe_cost() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--sizes", "100", "--no-browser", "--probe-cost"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(re.match(r"\s+100\s+[\d.]+ s\s+\d+ MiB", line) for line in lines), done.stdout
    head = next(i for i, line in enumerate(lines) if line.startswith("The malloc probe"))
    row = lines[head + 3].split()
    assert row[0] == "100"
    # Two readings per test, the engine's calibration (five empty cycles of two)
    # and the session's readings at its start and end.
    assert int(row[1]) == 2 * 100 + 10 + 2
    first_median, rest_median, total, per_test = map(float, row[2:6])
    assert 0 < first_median < 10_000 and 0 < rest_median < 10_000
    assert 0 <= total < 1.0 and per_test >= 0
    # Free chunks at the first reading, the most seen, and at the last one.
    chunks = [int(x.strip(",")) for x in row[6:9]]
    assert min(chunks) >= 1 and chunks[1] == max(chunks)
    assert int(row[9]) > 0 and row[10].endswith("%")


@pytest.mark.parametrize("args", [["--sizes", "ten"], ["--sizes", "0"], ["--rounds", "0"]])
def test_scale_rejects_bad_sizes_and_rounds(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--no-browser"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--sizes" in done.stderr
