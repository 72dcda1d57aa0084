"""Voice-activity framing: blocks of any length in, endpointed speech out.

pocketsphinx's ``Endpointer`` takes audio one fixed-size frame at a time and
hands back the speech it has decided on, a few frames late. :class:`SpeechFramer`
is the one loop that cuts blocks of any length into those frames (keeping a
partial frame for the next block) and says, frame by frame, which speech came
out and where an utterance ended. Live transcription
(:class:`~reference_app.transcription.StreamingTranscriber`) and the streaming
service (:class:`~reference_app.service.audio_stream.UtteranceCutter`) both
collect their utterances from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np


class Endpointer(Protocol):
    """What the app uses of ``pocketsphinx.Endpointer``, which ships no type hints."""

    @property
    def frame_bytes(self) -> int:
        """Bytes of 16-bit samples :meth:`process` takes at a time."""

    @property
    def frame_length(self) -> float:
        """Seconds of audio in one frame."""

    @property
    def in_speech(self) -> int:
        """1 while inside an utterance, else 0."""

    @property
    def speech_start(self) -> float:
        """Stream time, in seconds, where the current utterance began."""

    def process(self, frame: bytes) -> bytes | None:
        """Feed exactly one frame; the speech released by it, if any."""

    def end_stream(self, frame: bytes) -> bytes | None:
        """Feed the last (partial, non-empty) frame; the speech still held, if any."""


def new_endpointer(window: float, ratio: float, sample_rate: int) -> Endpointer:
    """A fresh pocketsphinx endpointer (imported here: only live audio needs it)."""
    from pocketsphinx import Endpointer as PocketsphinxEndpointer

    endpointer: Endpointer = PocketsphinxEndpointer(
        window=window, ratio=ratio, sample_rate=sample_rate
    )
    return endpointer


class SpeechFramer:
    """Feeds int16 mono samples to an endpointer one whole frame at a time.

    Example::

        framer = SpeechFramer(new_endpointer(0.3, 0.9, 16_000))
        for speech, ended in framer.feed(block):
            if speech is not None:
                utterance.append(speech)
            if ended:
                finish(utterance)
        tail = framer.flush()               # end of stream

    :meth:`feed` is a generator so that the caller sees the endpointer's state
    (``speech_start``, say) as it was right after each frame: consume it fully.
    """

    def __init__(self, endpointer: Endpointer) -> None:
        self.endpointer = endpointer
        self.frame_samples = int(endpointer.frame_bytes) // 2
        self._pending = np.zeros(self.frame_samples, dtype=np.int16)  # the partial frame
        self.pending_samples = 0
        self.frames = 0  # whole frames processed

    @property
    def nbytes(self) -> int:
        return int(self._pending.nbytes)

    def feed(self, pcm: np.ndarray) -> Iterator[tuple[np.ndarray | None, bool]]:
        """For each frame completed by ``pcm``: (speech released, or None; whether an
        utterance ended with this frame)."""
        data = np.asarray(pcm, dtype=np.int16).ravel()
        pos = 0
        while pos < len(data):
            take = min(self.frame_samples - self.pending_samples, len(data) - pos)
            end = self.pending_samples + take
            self._pending[self.pending_samples : end] = data[pos : pos + take]
            self.pending_samples = end
            pos += take
            if self.pending_samples == self.frame_samples:
                self.pending_samples = 0
                was_speech = self.endpointer.in_speech
                speech = self.endpointer.process(self._pending.tobytes())
                self.frames += 1
                yield (
                    None if speech is None else np.frombuffer(speech, dtype=np.int16),
                    bool(was_speech and not self.endpointer.in_speech),
                )

    def flush(self) -> np.ndarray | None:
        """End of stream: the speech the endpointer still holds (None when it is not
        in speech); the partial frame is used up."""
        rest = None
        if self.endpointer.in_speech:
            # end_stream() fails on an empty buffer (IndexError inside
            # pocketsphinx) when the stream ended exactly on a frame boundary;
            # one silent sample stands in for "nothing left".
            tail = (
                self._pending[: self.pending_samples]
                if self.pending_samples
                else np.zeros(1, np.int16)
            )
            rest = self.endpointer.end_stream(tail.tobytes())
        self.pending_samples = 0
        return None if rest is None else np.frombuffer(rest, dtype=np.int16)
