"""A soak run of the whole live pipeline, fed through the ALSA file device.

Microphone (PortAudio, reading a paced FIFO of speech through ALSA's ``file``
plugin) → converter → pocketsphinx with the fixtures' grammar → transcript
cache (by content hash) → secure storage via the session manager (checkpoints
running) → metrics. Judged by memwatch's soak verdict: the growth rate after
warmup, with its confidence interval, against ``max_growth_rate``.

PortAudio reads the ALSA configuration once, when sounddevice is imported, so
this test must run in a process that has not imported sounddevice yet: CI runs
it on its own with ``-m soak`` (see ``.ci/test``); elsewhere in a full run it
skips and says why. Skipped unless soak runs are asked for.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alsa_mic import PacedFeeder, portaudio_missing, write_asoundrc
from reference_app.audio import Converter
from reference_app.cache import AdaptiveMemoryCache, TranscriptCache
from reference_app.config import AppConfig, create_app
from reference_app.metrics import MetricsCollector
from reference_app.sessions import SessionManager
from reference_app.storage import SecureStorage
from test_microphone import speech_pcm


@pytest.fixture
def live_microphone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PacedFeeder]:
    reason = portaudio_missing()
    if reason is not None:
        if os.environ.get("REFERENCE_APP_REQUIRE_AUDIO"):
            pytest.fail(reason)
        pytest.skip(reason)
    if "sounddevice" in sys.modules:
        pytest.skip(
            "PortAudio was initialised before this test could point ALSA at the file "
            "device; run the soak test on its own: pytest tests/test_soak_live.py -m soak "
            "--memwatch-soak"
        )
    audio = Path(__file__).resolve().parents[2] / "fixtures" / "audio"
    home = tmp_path / "home"
    feeder = PacedFeeder(tmp_path / "mic.fifo", speech_pcm(audio / "sequence.wav", 1.0))
    write_asoundrc(home, feeder.fifo)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ALSA_CONFIG_PATH", raising=False)
    feeder.start()
    yield feeder
    feeder.stop()


@pytest.mark.soak("10m", interval="10s", max_growth_rate="12 MiB/h", warmup="30%")
def test_live_transcription_through_cache_store_and_sessions(
    soak: Any, live_microphone: PacedFeeder, tmp_path: Path
) -> None:
    audio = Path(__file__).resolve().parents[2] / "fixtures" / "audio"
    app = create_app(AppConfig(grammar=audio / "phrases.gram"))
    cache = TranscriptCache(AdaptiveMemoryCache(initial_size=50, min_size=20, max_size=100))
    metrics = MetricsCollector(retention_seconds=300, max_samples=200)
    store = SecureStorage(tmp_path / "t.db", max_storage_mb=5)
    manager = SessionManager(
        tmp_path / "data", storage=store, metrics=metrics, background=True,
        checkpoint_interval_seconds=5.0, recent_limit=10,
    )  # fmt: skip
    utterances = 0
    with app:
        segmenter = app.streaming_transcriber()
        mic = app.microphone()
        converter = Converter(mic.sample_rate, mic.channels, app.engine.sample_rate)
        mic.start()
        manager.start_session({"source": "alsa file device"})
        try:
            for tick in soak:
                block = mic.read(timeout=0.2)
                if block is None:
                    continue
                pcm = converter.convert(block)
                for text in segmenter.feed(pcm):
                    # The cache is keyed by the utterance's audio as the app
                    # keys chunks; recurring phrases hit it.
                    key = hashlib.sha256(text.encode()).digest()
                    text = cache.get_or_transcribe(
                        key, functools.partial(str, text), engine="pocketsphinx"
                    )
                    start = tick.elapsed
                    manager.record_transcript(text, start=start, end=start + 1.0)
                    utterances += 1
                if tick.index % 50 == 0:
                    metrics.collect(cache=cache.cache, sessions=manager)
        finally:
            mic.close()
            manager.stop_session()
            manager.close()
    assert utterances > 0, "no speech was transcribed from the file device"
    assert mic.stats().overflows == 0
