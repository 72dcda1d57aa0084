"""The command line without a microphone: transcribe, and every bad-input case."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from wavtools import wav_bytes

Run = Callable[..., subprocess.CompletedProcess[str]]


def test_transcribe_prints_transcript(run_cli: Run, audio_dir: Path, grammar: Path) -> None:
    result = run_cli("transcribe", audio_dir / "sequence.wav", "--grammar", grammar, "--stats")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "please open the door and turn on the light turn off the radio "
        "close the window please call my mother tomorrow morning\n"
    )
    assert result.stderr.startswith("audio 10.40 s, processing ")
    assert "real-time factor" in result.stderr and result.stderr.endswith("chunks 1\n")


def test_transcribe_with_phrases_and_resampling(run_cli: Run, audio_dir: Path) -> None:
    result = run_cli(
        "transcribe",
        audio_dir / "turn_off_the_radio.44k1_stereo.wav",
        "--phrase",
        "turn off the radio",
        "--phrase",
        "turn on the light",
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "turn off the radio\n", "")


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


GOOD = wav_bytes(np.zeros(16000), 16000)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.wav", "{p}: no such file"),
        (
            lambda d: write(d / "notes.txt", b"just some text\n"),
            "{p}: not a WAV file (no RIFF/WAVE header)",
        ),
        (
            lambda d: write(d / "cut.wav", GOOD[:20000]),
            "{p}: truncated WAV file (header promises 32000 bytes of audio, file has 19956)",
        ),
        (lambda d: write(d / "empty.wav", b""), "{p}: empty file, not a WAV file"),
        (
            lambda d: write(d / "hdr.wav", GOOD[:30]),
            "{p}: truncated or corrupt WAV file (short format chunk)",
        ),
        (lambda d: d, "{p}: is a directory, not a WAV file"),
    ],
    ids=["missing", "not-wav", "truncated", "empty", "corrupt-header", "directory"],
)
def test_transcribe_bad_input_one_line_exit_2(
    run_cli: Run, tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    path = make(tmp_path)
    result = run_cli("transcribe", path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "error: " + message.format(p=path) + "\n"


def test_transcribe_bad_grammar(run_cli: Run, audio_dir: Path, tmp_path: Path) -> None:
    result = run_cli(
        "transcribe", audio_dir / "turn_off_the_radio.wav", "--grammar", tmp_path / "nope.gram"
    )
    assert (result.returncode, result.stderr) == (
        2,
        f"error: {tmp_path / 'nope.gram'}: no such grammar file\n",
    )
    result = run_cli("transcribe", audio_dir / "turn_off_the_radio.wav", "--phrase", "say xqzv")
    assert (result.returncode, result.stderr) == (
        2,
        "error: word(s) not in the pronunciation dictionary: xqzv\n",
    )


def test_whisper_without_package(run_cli: Run, audio_dir: Path, tmp_path: Path) -> None:
    result = run_cli(
        "transcribe",
        audio_dir / "turn_off_the_radio.wav",
        "--engine",
        "whisper",
        "--model-path",
        tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: the whisper engine needs faster-whisper, which is not installed "
        "(pip install 'memwatch-reference-app[whisper]')\n"
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["record", "--seconds", "0", "--out", "x.wav"],
            "argument --seconds: must be a positive number, got '0'",
        ),
        (
            ["record", "--seconds", "abc", "--out", "x.wav"],
            "argument --seconds: expected a number, got 'abc'",
        ),
        (["live", "--minutes", "-1"], "argument --minutes: must be a positive number, got '-1'"),
        (["transcribe"], "the following arguments are required: file"),
    ],
)
def test_argument_errors(run_cli: Run, args: list[str], fragment: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_record_to_missing_directory(run_cli: Run, tmp_path: Path) -> None:
    result = run_cli("record", "--seconds", "1", "--out", tmp_path / "no" / "take.wav")
    assert (result.returncode, result.stderr) == (
        2,
        f"error: {tmp_path / 'no'}: no such directory\n",
    )
