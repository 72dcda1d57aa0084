"""``python -m pytest_memwatch soak-report``: one soak run's samples file as an HTML page."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from pytest_memwatch.cli import main

MiB = 1024 * 1024

HEADER = {
    "format": "pytest-memwatch-soak", "version": 1, "nodeid": "tests/test_app.py::test_<b>soak",
    "duration_s": 600.0, "interval_s": 5.0, "warmup_s": 60.0, "limit_rate": MiB / 3600,
    "started_at": "2026-01-15T02:00:00+00:00", "started_unix": 1768442400.0,
    "plugin_version": "0.1.0", "pytest_version": "9.2.0", "python": "3.11.9",
    "hostname": "ci-runner-7", "system": "Linux", "arch": "x86_64",
}


def samples_file(path: Path, *, leak_per_s: float, end: dict[str, Any] | None) -> Path:
    lines = [json.dumps(HEADER)]
    for i in range(121):
        t = i * 5.0
        rss = int(300 * MiB + leak_per_s * t + (i * 7919 % 13 - 6) * 4096)
        lines.append(json.dumps({"t": t, "rss": rss, "traced": None, "gc_objects": 5000,
                                 "fds": 9, "threads": 4}))
    if end is not None:
        lines.append(json.dumps(end))
    path.write_text("\n".join(lines) + "\n")
    return path


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(args), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_soak_report_renders_one_run(tmp_path: Path) -> None:
    src = samples_file(tmp_path / "s.jsonl", leak_per_s=20 * MiB / 3600,
                       end={"event": "end", "t": 600.0, "complete": True, "reason": None,
                            "at": "2026-01-15T02:10:00+00:00"})
    status, out, err = run("soak-report", str(src), "-o", str(tmp_path / "out" / "soak.html"))
    assert (status, err) == (0, "")
    assert out == f"soak report written to {tmp_path / 'out' / 'soak.html'}\n"
    page = (tmp_path / "out" / "soak.html").read_text()
    assert "<title>soak: tests/test_app.py::test_&lt;b&gt;soak</title>" in page
    assert '<h4 class="mw-h">Soak</h4>' in page and "ci-runner-7" in page
    assert "over the limit of +1.0 MiB/h" in page
    assert "(interrupted)" not in page and 'class="mw-trend"' in page


def test_soak_report_of_an_interrupted_run(tmp_path: Path) -> None:
    src = samples_file(tmp_path / "s.jsonl", leak_per_s=0.0, end=None)
    status, _, err = run("soak-report", str(src), "-o", str(tmp_path / "soak.html"),
                         "--title", "Nightly soak")
    assert (status, err) == (0, "")
    page = (tmp_path / "soak.html").read_text()
    assert "<title>Nightly soak</title>" in page and "(interrupted)" in page
    assert (
        "soak (partial: the run has no end line, so it was killed or is still going after "
        "10m00s of 10m00s)"
    ) in page


def test_a_corrupt_samples_file_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    src = samples_file(tmp_path / "s.jsonl", leak_per_s=0.0, end=None)
    lines = src.read_text().splitlines()
    lines[40] = lines[40][:25]
    src.write_text("\n".join(lines) + "\n")
    target = tmp_path / "soak.html"
    status, out, err = run("soak-report", str(src), "-o", str(target))
    assert (status, out) == (2, "")
    assert err.startswith(f"memwatch: {src}:41: not valid JSON: ")
    assert not target.exists()


def test_a_truncated_samples_file_says_it_was_cut_short(tmp_path: Path) -> None:
    src = samples_file(tmp_path / "s.jsonl", leak_per_s=0.0, end=None)
    src.write_bytes(src.read_bytes()[:-30])
    status, _, err = run("soak-report", str(src), "-o", str(tmp_path / "soak.html"))
    assert status == 2
    assert err.startswith(f"memwatch: {src}:122: not valid JSON (the file was cut short): ")


def test_a_missing_or_foreign_file(tmp_path: Path) -> None:
    status, _, err = run("soak-report", str(tmp_path / "nope.jsonl"), "-o", "x.html")
    assert status == 2
    assert err == f"memwatch: {tmp_path / 'nope.jsonl'}: cannot read: No such file or directory\n"
    results = tmp_path / "results.json"
    results.write_text('{"schema_version": 1, "tool": "pytest-memwatch"}\n')
    status, _, err = run("soak-report", str(results), "-o", str(tmp_path / "x.html"))
    assert status == 2
    assert err == (
        f"memwatch: {results}:1: not a soak samples file (the first line must be a header "
        'with "format": "pytest-memwatch-soak")\n'
    )
