"""``serve`` and ``stream`` as commands: the service working from the command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]


def start_serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if k != "REFERENCE_APP_FAULTS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reference_app", "serve", "--port", "0",
         "--data-dir", str(tmp_path / "data"), *args],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise AssertionError(f"serve did not start: {line}{proc.stderr.read()}")
    return proc, line.split()[-1]


@pytest.fixture
def served(tmp_path: Path, grammar: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc, url = start_serve(tmp_path, "--store", "t.db", "--vtt", "vtt", "--grammar", str(grammar))
    yield proc, url
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_stream_prints_the_transcript_and_serve_stops_cleanly_on_sigterm(
    served: tuple[subprocess.Popen[str], str], run_cli: Run, audio_dir: Path, tmp_path: Path
) -> None:
    proc, url = served
    result = run_cli("stream", audio_dir / "sequence.wav", "--url", url, "--status")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "please open the door and turn on the light",
        "turn off the radio",
        "close the window please",
        "call my mother tomorrow morning",
    ]
    assert "4 segment(s), 22 word(s)" in result.stderr
    assert '"tier": "normal"' in result.stderr or '"tier": "high"' in result.stderr
    wav = run_cli("stream", audio_dir / "turn_off_the_radio.44k1_stereo.wav", "--url", url,
                  "--format", "wav")  # fmt: skip
    assert wav.stdout.strip() == "turn off the radio"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "[serve] stopped: 2 connection(s)" in err
    assert len(list((tmp_path / "vtt").glob("*.vtt"))) == 2
    assert (tmp_path / "t.db").exists() and (tmp_path / "data" / "work-orders.jsonl").exists()


def test_serve_refuses_a_non_loopback_host(run_cli: Run) -> None:
    result = run_cli("serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", "d")
    assert result.returncode == 2
    assert result.stderr == (
        "error: --host '0.0.0.0': the service listens on loopback only "
        "(127.0.0.1, ::1 or localhost)\n"
    )


def test_serve_names_a_bad_grammar(run_cli: Run, tmp_path: Path) -> None:
    result = run_cli("serve", "--port", "0", "--data-dir", "d", "--grammar", "missing.gram")
    assert result.returncode == 2
    assert result.stderr == "error: missing.gram: no such grammar file\n"


def test_stream_without_a_server_says_so(run_cli: Run, audio_dir: Path) -> None:
    result = run_cli("stream", audio_dir / "play_some_music.wav", "--url", "ws://127.0.0.1:9",
                     "--timeout", "5")  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot connect to ws://127.0.0.1:9: ")


def test_stream_names_a_file_that_is_not_wav(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    result = run_cli("stream", "notes.txt", "--url", "ws://127.0.0.1:9")
    assert result.returncode == 2
    assert result.stderr == "error: notes.txt: not a WAV file (no RIFF/WAVE header)\n"


def test_serve_stops_by_itself_after_seconds(tmp_path: Path) -> None:
    proc, _url = start_serve(tmp_path, "--seconds", "1")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "[serve] stopped: 0 connection(s)" in err
