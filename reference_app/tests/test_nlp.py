"""Chunked NLP snapshot: entities, keywords, overlap, strategy by size, bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from _part2_helpers import run_python
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_app import cli, nlp

TEXT = (
    "The meeting with Acme Corporation in Berlin was moved to March 3rd at 10:30 am. "
    "John Smith will send the quarterly revenue report, up 12% to $1,200, by Friday. "
    "Mail j.smith@acme.com or read www.acme.com/report before the meeting."
)
VTT = Path(__file__).resolve().parents[2] / "fixtures" / "vtt"


def no_keywords(text: str, top: int) -> list[tuple[str, float]]:
    return []


def test_entities_by_rule() -> None:
    assert [(label, text) for label, text, _ in nlp.find_entities(TEXT)] == [
        ("NAME", "Acme Corporation"),
        ("NAME", "Berlin"),
        ("DATE", "March 3rd"),
        ("TIME", "10:30 am"),
        ("NAME", "John Smith"),
        ("PERCENT", "12%"),
        ("MONEY", "$1,200"),
        ("DATE", "Friday"),
        ("EMAIL", "j.smith@acme.com"),
        ("URL", "www.acme.com/report"),
    ]
    # A capitalised word that only starts a sentence is not a name.
    assert nlp.find_entities("Please call. Tomorrow works.") == [("DATE", "Tomorrow", 13)]
    # Lower-case transcripts still carry dates, times and numbers.
    assert [e[:2] for e in nlp.find_entities("call my mother tomorrow morning at 3 pm")] == [
        ("DATE", "tomorrow"),
        ("TIME", "3 pm"),
    ]


def test_snapshot_of_a_text() -> None:
    snap = nlp.snapshot_text(TEXT)
    assert snap.chunks == 1 and snap.characters == len(TEXT)
    assert ("NAME", "Acme Corporation", 1) in snap.top_entities()
    keywords = [phrase for phrase, _ in snap.top_keywords(5)]
    assert keywords[0] == "acme corporation" and "berlin" in keywords
    data = snap.to_dict(3)
    assert data["exact"] is True and len(data["entities"]) == 3
    assert json.loads(json.dumps(data)) == data


@settings(max_examples=40, deadline=None)
@given(
    repeats=st.integers(1, 30),
    chunk_size=st.integers(50, 400),
    overlap_fraction=st.floats(0.0, 0.49),
)
def test_overlap_never_counts_twice(repeats: int, chunk_size: int, overlap_fraction: float) -> None:
    text = " ".join(
        f"Anna Novak paid ${i},000 on Monday {'and waited.' if i % 3 else 'then left.'}"
        for i in range(1, repeats + 1)
    )
    overlap = int(chunk_size * overlap_fraction)
    processor = nlp.StreamingProcessor(
        chunk_size=chunk_size, overlap=overlap, keyword_fn=no_keywords
    )
    # Pieces of every size, as a stream delivers them.
    pieces = [text[i : i + 37] for i in range(0, len(text), 37)]
    chunks = list(processor.process(pieces))
    totals = processor.totals
    assert totals.characters == len(text)
    assert totals.words == len(text.split())
    assert totals.entities[("DATE", "Monday")] == repeats
    assert totals.entities[("NAME", "Anna Novak")] == repeats
    assert sum(totals.entities[("MONEY", f"${i},000")] for i in range(1, repeats + 1)) == repeats
    assert all(len(c.entities) <= 3 * repeats for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_bounded_counter_keeps_the_heavy_hitters() -> None:
    counter = nlp.BoundedCounter(capacity=10)
    for i in range(10_000):
        counter.add("frequent")
        counter.add(f"rare-{i}")
    assert len(counter) == 10 and not counter.exact
    assert counter.most_common(1)[0] == ("frequent", 10_000)
    with pytest.raises(ValueError, match="capacity must be at least 1"):
        nlp.BoundedCounter(0)


def test_vtt_files_are_read_cue_by_cue() -> None:
    chunks = list(nlp.iter_chunks(VTT / "basic.vtt", chunk_size=60, overlap=10, top=3))
    assert len(chunks) > 1
    totals = chunks[-1].totals
    assert totals.words > 10 and totals.keywords
    # Cue timings and the header are not text.
    assert all("-->" not in c.totals.to_dict()["keywords"] for c in chunks)
    assert not any(label == "TIME" for c in chunks for label, _ in c.entities)


@pytest.mark.parametrize(
    ("size", "name", "reader"),
    [
        (0, "standard loading", "whole"),
        (999_999, "standard loading", "whole"),
        (1_000_000, "chunked processing", "blocks"),
        (10_000_000, "streaming + chunks", "blocks"),
        (49_999_999, "streaming + chunks", "blocks"),
        (50_000_000, "full streaming", "mmap"),
    ],
)
def test_strategy_follows_the_documents_table(size: int, name: str, reader: str) -> None:
    strategy = nlp.choose_strategy(size)
    assert (strategy.name, strategy.reader) == (name, reader)


def test_mmap_reader_returns_the_text_and_splits_no_character(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    text = "naïve café — 東京 " * 20_000
    path.write_text(text, encoding="utf-8")
    blocks = list(nlp.mmap_blocks(path, block_bytes=4097))
    assert len(blocks) > 10 and "".join(blocks) == text
    (tmp_path / "latin1.txt").write_bytes("café\n".encode("latin-1") * 10)
    with pytest.raises(nlp.NLPError, match=r"latin1.txt: not UTF-8 text \(byte 3: "):
        list(nlp.mmap_blocks(tmp_path / "latin1.txt"))


GENERATE = """
import random, sys
random.seed(0)
names = [f"{a} {b}" for a in "Anna Luis Chen Olga Raj".split() for b in "Smith Kim Rossi".split()]
target, out = int(float(sys.argv[2]) * 1e6), open(sys.argv[1], "w")
n = i = 0
while n < target:
    s = (f"{random.choice(names)} from Globex said revenue grew {random.randint(1, 40)}% on "
         f"March {random.randint(1, 28)}; ticket {i} closes Friday. ")
    out.write(s); n += len(s); i += 1
"""

MEASURE = """
import json, os, sys, threading, psutil
from reference_app import nlp
path = sys.argv[1]
me = psutil.Process()
before = me.memory_info().rss
peak = [before]
done = threading.Event()
def watch():
    while not done.wait(0.02):
        peak[0] = max(peak[0], me.memory_info().rss)
threading.Thread(target=watch, daemon=True).start()
processor = nlp.StreamingProcessor(keyword_fn=lambda text, top: [])
chunks = sum(1 for _ in nlp.iter_chunks(path, processor=processor))
done.set()
print(json.dumps({"chunks": chunks, "growth_mb": (peak[0] - before) / 2**20,
                  "distinct": len(processor.totals.entities)}))
"""


def test_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    growth = {}
    for megabytes in (0.4, 1.6):
        path = tmp_path / f"{megabytes}.txt"
        run_python(GENERATE, str(path), str(megabytes), cwd=tmp_path)
        result = run_python(MEASURE, str(path), cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        print(f"\n{megabytes} MB: {data}", file=sys.stderr)
        growth[megabytes] = data["growth_mb"]
        path.unlink()
    # Four times the text, not more memory: the peak stays within a few MiB.
    assert growth[1.6] < growth[0.4] + 3.0
    assert growth[1.6] < 15.0


def test_mmap_strategy_on_a_large_file_reads_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    with path.open("w") as fh:
        line = "Anna Smith said the revenue grew on March 3rd. " * 20 + "\n"
        for _ in range(60_000_000 // len(line) + 1):
            fh.write(line)
    assert nlp.choose_strategy(path.stat().st_size).reader == "mmap"
    code = """
import json, sys, psutil
from reference_app import nlp
me = psutil.Process(); before = me.memory_info().rss; peak = before; total = 0
for block in nlp.text_pieces(sys.argv[1]):
    total += len(block); peak = max(peak, me.memory_info().rss)
print(json.dumps({"chars": total, "growth_mb": (peak - before) / 2**20}))
"""
    result = run_python(code, str(path), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    print(f"\nmmap 60 MB: {data}", file=sys.stderr)
    assert data["chars"] == path.stat().st_size
    assert data["growth_mb"] < 20.0  # 1 MiB blocks; pages read are dropped


Main = Callable[[list[object]], tuple[int, str, str]]


@pytest.fixture
def main(capsys: pytest.CaptureFixture[str]) -> Main:
    def run(argv: list[object]) -> tuple[int, str, str]:
        code = cli.main([str(a) for a in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_command_prints_totals_and_chunks(main: Main, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text(TEXT * 3)
    code, out, err = main(["snapshot", path, "--top", "3"])
    assert code == 0
    assert err == f"{path}: 0.00 MB, strategy: standard loading (memory target < 100 MB)\n"
    lines = out.splitlines()
    assert lines[0] == f"2 chunks, {len((TEXT * 3).split())} words, {len(TEXT) * 3} characters"
    assert lines[1] == "entities:" and lines[2].split() == ["3", "DATE", "Friday"]
    assert lines[5] == "keywords (chunks where ranked):"
    code, out, _ = main(
        ["snapshot", path, "--chunks", "--json", "--chunk-size", "200", "--overlap", "50"]
    )
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["chunk"] for r in records[:-1]] == list(range(len(records) - 1))
    assert records[-1]["totals"]["chunks"] == len(records) - 1


def test_command_reads_standard_input(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reference_app", "snapshot", "-", "--json"],
        input=TEXT, capture_output=True, text=True, cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("REFERENCE_APP_")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["characters"] == len(TEXT)


def test_command_bad_input_is_one_line_with_status_2(main: Main, tmp_path: Path) -> None:
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00garbage")
    cases: list[tuple[list[object], str]] = [
        (["snapshot", tmp_path / "none.txt"], f"error: {tmp_path / 'none.txt'}: no such file\n"),
        (["snapshot", tmp_path], f"error: {tmp_path}: is a directory, not a transcript\n"),
        (
            ["snapshot", tmp_path / "bin.txt"],
            f"error: {tmp_path / 'bin.txt'}: not UTF-8 text (byte 0: b'\\xff\\xfe\\x00g')\n",
        ),
        (
            ["snapshot", tmp_path / "bin.txt", "--overlap", "300"],
            "error: overlap must be at least 0 and less than half the chunk size (250), got 300\n",
        ),
        (
            ["snapshot", tmp_path / "bin.txt", "--chunk-size", "10"],
            "error: chunk size must be at least 50 characters, got 10\n",
        ),
    ]
    for argv, message in cases:
        code, _, err = main(argv)
        assert (code, err.splitlines()[-1] + "\n") == (2, message), argv
