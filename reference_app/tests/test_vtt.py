"""Unit tests of the WebVTT reader and writer (fixtures in fixtures/vtt/)."""

from __future__ import annotations

import errno
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _part2_helpers import VTT_FIXTURES
from reference_app.vtt import (
    Cue,
    VTTError,
    VTTIssue,
    VTTReader,
    VTTWriter,
    format_timestamp,
    parse_timestamp,
    read_cues,
    write_transcript,
)

from reference_app import vtt

# -- reading ---------------------------------------------------------------------


def test_basic_fixture_reads_every_feature() -> None:
    reader = VTTReader(VTT_FIXTURES / "basic.vtt")
    cues = list(reader)
    assert reader.errors == [] and reader.error_count == 0
    assert [c.identifier for c in cues] == ["intro", None, "2", "3"]
    assert [(c.start, c.end) for c in cues] == [
        (1.0, 4.25),
        (4.25, 7.0),
        (3723.004, 3725.5),
        (3726.0, 3727.0),
    ]
    assert cues[0].settings == "align:start position:10%"
    assert cues[0].text == "<v Narrator>Welcome to the memory-leak harness &amp; its reference app."
    assert cues[0].plain_text == "Welcome to the memory-leak harness & its reference app."
    assert cues[1].text == "Cues may omit the hours,\nand span several lines."
    assert cues[2].plain_text == "Timestamps past one hour <still> parse."
    assert cues[0].line == 13
    assert cues[3].duration == pytest.approx(1.0)
    assert reader.cue_count == 4


def test_malformed_cues_are_reported_with_line_numbers_and_good_cues_survive() -> None:
    expected = json.loads((VTT_FIXTURES / "malformed.expected.json").read_text())
    errors: list[VTTIssue] = []
    cues = list(read_cues(VTT_FIXTURES / "malformed.vtt", errors=errors))
    assert [
        {"start": c.start, "end": c.end, "text": c.text, "line": c.line} for c in cues
    ] == expected["cues"]
    assert [e.line for e in errors] == [line for line, _ in expected["errors"]]
    for issue, (_, fragment) in zip(errors, expected["errors"], strict=True):
        assert fragment in issue.message
    assert str(errors[0]).startswith("line 8: ")


def test_strict_mode_raises_at_the_first_problem_with_its_line() -> None:
    path = VTT_FIXTURES / "malformed.vtt"
    reader = VTTReader(path, strict=True)
    seen: list[Cue] = []
    with pytest.raises(VTTError) as info:
        seen.extend(reader)
    assert info.value.line == 8
    assert str(info.value).startswith(f"{path}:8: expected a cue timing line")
    assert [c.text for c in seen] == ["good cue one"]  # cues before the problem were yielded


def test_crlf_and_byte_order_mark_are_accepted() -> None:
    reader = VTTReader(VTT_FIXTURES / "crlf_bom.vtt")
    cues = list(reader)
    assert reader.errors == []
    assert [c.text for c in cues] == ["Windows line endings\nand a byte order mark", "second"]


def test_a_missing_header_is_reported_and_the_cues_still_read() -> None:
    reader = VTTReader(VTT_FIXTURES / "no_header.vtt")
    cues = list(reader)
    assert [c.text for c in cues] == ["a file that forgot its header"]
    assert reader.errors[0].line == 1 and "missing 'WEBVTT' header" in reader.errors[0].message
    with pytest.raises(VTTError, match=r"no_header\.vtt:1: missing 'WEBVTT' header"):
        list(VTTReader(VTT_FIXTURES / "no_header.vtt", strict=True))


def test_an_empty_file_is_one_problem_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "empty.vtt"
    path.write_text("")
    reader = VTTReader(path)
    assert list(reader) == []
    assert reader.errors == [VTTIssue(1, "empty file: a WebVTT file starts with the line 'WEBVTT'")]


def test_a_stream_can_be_read() -> None:
    stream = io.StringIO("WEBVTT\n\n00:01.000 --> 00:02.000\nfrom a stream\n")
    assert [c.text for c in read_cues(stream)] == ["from a stream"]


def test_whitespace_only_lines_separate_cues() -> None:
    text = "WEBVTT\n\n00:01.000 --> 00:02.000\none\n   \n00:03.000 --> 00:04.000\ntwo\n"
    assert [c.text for c in read_cues(io.StringIO(text))] == ["one", "two"]


def test_a_cue_with_no_text_is_valid() -> None:
    cues = list(read_cues(io.StringIO("WEBVTT\n\n00:01.000 --> 00:02.000\n\n")))
    assert cues == [Cue(1.0, 2.0, "", None, "", 3)]


def test_an_over_long_cue_is_skipped_without_buffering_it() -> None:
    body = "\n".join("x" * 100 for _ in range(50))
    text = f"WEBVTT\n\n00:01.000 --> 00:02.000\n{body}\n\n00:03.000 --> 00:04.000\nafter\n"
    reader = VTTReader(io.StringIO(text), max_cue_chars=1000)
    assert [c.text for c in reader] == ["after"]
    assert len(reader.errors) == 1
    assert reader.errors[0].line == 13 and "longer than 1000 characters" in reader.errors[0].message


def test_an_over_long_line_is_cut_and_reported() -> None:
    text = f"WEBVTT\n\n00:01.000 --> 00:02.000\n{'y' * 5000}\n\n00:03.000 --> 00:04.000\nafter\n"
    reader = VTTReader(io.StringIO(text), max_line_chars=1024)
    assert [c.text for c in reader] == ["after"]
    assert [(e.line, "longer than 1024" in e.message) for e in reader.errors] == [(4, True)]


def test_only_max_errors_problems_are_kept_but_all_are_counted() -> None:
    bad = "".join(f"00:0{i % 10}.000 -> 00:09.000\nbad\n\n" for i in range(30))
    reader = VTTReader(io.StringIO("WEBVTT\n\n" + bad), max_errors=5)
    assert list(reader) == []
    assert len(reader.errors) == 5 and reader.error_count == 30


def test_a_binary_file_is_problems_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "noise.vtt"
    path.write_bytes(bytes(range(256)) * 40)
    reader = VTTReader(path)
    assert list(reader) == []
    assert reader.error_count >= 1


def test_iterating_again_reads_the_file_again() -> None:
    reader = VTTReader(VTT_FIXTURES / "malformed.vtt")
    first = list(reader)
    second = list(reader)
    assert first == second
    assert reader.error_count == 6  # counts reset per pass, not accumulated


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:00:00.000", 0.0),
        ("00:01.500", 1.5),
        ("01:00:00.001", 3600.001),
        ("100:00:00.000", 360000.0),
    ],
)
def test_parse_timestamp(text: str, seconds: float) -> None:
    assert parse_timestamp(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["1:2.3", "00:60.000", "00:00:00,000", "00:00.00", "aa:bb.ccc", ""]
)
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid timestamp"):
        parse_timestamp(text)


def test_format_timestamp() -> None:
    assert format_timestamp(0) == "00:00:00.000"
    assert (
        format_timestamp(3723.0045) == "01:02:03.004"
        or format_timestamp(3723.0045) == "01:02:03.005"
    )
    assert format_timestamp(59.9996) == "00:01:00.000"
    with pytest.raises(ValueError):
        format_timestamp(-1)


# -- writing -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ten_megabytes_of_cues(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vtt") / "10mb.vtt"
    block = "".join(
        f"{i}\n{format_timestamp(i)} --> {format_timestamp(i + 0.5)}\ncue {i}, a line of text\n\n"
        for i in range(1000)
    )
    with path.open("w") as fh:
        fh.write("WEBVTT\n\n")
        for _ in range(10 * 2**20 // len(block) + 1):
            fh.write(block)
    return path


@pytest.mark.max_memory("8 MiB")
@pytest.mark.max_growth("512 KiB")
def test_reading_10_mb_needs_no_more_memory_than_one_cue(ten_megabytes_of_cues: Path) -> None:
    """In-process twin of the 200 MB test: the peak, not only what is left, stays small."""
    reader = VTTReader(ten_megabytes_of_cues)
    assert sum(1 for _ in reader) > 150_000
    assert reader.error_count == 0


@pytest.mark.max_memory("8 MiB")
def test_writing_is_streamed(tmp_path: Path) -> None:
    with VTTWriter(tmp_path / "big.vtt") as writer:
        for i in range(50_000):
            writer.write_cue(i, i + 0.5, f"cue {i} & more")
    assert (tmp_path / "big.vtt").stat().st_size > 2 * 2**20


def test_written_cues_read_back_identically(tmp_path: Path) -> None:
    path = tmp_path / "out.vtt"
    with VTTWriter(path, header="test output") as writer:
        writer.write_note("made by a test")
        writer.write_cue(0.0, 1.25, "Tom & Jerry <3", identifier="a")
        writer.write_cue(1.25, 2.0, "<v Ann>kept markup</v>", escape=False, settings="align:end")
        writer.write_cue(2.0, 3723.5, "two\n\nparagraphs")
    reader = VTTReader(path, strict=True)
    cues = list(reader)
    assert [(c.identifier, c.start, c.end, c.plain_text, c.settings) for c in cues] == [
        ("a", 0.0, 1.25, "Tom & Jerry <3", ""),
        (None, 1.25, 2.0, "kept markup", "align:end"),
        (None, 2.0, 3723.5, "two\nparagraphs", ""),
    ]
    assert path.read_text().startswith("WEBVTT test output\n\nNOTE made by a test\n\n")
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_writing_to_a_stream() -> None:
    out = io.StringIO()
    writer = VTTWriter(out)
    writer.write_cue(1, 2, "x")
    writer.close()
    assert out.getvalue() == "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nx\n\n"


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((2.0, 2.0, "x"), {}, "start < end"),
        ((-1.0, 2.0, "x"), {}, "start < end"),
        ((1.0, 2.0, "x"), {"identifier": "a --> b"}, "invalid cue identifier"),
        ((1.0, 2.0, "x"), {"identifier": ""}, "invalid cue identifier"),
        ((1.0, 2.0, "x"), {"settings": "a\nb"}, "invalid cue settings"),
        ((1.0, 2.0, "a --> b"), {"escape": False}, "contains '-->'"),
    ],
)
def test_the_writer_refuses_what_would_break_the_file(
    args: tuple[float, float, str], kwargs: dict[str, Any], message: str
) -> None:
    writer = VTTWriter(io.StringIO())
    with pytest.raises(ValueError, match=message):
        writer.write_cue(*args, **kwargs)


def test_the_writer_requires_cues_in_start_order() -> None:
    writer = VTTWriter(io.StringIO())
    writer.write_cue(5, 6, "x")
    with pytest.raises(ValueError, match="before the previous cue"):
        writer.write_cue(4, 7, "y")


def test_arrow_in_text_is_escaped_by_default() -> None:
    out = io.StringIO()
    VTTWriter(out).write_cue(0, 1, "a --> b")
    cues = list(read_cues(io.StringIO(out.getvalue()), strict=True))
    assert cues[0].plain_text == "a --> b"


def test_a_failed_write_leaves_the_previous_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "out.vtt"
    path.write_text("WEBVTT\n\n00:01.000 --> 00:02.000\nprevious\n")
    with pytest.raises(RuntimeError), VTTWriter(path) as writer:
        writer.write_cue(0, 1, "new")
        raise RuntimeError("transcription failed half-way")
    assert [c.text for c in read_cues(path)] == ["previous"]
    assert [p.name for p in tmp_path.iterdir()] == ["out.vtt"]  # no temp file left


def test_a_full_disk_while_writing_is_an_error_and_the_old_file_survives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.vtt"
    path.write_text("WEBVTT\n\n00:01.000 --> 00:02.000\nprevious\n")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("reference_app.vtt.os.fsync", no_space)
    with pytest.raises(OSError, match="No space left"), VTTWriter(path) as writer:
        writer.write_cue(0, 1, "new")
    monkeypatch.undo()
    assert [c.text for c in read_cues(path)] == ["previous"]
    assert [p.name for p in tmp_path.iterdir()] == ["out.vtt"]


@dataclass
class ChunkLike:
    start_seconds: float
    seconds: float
    text: str


def test_write_transcript_takes_every_segment_shape(tmp_path: Path) -> None:
    path = tmp_path / "t.vtt"
    count = write_transcript(
        path,
        [
            (0.0, 1.0, " hello "),
            {"start": 1.0, "end": 1.0, "text": "zero length"},
            ChunkLike(2.0, 3.0, "a chunk"),
            ChunkLike(5.0, 2.0, ""),  # silence
        ],
    )
    assert count == 3
    cues = list(read_cues(path, strict=True))
    assert [(c.start, c.end, c.text) for c in cues] == [
        (0.0, 1.0, "hello"),
        (1.0, 1.001, "zero length"),
        (2.0, 5.0, "a chunk"),
    ]


def test_write_transcript_needs_times(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no start/end time"):
        write_transcript(tmp_path / "t.vtt", [{"start": None, "end": None, "text": "x"}])
    assert not (tmp_path / "t.vtt").exists()


# -- the fault ---------------------------------------------------------------------


def test_vtt_reader_keeps_cues_fault_retains_every_cue_read() -> None:
    before = len(vtt._CUE_HISTORY)
    try:
        for _ in range(3):
            list(VTTReader(VTT_FIXTURES / "basic.vtt", config_faults=["vtt_reader_keeps_cues"]))
        assert len(vtt._CUE_HISTORY) - before == 12
        list(VTTReader(VTT_FIXTURES / "basic.vtt"))
        assert len(vtt._CUE_HISTORY) - before == 12  # fault off: nothing kept
    finally:
        del vtt._CUE_HISTORY[before:]
