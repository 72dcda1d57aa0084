"""The engine factory with long-session support: sessions, store, subtitles, cache, cleanup."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from reference_app.audio import WavFileSource, convert_blocks, iter_blocks
from reference_app.config import AppConfig, create_app
from reference_app.engine import LongSessionEngine, create_engine, settings_from_config
from reference_app.storage import SecureStorage
from reference_app.vtt import VTTReader

PHRASES = [
    "please open the door and turn on the light",
    "turn off the radio",
    "close the window please",
    "call my mother tomorrow morning",
]


def pcm_of(path: Path) -> np.ndarray:
    with WavFileSource(path) as src:
        return np.concatenate(list(convert_blocks(iter_blocks(src), 16000, 1)))


def feed_in_blocks(engine: LongSessionEngine, pcm: np.ndarray, block: int = 1600) -> list[str]:
    texts: list[str] = []
    for i in range(0, len(pcm), block):
        texts += engine.feed(pcm[i : i + block])
    return texts


@pytest.fixture
def engine(tmp_path: Path, grammar: Path) -> Iterator[LongSessionEngine]:
    app = create_app(AppConfig(grammar=grammar))
    settings = {
        "data_dir": tmp_path / "data",
        "store_path": tmp_path / "t.db",
        "vtt_path": tmp_path / "t.vtt",
        "session_id": "talk",
        "metrics_interval_seconds": 0.2,
    }
    with app, create_engine(settings, app=app) as engine:
        yield engine


def test_a_session_stores_checkpoints_and_subtitles_every_utterance(
    engine: LongSessionEngine, audio_dir: Path, tmp_path: Path
) -> None:
    assert engine.start({"source": "test"}) == "talk"
    texts = feed_in_blocks(engine, pcm_of(audio_dir / "sequence.wav"))
    report = engine.stop()
    assert texts + engine.last_texts == PHRASES
    assert report is not None and report["state"] == "stopped"
    assert report["transcriptions"] == 4 and report["words"] == 22
    assert report["config"] == {"engine": "pocketsphinx", "source": "test"}
    store = SecureStorage(tmp_path / "t.db")
    (row,) = store.list_sessions()
    assert row["session_id"] == "talk" and row["is_active"] is False
    stored = list(store.iter_transcripts("talk"))
    assert [t.text for t in stored] == PHRASES
    cues = list(VTTReader(tmp_path / "t.vtt", strict=True))
    assert [c.text for c in cues] == PHRASES
    assert [(c.start, c.end) for c in cues] == [(t.start, t.end) for t in stored]
    assert all(0 <= c.start < c.end <= 10.5 for c in cues)
    checkpoint = sorted((tmp_path / "data" / "sessions" / "talk").glob("checkpoint-*.json"))[-1]
    assert json.loads(checkpoint.read_text())["session"]["state"] == "stopped"


def test_pause_drops_audio_and_resume_goes_on(engine: LongSessionEngine, audio_dir: Path) -> None:
    engine.start()
    radio = pcm_of(audio_dir / "turn_off_the_radio.wav")
    music = pcm_of(audio_dir / "play_some_music.wav")
    assert feed_in_blocks(engine, radio) + engine.flush() == ["turn off the radio"]
    engine.pause_long_session()
    status = engine.get_long_session_status()
    assert status["paused"] is True and status["session"]["state"] == "paused"
    assert feed_in_blocks(engine, music) == []  # captured, not transcribed
    with pytest.raises(RuntimeError, match="already paused"):
        engine.pause_long_session()
    engine.resume_long_session()
    assert feed_in_blocks(engine, music) + engine.flush() == ["play some music"]
    stats = engine.get_stats()
    assert stats["seconds_dropped_while_paused"] == pytest.approx(len(music) / 16000, abs=0.1)
    report = engine.stop()
    assert report is not None and report["transcriptions"] == 2
    assert report["paused_seconds"] >= 0


def test_the_same_utterance_is_decoded_once(engine: LongSessionEngine, audio_dir: Path) -> None:
    engine.start()
    radio = pcm_of(audio_dir / "turn_off_the_radio.wav")
    for _ in range(3):
        assert feed_in_blocks(engine, radio) + engine.flush() == ["turn off the radio"]
    cache = engine.get_long_session_status()["cache"]
    assert (cache["hits"], cache["misses"]) == (2, 1)
    engine.stop()


def test_forced_cleanup_and_status(engine: LongSessionEngine, audio_dir: Path) -> None:
    engine.start()
    feed_in_blocks(engine, pcm_of(audio_dir / "turn_off_the_radio.wav"))
    engine.flush()
    freed = engine.force_memory_cleanup()
    assert set(freed) == {
        "cache_entries_dropped",
        "gc_objects_collected",
        "rss_before_mb",
        "rss_after_mb",
    }
    status = engine.get_long_session_status()
    assert status["memory"]["cleanups"] == 1 and status["memory"]["tier"] in ("normal", "high")
    assert status["storage"]["transcripts"] == 1
    assert status["session"]["transcriptions"] == 1
    engine.stop()


def test_the_memory_monitor_runs_the_cleanup_under_pressure(tmp_path: Path, grammar: Path) -> None:
    from reference_app.monitor import MemoryReading

    app = create_app(
        AppConfig(grammar=grammar, memory_reader=lambda: MemoryReading(0.0, 1 << 20, 90.0, 1 << 30))
    )
    with app, create_engine({"data_dir": tmp_path / "d"}, app=app) as engine:
        engine.start()
        app.monitor.check()
        assert engine.cleanups == 1
        engine.stop()
        app.monitor.check()  # the callback went with the session
        assert engine.cleanups == 1


def test_without_long_sessions_nothing_is_written(tmp_path: Path, grammar: Path) -> None:
    app = create_app(AppConfig(grammar=grammar))
    with app, create_engine({"enable_long_sessions": False}, app=app) as engine:
        assert engine.start() is None
        assert engine.get_long_session_status()["enabled"] is False
        assert engine.stop() is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"enable_long_sessions": True}, "long sessions need a data_dir"),
        ({"data_dir": "d", "max_storage_mb": 0}, "max_storage_mb must be a positive number, got 0"),
        ({"data_dir": "d", "model": "huge"}, "unknown model 'huge'; expected one of base, "),
        ({"data_dir": "d", "colour": "red"}, "unknown engine setting(s) colour; known: "),
    ],
)
def test_bad_settings_are_named(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        settings_from_config(config)
    assert str(caught.value).startswith(message)


def test_the_documents_example_builds_an_engine(tmp_path: Path) -> None:
    engine = create_engine(
        {"enable_long_sessions": True, "max_storage_mb": 1000, "data_dir": tmp_path / "d"}
    )
    with engine:
        assert engine.settings.max_storage_mb == 1000
        assert engine.app.config.engine == "pocketsphinx"
    whisper = create_engine({"data_dir": tmp_path / "d", "model": "base"})
    with whisper:
        assert (whisper.app.config.engine, whisper.app.config.model_size) == ("whisper", "base")
