"""Audio sources and conversion: WAV formats, bad files, resampling, microphone callback."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from reference_app.audio import (
    AudioError,
    Converter,
    EndOfStream,
    MicrophoneSource,
    Resampler,
    SyntheticSource,
    WavFileSource,
    convert_blocks,
    iter_blocks,
    read_wav_info,
)
from wavtools import dominant_frequency, tone, wav_bytes, write_wav


def read_all(path: Path, block_frames: int = 1000) -> np.ndarray:
    with WavFileSource(path, block_frames=block_frames) as src:
        return np.concatenate(list(iter_blocks(src)))


@pytest.mark.parametrize(
    ("bits", "is_float", "extensible", "tolerance"),
    [
        (8, False, False, 2 / 128),  # quantisation + the 127-vs-128 scale
        (16, False, False, 2 / 32768),
        (24, False, True, 1 / 2**22),
        (32, False, True, 1 / 2**30),
        (32, True, False, 1e-7),
        (64, True, True, 1e-7),
    ],
)
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_reads_every_sample_format(
    tmp_path: Path, bits: int, is_float: bool, extensible: bool, tolerance: float, channels: int
) -> None:
    rng = np.random.default_rng(bits * channels)
    original = rng.uniform(-0.9, 0.9, size=(1234, channels))
    path = write_wav(
        tmp_path / "x.wav", original, 22050, bits, is_float=is_float, extensible=extensible
    )
    info = read_wav_info(path)
    assert (info.sample_rate, info.channels, info.bits, info.frames) == (
        22050,
        channels,
        bits,
        1234,
    )
    got = read_all(path, block_frames=100)
    assert got.shape == (1234, channels) and got.dtype == np.float32
    np.testing.assert_allclose(got, original, atol=tolerance * 1.01)


def test_streams_in_blocks_without_loading_whole_file(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "long.wav", tone(3.0, 16000), 16000)
    with WavFileSource(path, block_frames=4000) as src:
        sizes = [len(b) for b in iter_blocks(src)]
        with pytest.raises(EndOfStream):
            src.read()
    assert sizes == [4000] * 12


def test_skips_unknown_chunks(tmp_path: Path) -> None:
    extra = b"LIST" + struct.pack("<I", 5) + b"abcde\x00"  # odd size: padded
    path = tmp_path / "list.wav"
    path.write_bytes(wav_bytes(tone(0.1, 8000), 8000, extra_chunks=extra))
    assert len(read_all(path)) == 800


def corrupt(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


GOOD = wav_bytes(tone(0.5, 16000), 16000)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file, not a WAV file"),
        (b"hello, this is text and not audio at all", "not a WAV file (no RIFF/WAVE header)"),
        (GOOD[:30], "truncated or corrupt WAV file (short format chunk)"),
        (GOOD[:40], "truncated or corrupt WAV file (no audio data chunk)"),
        (GOOD[:-1000], "truncated WAV file (header promises 16000 bytes of audio, file has 15000)"),
        (
            GOOD[:20] + struct.pack("<H", 85) + GOOD[22:],
            "unsupported WAV encoding (format code 0x0055)",
        ),
        (GOOD[:34] + struct.pack("<H", 12) + GOOD[36:], "unsupported sample size 12 bits"),
        (GOOD[:24] + struct.pack("<I", 100) + GOOD[28:], "unsupported sample rate 100 Hz"),
        (GOOD[:22] + struct.pack("<H", 0) + GOOD[24:], "corrupt WAV file (zero channels)"),
        (GOOD[:32] + struct.pack("<H", 7) + GOOD[34:], "block align 7 does not match"),
        (wav_bytes(np.zeros((0, 1)), 16000), "WAV file contains no audio frames"),
    ],
    ids=[
        "empty",
        "text",
        "short-fmt",
        "no-data",
        "truncated",
        "mp3-code",
        "12-bit",
        "100Hz",
        "0-channels",
        "bad-align",
        "no-frames",
    ],
)
def test_bad_files_give_one_line_reason(tmp_path: Path, data: bytes, message: str) -> None:
    path = corrupt(tmp_path, "bad.wav", data)
    with pytest.raises(AudioError) as info:
        WavFileSource(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such file"):
        read_wav_info(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="is a directory"):
        read_wav_info(tmp_path)


def test_streaming_writer_size_convention(tmp_path: Path) -> None:
    """A data size of 0 (never patched by a streaming writer) means: to end of file."""
    data = bytearray(GOOD)
    data[40:44] = struct.pack("<I", 0)
    path = corrupt(tmp_path, "stream.wav", bytes(data))
    assert read_wav_info(path).frames == 8000


@pytest.mark.parametrize(
    ("src", "dst"), [(44100, 16000), (48000, 16000), (8000, 16000), (22050, 16000), (16000, 16000)]
)
def test_resampler_keeps_pitch_and_duration(src: int, dst: int) -> None:
    x = tone(1.0, src, freq=1000.0)[:, 0].astype(np.float32)
    whole = Resampler(src, dst)
    one_shot = np.concatenate([whole.process(x), whole.flush()])
    blocks = Resampler(src, dst)
    pieces = [blocks.process(x[i : i + 777]) for i in range(0, len(x), 777)] + [blocks.flush()]
    streamed = np.concatenate(pieces)
    np.testing.assert_allclose(streamed, one_shot, atol=1e-5)
    assert abs(len(streamed) - dst) <= 40  # + filter tail, trimmed by Converter
    assert dominant_frequency(streamed[:dst], dst) == pytest.approx(1000.0, abs=2.0)
    # Amplitude survives (no gain error from the filter or interpolation).
    assert np.abs(streamed[dst // 4 : dst // 2]).max() == pytest.approx(0.5, abs=0.03)


def test_downsampling_removes_content_above_new_nyquist() -> None:
    x = tone(1.0, 44100, freq=12000.0)[:, 0]  # above 8 kHz: must not fold back to 4 kHz
    y = np.concatenate([Resampler(44100, 16000).process(x)])
    assert np.sqrt(np.mean(y[2000:-2000] ** 2)) < 0.01


def test_converter_downmixes_and_matches_duration() -> None:
    left = tone(0.5, 44100, 500.0)[:, 0]
    stereo = np.stack([left, -left * 0 + left], axis=1)
    out = list(
        convert_blocks([stereo[i : i + 1000] for i in range(0, len(stereo), 1000)], 44100, 2)
    )
    pcm = np.concatenate(out)
    assert pcm.dtype == np.int16 and len(pcm) == 8000
    assert dominant_frequency(pcm.astype(np.float64), 16000) == pytest.approx(500, abs=3)
    conv = Converter(16000, 1)
    conv.convert(np.ones((10, 1), dtype=np.float32) * 2.0)  # clipped, not wrapped
    assert Converter(16000, 1).convert(np.full((3, 1), 2.0, np.float32)).tolist() == [32767] * 3


def test_synthetic_sources() -> None:
    tone_src = SyntheticSource("tone", seconds=0.5, sample_rate=8000, channels=2, frequency=250)
    data = np.concatenate(list(iter_blocks(tone_src)))
    assert data.shape == (4000, 2)
    assert dominant_frequency(data[:, 0], 8000) == pytest.approx(250, abs=2)
    silence = np.concatenate(list(iter_blocks(SyntheticSource("silence", seconds=0.2))))
    assert not silence.any()
    noise = np.concatenate(list(iter_blocks(SyntheticSource("noise", seconds=0.2, amplitude=0.3))))
    assert 0.1 < noise.std() < 0.25 and np.abs(noise).max() <= 0.3
    with pytest.raises(ValueError, match="unknown synthetic signal 'square'"):
        SyntheticSource("square")


def test_synthetic_realtime_is_paced() -> None:
    import time

    src = SyntheticSource("tone", seconds=0.3, realtime=True, block_frames=1600)
    src.start()
    started = time.monotonic()
    n = sum(len(b) for b in iter_blocks(src))
    assert n == 4800
    assert time.monotonic() - started >= 0.25


class _Status:
    def __init__(self, overflow: bool) -> None:
        self.input_overflow = overflow

    def __bool__(self) -> bool:
        return self.input_overflow


def test_microphone_callback_counts_overflows_never_silent() -> None:
    mic = MicrophoneSource(queue_blocks=3, block_frames=160)
    block = np.full((160, 1), 16384, dtype=np.int16)
    for _ in range(5):
        mic._on_audio(block, 160, None, _Status(False))
    mic._on_audio(block, 160, None, _Status(True))
    stats = mic.stats()
    assert (stats.blocks, stats.overflows, stats.dropped_frames) == (6, 3, 480)
    assert (stats.device_overflows, stats.queued, stats.max_queued) == (1, 3, 3)
    block[:] = 0  # PortAudio reuses its buffer: the queued copy must not change
    first = mic.read(timeout=0.1)
    assert first is not None and first.dtype == np.float32 and first.sum() == 80.0
    mic.close()
    assert mic.read() is not None and mic.read() is not None
    with pytest.raises(EndOfStream):
        mic.read()


def test_microphone_open_failure_is_one_clear_error() -> None:
    def broken_factory(**kwargs: Any) -> Any:
        raise RuntimeError("Error querying device -1")

    mic = MicrophoneSource(stream_factory=broken_factory, device="nonexistent")
    with pytest.raises(AudioError) as info:
        mic.start()
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(
        ("no audio input device found", "cannot open input device 'nonexistent'")
    )


def test_microphone_passes_settings_to_stream() -> None:
    opened: dict[str, Any] = {}

    class Stream:
        def __init__(self, **kwargs: Any) -> None:
            opened.update(kwargs)
            self.state = "open"

        def start(self) -> None:
            self.state = "started"

        def stop(self) -> None:
            self.state = "stopped"

        def close(self) -> None:
            opened["closed"] = True

    mic = MicrophoneSource(
        sample_rate=44100, channels=2, block_frames=441, device=3, stream_factory=Stream
    )
    mic.start()
    mic.start()  # idempotent
    assert opened["samplerate"] == 44100 and opened["channels"] == 2
    assert opened["blocksize"] == 441 and opened["device"] == 3 and opened["dtype"] == "int16"
    assert opened["callback"] == mic._on_audio
    mic.close()
    assert opened["closed"] is True


@pytest.mark.no_leaks(warmup=1, runs=4)
def test_streaming_and_converting_a_file_leaves_nothing(audio_dir: Path) -> None:
    """Source + converter, the path every transcription takes, repeated: no growth."""
    total = 0
    for _ in range(3):
        with WavFileSource(
            audio_dir / "turn_off_the_radio.44k1_stereo.wav", block_frames=4410
        ) as src:
            blocks = convert_blocks(iter_blocks(src), src.sample_rate, src.channels)
            total += sum(len(b) for b in blocks)
    assert total == 3 * 33976
