"""SpeechFramer: blocks of any length reach the endpointer as whole frames, in order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference_app.endpointing import SpeechFramer, new_endpointer
from reference_app.service.audio_stream import UtteranceCutter

FRAME = 4  # samples per frame of the fake endpointer


class FakeEndpointer:
    """Speech while a frame's first sample is positive; records every frame it is fed."""

    frame_bytes = FRAME * 2
    frame_length = FRAME / 16_000

    def __init__(self) -> None:
        self.in_speech = 0
        self.speech_start = 0.0
        self.frames: list[list[int]] = []
        self.ended_with: list[int] | None = None

    def process(self, frame: bytes) -> bytes | None:
        assert len(frame) == self.frame_bytes
        samples = np.frombuffer(frame, dtype=np.int16).tolist()
        self.frames.append(samples)
        speech = samples[0] > 0
        if speech and not self.in_speech:
            self.speech_start = (len(self.frames) - 1) * self.frame_length
        self.in_speech = int(speech)
        return frame if speech else None

    def end_stream(self, frame: bytes) -> bytes | None:
        if not frame:
            raise IndexError("pocketsphinx fails on an empty last frame")
        self.ended_with = np.frombuffer(frame, dtype=np.int16).tolist()
        self.in_speech = 0
        return frame


def test_blocks_are_cut_into_whole_frames_and_utterance_ends_are_reported() -> None:
    ep = FakeEndpointer()
    framer = SpeechFramer(ep)
    assert framer.frame_samples == FRAME
    pcm = np.array([0, 0, 0, 0, 5, 5, 5, 5, 6, 6, 6, 6, 0, 0, 0, 0, 7, 7], dtype=np.int16)
    events = list(framer.feed(pcm[:3])) + list(framer.feed(pcm[3:]))
    assert [(None if s is None else s.tolist(), ended) for s, ended in events] == [
        (None, False),
        ([5, 5, 5, 5], False),
        ([6, 6, 6, 6], False),
        (None, True),
    ]
    assert framer.frames == 4 and framer.pending_samples == 2
    assert framer.nbytes == FRAME * 2
    # Out of speech: flush hands nothing over and drops the partial frame (7, 7).
    assert framer.flush() is None and framer.pending_samples == 0
    assert ep.ended_with is None


def test_flush_in_speech_hands_over_the_partial_frame_or_one_silent_sample() -> None:
    ep = FakeEndpointer()
    framer = SpeechFramer(ep)
    list(framer.feed(np.array([3, 3, 3, 3, 4], dtype=np.int16)))
    rest = framer.flush()
    assert rest is not None and rest.tolist() == [4] and ep.ended_with == [4]

    ep = FakeEndpointer()
    framer = SpeechFramer(ep)
    list(framer.feed(np.array([3, 3, 3, 3], dtype=np.int16)))  # ends on a frame boundary
    rest = framer.flush()
    assert rest is not None and rest.tolist() == [0] and ep.ended_with == [0]


@given(
    st.lists(st.integers(-3, 3), min_size=0, max_size=60),
    st.lists(st.integers(1, 9), min_size=1, max_size=20),
)
def test_how_the_stream_is_cut_into_blocks_does_not_matter(
    samples: list[int], sizes: list[int]
) -> None:
    pcm = np.array(samples, dtype=np.int16)
    whole_ep, split_ep = FakeEndpointer(), FakeEndpointer()
    whole = [(None if s is None else s.tolist(), e) for s, e in SpeechFramer(whole_ep).feed(pcm)]
    framer = SpeechFramer(split_ep)
    split: list[tuple[list[int] | None, bool]] = []
    pos, i = 0, 0
    while pos < len(pcm):
        size = sizes[i % len(sizes)]
        split += [
            (None if s is None else s.tolist(), e) for s, e in framer.feed(pcm[pos : pos + size])
        ]
        pos, i = pos + size, i + 1
    assert split == whole
    assert split_ep.frames == whole_ep.frames
    assert framer.pending_samples == len(pcm) % FRAME


def test_new_endpointer_is_pocketsphinx_s_with_the_frame_size_it_states() -> None:
    framer = SpeechFramer(new_endpointer(0.3, 0.9, 16_000))
    assert framer.frame_samples * 2 == framer.endpointer.frame_bytes
    assert not framer.endpointer.in_speech
    events = list(framer.feed(np.zeros(framer.frame_samples * 3 + 1, dtype=np.int16)))
    assert [ended for _, ended in events] == [False, False, False]
    assert framer.frames == 3 and framer.pending_samples == 1


def test_a_closed_cutter_refuses_audio() -> None:
    cutter = UtteranceCutter()
    cutter.close()
    with pytest.raises(RuntimeError, match=r"UtteranceCutter used after close\(\)"):
        cutter.feed(np.zeros(16_000, dtype=np.int16))
    with pytest.raises(RuntimeError, match=r"UtteranceCutter used after close\(\)"):
        cutter.flush()
    cutter.close()  # closing twice is harmless
