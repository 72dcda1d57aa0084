"""Real capture through PortAudio and ALSA's file device, end to end through the CLI.

Each test runs ``python -m reference_app`` in a child process whose HOME holds
an ``.asoundrc`` making the default capture device read a raw file (see
``alsa_mic.py``): PortAudio reads the ALSA configuration when it initialises,
so it has to be in place before the process starts.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from alsa_mic import PacedFeeder, mic_env, write_asoundrc
from reference_app.audio import WavFileSource, iter_blocks

Run = Callable[..., subprocess.CompletedProcess[str]]


def speech_pcm(path: Path, pad_seconds: float = 0.0) -> np.ndarray:
    """A 16 kHz mono fixture as int16, with optional low-level noise after it."""
    with WavFileSource(path) as src:
        pcm = np.rint(np.concatenate(list(iter_blocks(src)))[:, 0] * 32768).astype(np.int16)
    noise = np.random.default_rng(0).integers(-20, 20, int(pad_seconds * 16000)).astype(np.int16)
    return np.concatenate([pcm, noise])


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".recording-"))


def test_record_captures_the_device_exactly(
    alsa_home: Path, run_cli: Run, tmp_path: Path, audio_dir: Path, grammar: Path
) -> None:
    pcm = speech_pcm(audio_dir / "turn_off_the_radio.wav", pad_seconds=1.5)
    # Paced like a real device: a plain file would be read far faster than real
    # time and the writer would (rightly) report dropped blocks.
    feeder = PacedFeeder(tmp_path / "mic.fifo", pcm).start()
    write_asoundrc(alsa_home, feeder.fifo)
    out = tmp_path / "take.wav"
    try:
        result = run_cli(
            "record", "--seconds", "3", "--out", out, env=mic_env(alsa_home), timeout=30
        )
    finally:
        feeder.stop()
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"recorded 3.00 s (16000 Hz, 1 channel) to {out}\n"
    assert result.stderr == ""
    with WavFileSource(out) as wav:
        assert (wav.sample_rate, wav.channels, wav.info.bits, wav.info.frames) == (
            16000,
            1,
            16,
            48000,
        )
        got = np.rint(np.concatenate(list(iter_blocks(wav)))[:, 0] * 32768).astype(np.int32)
    # int16 -> float32 -> int16 round trip: equal to within one step.
    assert np.abs(got - pcm[:48000].astype(np.int32)).max() <= 1
    assert leftovers(tmp_path) == []
    heard = run_cli("transcribe", out, "--grammar", grammar)
    assert heard.stdout == "turn off the radio\n"


def test_record_without_any_input_device_fails_fast(
    alsa_home: Path, run_cli: Run, tmp_path: Path
) -> None:
    out = tmp_path / "take.wav"
    started = time.monotonic()
    result = run_cli("record", "--seconds", "2", "--out", out, env=mic_env(alsa_home), timeout=30)
    assert time.monotonic() - started < 15
    assert (result.returncode, result.stdout) == (2, "")
    assert (
        result.stderr == "error: no audio input device found (PortAudio lists no capture devices)\n"
    )
    assert not out.exists() and leftovers(tmp_path) == []


def test_live_without_any_input_device(alsa_home: Path, run_cli: Run) -> None:
    result = run_cli("live", "--minutes", "0.1", env=mic_env(alsa_home), timeout=30)
    assert result.returncode == 2
    assert (
        result.stderr == "error: no audio input device found (PortAudio lists no capture devices)\n"
    )


def test_record_unknown_device_lists_available(
    alsa_home: Path, run_cli: Run, tmp_path: Path
) -> None:
    raw = tmp_path / "mic.raw"
    np.zeros(16000, "<i2").tofile(raw)
    write_asoundrc(alsa_home, raw)
    result = run_cli(
        "record",
        "--seconds",
        "1",
        "--out",
        tmp_path / "t.wav",
        "--device",
        "nonexistent",
        env=mic_env(alsa_home),
        timeout=30,
    )
    assert result.returncode == 2
    assert re.fullmatch(
        r"error: cannot open input device 'nonexistent': .*\(available: filein, default\)\n",
        result.stderr,
    )
    assert not (tmp_path / "t.wav").exists() and leftovers(tmp_path) == []


def _sigint_by_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupted_record_leaves_nothing(
    alsa_home: Path, tmp_path: Path, audio_dir: Path
) -> None:
    feeder = PacedFeeder(tmp_path / "mic.fifo", speech_pcm(audio_dir / "sequence.wav")).start()
    write_asoundrc(alsa_home, feeder.fifo)
    out = tmp_path / "take.wav"
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reference_app", "record", "--seconds", "30", "--out", str(out)],
            env=mic_env(alsa_home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # As from a terminal: a suite started in the background by a
            # non-interactive shell inherits SIGINT ignored, and so would the app.
            preexec_fn=_sigint_by_default,
        )
        deadline = time.monotonic() + 20
        while not leftovers(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert leftovers(tmp_path), "recording never started"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        feeder.stop()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert not out.exists() and leftovers(tmp_path) == []


def test_live_transcribes_paced_microphone(
    alsa_home: Path, tmp_path: Path, audio_dir: Path, grammar: Path
) -> None:
    feeder = PacedFeeder(
        tmp_path / "mic.fifo", speech_pcm(audio_dir / "sequence.wav", pad_seconds=1.0)
    ).start()
    write_asoundrc(alsa_home, feeder.fifo)
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "reference_app",
                "live",
                "--minutes",
                "0.2",
                "--status-interval",
                "3",
                "--monitor-interval",
                "1",
                "--grammar",
                str(grammar),
            ],
            env=mic_env(alsa_home),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        feeder.stop()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "please open the door and turn on the light",
        "turn off the radio",
        "close the window please",
        "call my mother tomorrow morning",
    ]
    status = [line for line in result.stderr.splitlines() if line.startswith("[memory]")]
    assert len(status) >= 4  # every 3 s of 12, plus the final one
    pattern = (
        r"\[memory\] 0:00:\d\d rss \d+\.\d MiB \(start \d+\.\d, peak \d+\.\d\) "
        r"trend (n/a|[+-]\d+\.\d\d MiB/min) system \d+\.\d % overflows 0"
    )
    assert all(re.fullmatch(pattern, line) for line in status), status
    (summary,) = [line for line in result.stderr.splitlines() if line.startswith("[live]")]
    assert result.stderr.splitlines()[-1].startswith("[session] ")
    assert re.fullmatch(
        r"\[live\] 0:00:1[12] done: \d+ utterances, 1[12]\.\d s of audio, "
        r"0 blocks dropped \(0\.00 s\), 0 device overflows",
        summary,
    ), summary


def stalling_run(
    alsa_home: Path, tmp_path: Path, audio_dir: Path, stall_after: float, *args: str | Path
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the CLI on a device that delivers ``stall_after`` seconds, then goes quiet."""
    feeder = PacedFeeder(
        tmp_path / "mic.fifo",
        speech_pcm(audio_dir / "sequence.wav", pad_seconds=1.0),
        stall_after=stall_after,
    ).start()
    write_asoundrc(alsa_home, feeder.fifo)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reference_app", *map(str, args)],
            env=mic_env(alsa_home), cwd=tmp_path, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert feeder.stalled.wait(30), "the device never started"
        stalled_at = time.monotonic()
        out, err = proc.communicate(timeout=60)
        after_stall = time.monotonic() - stalled_at
        print(f"\n{args[0]}: exited {after_stall:.2f} s after the device stalled", file=sys.stderr)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), after_stall
    finally:
        feeder.stop()


def test_record_gives_up_on_a_device_that_stops_delivering(
    alsa_home: Path, tmp_path: Path, audio_dir: Path
) -> None:
    out = tmp_path / "take.wav"
    result, after_stall = stalling_run(
        alsa_home, tmp_path, audio_dir, 1.0, "record", "--seconds", "30", "--out", out
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "error: the input device stopped delivering audio after 1.00 s of the 30 s requested "
        "(nothing for 5 s); nothing was written\n"
    )
    # 5 s without audio, then at most 1 s for PortAudio's stuck stop (abandoned).
    assert 4.5 < after_stall < 8.0
    assert not out.exists() and leftovers(tmp_path) == []


def test_live_gives_up_on_a_device_that_stops_delivering_and_keeps_the_session(
    alsa_home: Path, tmp_path: Path, audio_dir: Path, grammar: Path
) -> None:
    db, data = tmp_path / "t.db", tmp_path / "data"
    result, after_stall = stalling_run(
        alsa_home, tmp_path, audio_dir, 4.0,
        "live", "--minutes", "1", "--grammar", grammar, "--store", db, "--data-dir", data,
        "--session-id", "stalled",
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout.splitlines() == ["please open the door and turn on the light"]
    last = result.stderr.splitlines()[-1]
    assert re.fullmatch(
        r"error: the input device stopped delivering audio after 0:00:0[3-5] "
        r"\(nothing for 5 s\); the session was saved",
        last,
    ), result.stderr
    assert 4.5 < after_stall < 8.0
    report = json.loads(
        subprocess.run(
            [sys.executable, "-m", "reference_app", "sessions", "--data-dir", str(data),
             "export", "stalled", "--store", str(db), "--text"],
            capture_output=True, text=True, check=True, cwd=tmp_path,
        ).stdout
    )  # fmt: skip
    assert (report["state"], report["stop_reason"]) == ("stopped", "device_stalled")
    assert [s["text"] for s in report["segments"]] == ["please open the door and turn on the light"]
    assert report["storage"]["is_active"] is False


def test_live_saves_the_session_to_the_store_and_subtitles(
    alsa_home: Path, tmp_path: Path, audio_dir: Path, grammar: Path
) -> None:
    feeder = PacedFeeder(
        tmp_path / "mic.fifo", speech_pcm(audio_dir / "sequence.wav", pad_seconds=1.0)
    ).start()
    write_asoundrc(alsa_home, feeder.fifo)
    db, vtt, data = tmp_path / "t.db", tmp_path / "t.vtt", tmp_path / "data"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "reference_app", "live", "--minutes", "0.2",
             "--status-interval", "5", "--grammar", str(grammar), "--store", str(db),
             "--vtt", str(vtt), "--data-dir", str(data), "--session-id", "kitchen",
             "--checkpoint-minutes", "0.05"],
            env=mic_env(alsa_home), capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
    finally:
        feeder.stop()
    assert result.returncode == 0, result.stderr
    spoken = [
        "please open the door and turn on the light",
        "turn off the radio",
        "close the window please",
        "call my mother tomorrow morning",
    ]
    assert result.stdout.splitlines()[:4] == spoken
    session_lines = [line for line in result.stderr.splitlines() if line.startswith("[session]")]
    assert re.fullmatch(
        r"\[session\] 0:00:05 kitchen active segments \d checkpoints \d+ cache hit rate "
        r"\d\.\d\d store \d+ KiB",
        session_lines[0],
    ), session_lines
    assert re.fullmatch(
        rf"\[session\] kitchen stopped: \d segments, \d+ checkpoints; checkpoints in {data}, "
        rf"text in {db}, subtitles in {vtt}",
        session_lines[-1],
    ), session_lines
    from reference_app.storage import SecureStorage
    from reference_app.vtt import VTTReader

    stored = [t.text for t in SecureStorage(db).iter_transcripts("kitchen")]
    assert stored[:4] == spoken
    assert [c.text for c in VTTReader(vtt, strict=True)] == stored
    checkpoints = list((data / "sessions" / "kitchen").glob("checkpoint-*.json"))
    assert checkpoints and len(checkpoints) <= 3  # every 3 s, the last 3 kept
