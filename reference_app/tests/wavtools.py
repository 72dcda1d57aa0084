"""Test helpers: write WAV files in every layout the reader must accept or refuse."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

GUID_SUFFIX = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def encode(frames: np.ndarray, bits: int, is_float: bool = False) -> bytes:
    """Float frames in [-1, 1] to little-endian sample bytes."""
    x = np.asarray(frames, dtype=np.float64)
    if is_float:
        return x.astype("<f4" if bits == 32 else "<f8").tobytes()
    if bits == 8:
        return np.clip(np.rint(x * 127 + 128), 0, 255).astype(np.uint8).tobytes()
    scale = 2 ** (bits - 1) - 1
    ints = np.clip(np.rint(x * scale), -scale - 1, scale).astype(np.int64)
    if bits == 24:
        b: np.ndarray = ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
        return b.tobytes()
    out: np.ndarray = ints.astype("<i2" if bits == 16 else "<i4")
    return out.tobytes()


def wav_bytes(
    frames: np.ndarray,
    rate: int,
    bits: int = 16,
    *,
    is_float: bool = False,
    extensible: bool = False,
    extra_chunks: bytes = b"",
) -> bytes:
    frames = np.asarray(frames)
    if frames.ndim == 1:
        frames = frames[:, None]
    channels = frames.shape[1]
    data = encode(frames.reshape(-1), bits, is_float)
    align = channels * bits // 8
    code = 3 if is_float else 1
    if extensible:
        fmt = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * align, align, bits)
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", code) + GUID_SUFFIX
    else:
        fmt = struct.pack("<HHIIHH", code, channels, rate, rate * align, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra_chunks
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_wav(
    path: Path,
    frames: np.ndarray,
    rate: int,
    bits: int = 16,
    *,
    is_float: bool = False,
    extensible: bool = False,
) -> Path:
    path.write_bytes(wav_bytes(frames, rate, bits, is_float=is_float, extensible=extensible))
    return path


def tone(
    seconds: float, rate: int, freq: float = 440.0, channels: int = 1, amp: float = 0.5
) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    mono = amp * np.sin(2 * np.pi * freq * t)
    return np.repeat(mono[:, None], channels, axis=1)


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])
