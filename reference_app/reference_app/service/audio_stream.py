"""Incoming audio of one streaming session: bytes → 16 kHz mono int16 → utterances.

- :class:`PcmStream` decodes raw 16-bit little-endian PCM at the rate and
  channel count the client announced; :class:`WavStream` parses a WAV file's
  header from the first frames of the stream (any encoding the app reads:
  8/16/24/32-bit PCM, 32/64-bit float, any channel count) and decodes the data
  after it. Both carry a partial sample frame over to the next chunk, so a
  client may cut its stream anywhere.
- :class:`UtteranceCutter` cuts the converted audio into utterances with
  pocketsphinx's voice-activity endpointer (framed by
  :class:`~reference_app.endpointing.SpeechFramer`), in a preallocated buffer of
  ``max_utterance_seconds``: a speaker who never pauses is cut, not buffered.

Everything here holds a bounded amount of memory whatever the stream's length.
"""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import numpy as np

from reference_app.audio import (
    MAX_RATE,
    MIN_RATE,
    AudioError,
    Converter,
    _parse_fmt,
    decode_samples,
)
from reference_app.endpointing import Endpointer, SpeechFramer, new_endpointer

ENGINE_RATE = 16_000
MAX_WAV_HEADER_BYTES = 64 * 1024  # fmt and data chunks must arrive within this much


class PcmStream:
    """Raw little-endian 16-bit PCM at ``sample_rate`` Hz, ``channels`` channels."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        if not MIN_RATE <= sample_rate <= MAX_RATE:
            raise AudioError(
                f"unsupported sample_rate {sample_rate} Hz (expected {MIN_RATE}-{MAX_RATE})"
            )
        if not 1 <= channels <= 16:
            raise AudioError(f"unsupported channels {channels} (expected 1-16)")
        self._bits, self._float, self.channels = 16, False, channels
        self.sample_rate = sample_rate
        self._converter = Converter(sample_rate, channels, ENGINE_RATE)
        self._rest = b""

    @property
    def buffered_bytes(self) -> int:
        return len(self._rest)

    def feed(self, data: bytes) -> np.ndarray:
        """Bytes in, 16 kHz mono int16 out (possibly empty)."""
        data = self._rest + data if self._rest else data
        align = self.channels * self._bits // 8
        usable = len(data) - len(data) % align
        self._rest = data[usable:]
        if not usable:
            return np.zeros(0, np.int16)
        frames = decode_samples(data[:usable], self._bits, self._float, self.channels)
        return self._converter.convert(frames)

    def flush(self) -> np.ndarray:
        self._rest = b""
        return self._converter.flush()


class WavStream(PcmStream):
    """A WAV file sent in pieces: the header first, then its sample data."""

    def __init__(self) -> None:
        self._header = b""
        self._ready = False
        self._rest = b""
        self.sample_rate = 0
        self.channels = 0

    @property
    def buffered_bytes(self) -> int:
        return len(self._header) + len(self._rest)

    def feed(self, data: bytes) -> np.ndarray:
        if self._ready:
            return super().feed(data)
        self._header += data
        start = self._parse()
        if start is None:
            if len(self._header) > MAX_WAV_HEADER_BYTES:
                raise AudioError(
                    f"no WAV data chunk in the first {MAX_WAV_HEADER_BYTES} bytes of the stream"
                )
            return np.zeros(0, np.int16)
        body, self._header = self._header[start:], b""
        self._ready = True
        return super().feed(body)

    def _parse(self) -> int | None:
        """Offset of the sample data once the header is complete, else None."""
        head = self._header
        if len(head) >= 12 and (head[:4] != b"RIFF" or head[8:12] != b"WAVE"):
            raise AudioError(
                "the stream is not a WAV file (no RIFF/WAVE header); send format 'pcm16' "
                "for raw samples"
            )
        pos, fmt = 12, None
        while len(head) >= pos + 8:
            chunk_id, size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
            if chunk_id == b"data":
                if fmt is None:
                    raise AudioError("corrupt WAV stream (audio data before format chunk)")
                code, channels, rate, bits = fmt
                self._bits, self._float = bits, code == 3
                self.channels, self.sample_rate = channels, rate
                self._converter = Converter(rate, channels, ENGINE_RATE)
                return pos + 8
            end = pos + 8 + size + (size & 1)
            if len(head) < end:
                return None
            if chunk_id == b"fmt ":
                fmt = _parse_fmt(Path("WAV stream"), head[pos + 8 : pos + 8 + size])
            pos = end
        return None

    def flush(self) -> np.ndarray:
        if not self._ready:
            self._header = b""
            return np.zeros(0, np.int16)
        return super().flush()


class _EndpointerPool:
    """Endpointers kept for reuse, because freeing one does not free its memory.

    Measured with pocketsphinx 5.0 (``mallinfo2``): every ``Endpointer``
    created and dropped leaves about 20 KiB of native memory allocated, so a
    server making one per session grows without bound. memwatch flagged it as
    ~20 KiB per session in the service's bad-input tests. An endpointer is
    reusable after ``end_stream``; its clock then keeps running from where it
    was, so each user subtracts the time it had already consumed.
    """

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self._free: dict[tuple[float, float, int], list[tuple[Endpointer, float]]] = {}
        self._lock = threading.Lock()
        self.created = 0

    def acquire(self, window: float, ratio: float, rate: int) -> tuple[Endpointer, float]:
        """(endpointer, seconds it has already consumed)."""
        with self._lock:
            free = self._free.get((window, ratio, rate))
            if free:
                return free.pop()
            self.created += 1
        return new_endpointer(window, ratio, rate), 0.0

    def release(self, key: tuple[float, float, int], ep: Endpointer, consumed: float) -> None:
        try:
            # Resets the speech state; one silent sample, as an empty buffer
            # makes pocketsphinx raise IndexError on a frame boundary.
            ep.end_stream(b"\0\0")
        except (IndexError, ValueError):
            return  # not reusable: dropped (and its memory with it, as far as it goes)
        with self._lock:
            free = self._free.setdefault(key, [])
            if len(free) < self.limit:
                free.append((ep, consumed))


ENDPOINTERS = _EndpointerPool()


class UtteranceCutter:
    """Endpointed utterances from 16 kHz int16 audio, with their times in the stream.

    Example::

        cutter = UtteranceCutter()
        for pcm, start, end in cutter.feed(block):
            submit(pcm)                     # a copy, safe to keep
        current = cutter.current()          # the utterance so far (a copy)
    """

    def __init__(
        self,
        *,
        max_utterance_seconds: float = 15.0,
        vad_window: float = 0.3,
        vad_ratio: float = 0.9,
        sample_rate: int = ENGINE_RATE,
    ) -> None:
        self.sample_rate = sample_rate
        self._key = (vad_window, vad_ratio, sample_rate)
        ep, self._base = ENDPOINTERS.acquire(*self._key)
        self._ep: Endpointer | None = ep  # None once given back to the pool
        self._framer = SpeechFramer(ep)
        self._max = int(max_utterance_seconds * sample_rate)
        self._utt = np.zeros(self._max, dtype=np.int16)
        self._utt_len = 0
        self._utt_start = 0.0
        self.samples_in = 0
        self.utterances = 0
        self.forced_cuts = 0

    @property
    def nbytes(self) -> int:
        return int(self._utt.nbytes) + self._framer.nbytes

    @property
    def speech_samples(self) -> int:
        """Samples in the utterance being collected."""
        return self._utt_len

    def current(self) -> np.ndarray:
        return self._utt[: self._utt_len].copy()

    def feed(self, pcm: np.ndarray) -> list[tuple[np.ndarray, float, float]]:
        self._check_open()
        done: list[tuple[np.ndarray, float, float]] = []
        data = np.asarray(pcm, dtype=np.int16).ravel()
        self.samples_in += len(data)
        for speech, ended in self._framer.feed(data):
            if speech is not None:
                self._append(speech, done)
            if ended:
                self._finish(done)
        return done

    def _check_open(self) -> None:
        # The framer still holds the endpointer after close(), but the pool may
        # have handed it to another session by then.
        if self._ep is None:
            raise RuntimeError("UtteranceCutter used after close()")

    def _append(self, samples: np.ndarray, done: list[tuple[np.ndarray, float, float]]) -> None:
        if self._utt_len == 0:
            self._utt_start = float(self._framer.endpointer.speech_start) - self._base
        room = self._max - self._utt_len
        if len(samples) > room:
            self._utt[self._utt_len :] = samples[:room]
            self._utt_len = self._max
            self.forced_cuts += 1
            self._finish(done)
            samples = samples[room:]
            self._utt_start += self._max / self.sample_rate
        self._utt[self._utt_len : self._utt_len + len(samples)] = samples
        self._utt_len += len(samples)

    def _finish(self, done: list[tuple[np.ndarray, float, float]]) -> None:
        if self._utt_len == 0:
            return
        start = self._utt_start
        done.append(
            (self._utt[: self._utt_len].copy(), start, start + self._utt_len / self.sample_rate)
        )
        self._utt_len = 0
        self.utterances += 1

    def flush(self) -> list[tuple[np.ndarray, float, float]]:
        self._check_open()
        done: list[tuple[np.ndarray, float, float]] = []
        rest = self._framer.flush()
        if rest is not None:
            self._append(rest, done)
        self._finish(done)
        return done

    def close(self) -> None:
        """Give the endpointer back for the next session (call once, at the end)."""
        ep, self._ep = self._ep, None
        if ep is not None:
            consumed = self._base + self._framer.frames * float(ep.frame_length)
            ENDPOINTERS.release(self._key, ep, consumed)
