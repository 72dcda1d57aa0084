"""Audio at other rates transcribes as well as audio resampled by sox.

``please_open_the_door_and_turn_on_the_light.22k.wav`` is espeak-ng's own
output (22.05 kHz, exact digital silence around the speech); the 16 kHz
fixture of the same phrase was made from the same output by sox. The app's
conversion must match sox's samples and its word errors, not only the
duration.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from reference_app.audio import Converter, Resampler, WavFileSource, convert_blocks, iter_blocks
from reference_app.config import AppConfig, create_app

PHRASE = "please open the door and turn on the light"


def word_errors(reference: str, hypothesis: str) -> int:
    """Word-level Levenshtein distance (substitutions + insertions + deletions)."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        diagonal, row[0] = row[0], i
        for j in range(1, len(hyp) + 1):
            diagonal, row[j] = (
                row[j],
                min(row[j] + 1, row[j - 1] + 1, diagonal + (ref[i - 1] != hyp[j - 1])),
            )
    return row[len(hyp)]


def test_word_errors() -> None:
    assert word_errors("a b c", "a b c") == 0
    assert word_errors("a b c", "a x c") == 1
    assert word_errors("a b c", "a c") == 1
    assert word_errors("a b c", "") == 3
    assert word_errors("a b", "a b c d") == 2


def mono(path: Path) -> np.ndarray:
    with WavFileSource(path) as src:
        return np.concatenate(list(iter_blocks(src)))[:, 0]


def test_resampled_samples_match_sox(audio_dir: Path) -> None:
    ours = Resampler(22050, 16000)
    x = mono(audio_dir / "please_open_the_door_and_turn_on_the_light.22k.wav")
    pieces = [ours.process(x[i : i + 4096]) for i in range(0, len(x), 4096)] + [ours.flush()]
    y = np.concatenate(pieces)
    sox = mono(audio_dir / "please_open_the_door_and_turn_on_the_light.wav")
    assert len(y) == len(sox)
    # The hand-written windowed-sinc + linear interpolation this replaced was
    # 2.7 % off sox; libsoxr is 0.02 % off (sox's own dither is the rest).
    relative = np.sqrt(np.mean((y - sox) ** 2)) / np.sqrt(np.mean(sox**2))
    assert relative < 0.005


def test_requantising_dithers_digital_silence() -> None:
    silence = np.zeros((22050, 1), dtype=np.float32)
    out = Converter(22050, 1).convert(silence)
    # TPDF dither: never more than one step, never exact zeros throughout.
    assert np.abs(out).max() == 1 and np.count_nonzero(out) > len(out) // 4
    # 16 kHz mono passes through untouched: nothing is requantised.
    assert not Converter(16000, 1).convert(silence[:16000]).any()
    # Reproducible: the same input gives the same samples.
    assert np.array_equal(out, Converter(22050, 1).convert(silence))


@pytest.mark.parametrize("dither", [True, False])
def test_free_decoding_as_good_as_sox(audio_dir: Path, dither: bool) -> None:
    def decode(name: str, dither: bool | None = None) -> str:
        # A fresh decoder per file: pocketsphinx adapts its cepstral mean
        # across utterances, so a shared one would favour the second file.
        with create_app(AppConfig()) as app, WavFileSource(audio_dir / name) as src:
            segmenter = app.streaming_transcriber()
            texts: list[str] = []
            for pcm in convert_blocks(
                iter_blocks(src), src.sample_rate, src.channels, dither=dither
            ):
                texts += segmenter.feed(pcm)
            return " ".join(texts + segmenter.flush())

    sox_errors = word_errors(PHRASE, decode("please_open_the_door_and_turn_on_the_light.wav"))
    ours = word_errors(PHRASE, decode("please_open_the_door_and_turn_on_the_light.22k.wav", dither))
    if dither:
        # Measured: 6 of 9 wrong for both (free decoding of synthetic speech).
        assert ours <= sox_errors + 1 and ours <= 6
    else:
        # Without dither the digital silence stays exact zeros: 9 of 9 wrong.
        assert ours >= sox_errors + 2
