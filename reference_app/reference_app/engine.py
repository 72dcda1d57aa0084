"""The engine factory with long-session support (the long-session design document).

:func:`create_engine` builds a :class:`LongSessionEngine` from the document's
configuration keys (``enable_long_sessions``, ``max_storage_mb``, ``model``,
plus where to keep sessions, the store and subtitles). The engine wires, in
one place, what a long transcription needs:

- the app's speech engine behind a transcript cache keyed by the utterance's
  audio (a repeated utterance is not decoded twice);
- a session manager with periodic checkpoints (crash recovery), writing every
  segment to the encrypted store when one is given, and to a WebVTT file;
- a metrics collector with retention, collected on a background loop;
- the app's memory monitor, whose HIGH tier runs :meth:`force_memory_cleanup`.

The document's methods are there: :meth:`get_long_session_status`,
:meth:`pause_long_session`, :meth:`resume_long_session`,
:meth:`force_memory_cleanup`, plus :meth:`get_stats`. ``live`` drives it::

    with create_engine({"enable_long_sessions": True, "data_dir": "data",
                        "store_path": "t.db", "vtt_path": "t.vtt"}) as engine:
        engine.start()
        for pcm in blocks:                  # 16 kHz mono int16
            for text in engine.feed(pcm):
                print(text)
        report = engine.stop()
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reference_app.cache import AdaptiveMemoryCache, TranscriptCache
from reference_app.config import App, AppConfig, create_app
from reference_app.metrics import MetricsCollector
from reference_app.monitor import CallbackHandle, Tier
from reference_app.sessions import SessionManager
from reference_app.transcription import WHISPER_MODEL_MEMORY_MB, StreamingTranscriber

MiB = 2**20


@dataclass(frozen=True)
class EngineSettings:
    """What :func:`create_engine` accepts, with the document's defaults."""

    enable_long_sessions: bool = True
    data_dir: Path | None = None  # sessions and checkpoints; required with long sessions
    store_path: Path | None = None  # encrypted transcript store (optional)
    vtt_path: Path | None = None  # WebVTT subtitles of the session (optional)
    max_storage_mb: float = 500.0
    checkpoint_interval_minutes: float = 30.0
    max_session_hours: float = 12.0
    session_id: str | None = None
    cache_size: int = 500
    metrics_interval_seconds: float = 30.0
    model: str | None = None  # whisper model size; pocketsphinx when None

    def __post_init__(self) -> None:
        if self.enable_long_sessions and self.data_dir is None:
            raise ValueError("long sessions need a data_dir for their checkpoints")
        for name in (
            "max_storage_mb",
            "checkpoint_interval_minutes",
            "max_session_hours",
            "metrics_interval_seconds",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.cache_size < 100:
            raise ValueError(f"cache_size must be at least 100, got {self.cache_size!r}")
        if self.model is not None and self.model not in WHISPER_MODEL_MEMORY_MB:
            raise ValueError(
                f"unknown model {self.model!r}; expected one of "
                f"{', '.join(sorted(WHISPER_MODEL_MEMORY_MB))}"
            )


_PATH_KEYS = ("data_dir", "store_path", "vtt_path")


def settings_from_config(config: Mapping[str, Any]) -> EngineSettings:
    """Validate the document's configuration mapping; unknown keys are named."""
    known = set(EngineSettings.__dataclass_fields__)
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(
            f"unknown engine setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    values = dict(config)
    for key in _PATH_KEYS:
        if values.get(key) is not None:
            values[key] = Path(values[key])
    return EngineSettings(**values)


class LongSessionEngine:
    """Speech engine plus sessions, checkpoints, store, cache, metrics and cleanup.

    The engine is what :class:`~reference_app.transcription.StreamingTranscriber`
    decodes utterances with (:attr:`sample_rate`, :meth:`transcribe`); callers
    feed it PCM with :meth:`feed` and get finished utterances back, each
    already accounted in the session, stored and written as a subtitle cue.
    """

    def __init__(self, app: App, settings: EngineSettings, *, owns_app: bool = False) -> None:
        self.app = app
        self.settings = settings
        self._owns_app = owns_app
        self._lock = threading.RLock()
        self.cache = TranscriptCache(
            AdaptiveMemoryCache(
                initial_size=settings.cache_size,
                min_size=100,
                max_size=max(settings.cache_size, 5000),
                config_faults=app.faults,
            )
        )
        self.metrics = MetricsCollector(retention_seconds=3600, config_faults=app.faults)
        self.storage: Any = None
        self.sessions: SessionManager | None = None
        self.session_id: str | None = None
        self._vtt: Any = None
        self._segmenter: StreamingTranscriber | None = None
        self._pending: list[tuple[float, str]] = []  # (utterance seconds, text) decoded
        self._position = 0.0  # seconds of audio captured since start
        self._paused = False
        self._cleanup_handle: CallbackHandle | None = None
        self.utterances = 0
        self.cleanups = 0
        self.seconds_dropped_while_paused = 0.0
        self.report: dict[str, Any] | None = None

    # -- what StreamingTranscriber needs (the Engine protocol) ------------------------
    name = "long-session"
    sample_rate = 16_000  # the speech engine's, set by start()

    def transcribe(self, pcm: np.ndarray) -> str:
        """Decode one utterance, through the cache keyed by its audio."""
        engine = self.app.engine
        text: str = self.cache.get_or_transcribe(
            pcm, lambda: engine.transcribe(pcm), engine=type(engine).__name__
        )
        self._pending.append((len(pcm) / self.sample_rate, text))
        return text

    # -- lifecycle ------------------------------------------------------------------
    def start(self, session_config: Mapping[str, Any] | None = None) -> str | None:
        """Load the model, open the store, start the session; returns its id."""
        s = self.settings
        # Load the model first: a bad grammar fails before anything is written.
        self.sample_rate = self.app.engine.sample_rate
        self._segmenter = StreamingTranscriber(
            self, max_utterance_seconds=self.app.config.max_utterance_seconds
        )
        if s.enable_long_sessions:
            assert s.data_dir is not None
            if s.store_path is not None:
                from reference_app.storage import SecureStorage

                self.storage = SecureStorage(
                    s.store_path, max_storage_mb=s.max_storage_mb, config_faults=self.app.faults
                )
            self.sessions = SessionManager(
                s.data_dir,
                checkpoint_interval_seconds=s.checkpoint_interval_minutes * 60,
                max_session_seconds=s.max_session_hours * 3600,
                storage=self.storage,
                metrics=self.metrics,
                config_faults=self.app.faults,
            )
            config = {"engine": self.app.config.engine, **dict(session_config or {})}
            self.session_id = self.sessions.start_session(config, session_id=s.session_id)
        if s.vtt_path is not None:
            from reference_app.vtt import VTTWriter

            self._vtt = VTTWriter(s.vtt_path)
        self._cleanup_handle = self.app.monitor.add_callback(
            Tier.HIGH, self.force_memory_cleanup, "long-session cleanup"
        )
        self.metrics.start(
            s.metrics_interval_seconds,
            cache=self.cache.cache,
            sessions=self.sessions,
            storage=self.storage,
        )
        return self.session_id

    def feed(self, pcm: np.ndarray) -> list[str]:
        """Consume captured 16 kHz mono int16 audio; return finished utterances.

        While paused the audio is counted (cue times follow the capture) but
        not decoded, stored nor checkpointed.
        """
        if self._segmenter is None:
            raise RuntimeError("LongSessionEngine.feed() before start()")
        with self._lock:
            seconds = len(pcm) / self.sample_rate
            if self._paused:
                self._position += seconds
                self.seconds_dropped_while_paused += seconds
                return []
            texts = self._segmenter.feed(pcm)
            self._position += seconds
            return self._record(texts)

    def flush(self) -> list[str]:
        """End of input: decode and record what the segmenter still holds."""
        if self._segmenter is None:
            return []
        with self._lock:
            return self._record(self._segmenter.flush())

    def _record(self, texts: list[str]) -> list[str]:
        pending, self._pending = self._pending, []
        done = []
        for seconds, text in pending:
            if not text:
                continue
            # Milliseconds, as subtitles keep them, so store and VTT agree.
            end = round(self._position, 3)
            start = round(max(0.0, end - seconds), 3)
            if self.sessions is not None:
                self.sessions.record_transcript(text, start=start, end=end, audio_seconds=seconds)
            if self._vtt is not None:
                self._vtt.write_cue(start, max(end, start + 0.001), text)
            self.utterances += 1
            done.append(text)
        return done

    def stop(self, reason: str = "stopped") -> dict[str, Any] | None:
        """Flush, stop the session (final checkpoint, closed in the store), close
        the subtitles and background work; returns the session's report."""
        with self._lock:
            texts = self.flush() if self._segmenter is not None else []
            self._last_flush = texts
            self.metrics.stop()
            if self._cleanup_handle is not None:
                self.app.monitor.remove_callback(self._cleanup_handle)
                self._cleanup_handle = None
            if self.sessions is not None:
                if self.session_id is not None:
                    if self._paused:
                        self.sessions.resume_session(self.session_id)
                    self.report = self.sessions.stop_session(self.session_id, reason=reason)
                self.sessions.close()
                self.sessions = None
            if self._vtt is not None:
                self._vtt.close()
                self._vtt = None
            self._segmenter = None
            return self.report

    @property
    def last_texts(self) -> list[str]:
        """Utterances finished by :meth:`stop`'s flush."""
        return list(getattr(self, "_last_flush", []))

    def close(self) -> None:
        """Release everything; a session still running is detached (recoverable)."""
        with self._lock:
            self.metrics.stop()
            if self._cleanup_handle is not None:
                self.app.monitor.remove_callback(self._cleanup_handle)
                self._cleanup_handle = None
            if self.sessions is not None:
                self.sessions.close()
                self.sessions = None
            if self._vtt is not None:
                self._vtt.abort()
                self._vtt = None
            if self._owns_app:
                self.app.close()

    def __enter__(self) -> LongSessionEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the document's long-session API --------------------------------------------
    def pause_long_session(self) -> None:
        """Finish the utterance in progress, then stop decoding until resumed."""
        with self._lock:
            if self._paused:
                raise RuntimeError("the long session is already paused")
            if self._segmenter is not None:
                self._record(self._segmenter.flush())
                self._segmenter = StreamingTranscriber(
                    self, max_utterance_seconds=self.app.config.max_utterance_seconds
                )
            if self.sessions is not None and self.session_id is not None:
                self.sessions.pause_session(self.session_id)
            self._paused = True

    def resume_long_session(self) -> None:
        with self._lock:
            if not self._paused:
                raise RuntimeError("the long session is not paused")
            if self.sessions is not None and self.session_id is not None:
                self.sessions.resume_session(self.session_id)
            self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def force_memory_cleanup(self) -> dict[str, Any]:
        """Drop cache entries down to the hottest, run the app's cleanup, collect.

        Registered as the memory monitor's HIGH-tier callback; safe to call
        any time. Temp files still being written are kept (see resources).
        """
        before = self.app.monitor.read().rss_bytes
        dropped = self.cache.cache.force_cleanup()
        self.app.resources.cleanup()
        collected = gc.collect()
        after = self.app.monitor.read().rss_bytes
        self.cleanups += 1
        return {
            "cache_entries_dropped": dropped,
            "gc_objects_collected": collected,
            "rss_before_mb": round(before / MiB, 1),
            "rss_after_mb": round(after / MiB, 1),
        }

    def get_long_session_status(self) -> dict[str, Any]:
        """Session, memory, cache and storage status as plain data."""
        reading = self.app.monitor.read()
        status: dict[str, Any] = {
            "enabled": self.settings.enable_long_sessions,
            "paused": self._paused,
            "utterances": self.utterances,
            "audio_seconds": round(self._position, 1),
            "memory": {
                "rss_mb": round(reading.rss_mib, 1),
                "system_percent": reading.system_percent,
                "tier": self.app.monitor.tier_for(reading).name.lower(),
                "cleanups": self.cleanups,
            },
            "cache": self.cache.stats(),
        }
        if self.sessions is not None and self.session_id is not None:
            status["session"] = self.sessions.get_session_status(self.session_id)
        if self.storage is not None:
            info = self.storage.get_storage_info()
            status["storage"] = {
                k: info[k] for k in ("path", "used_bytes", "usage_percent", "transcripts")
            }
        return status

    def get_stats(self) -> dict[str, Any]:
        """Engine statistics, long-session figures included."""
        return {
            "engine": type(self.app.engine).__name__,
            "utterances": self.utterances,
            "audio_seconds": round(self._position, 1),
            "seconds_dropped_while_paused": round(self.seconds_dropped_while_paused, 1),
            "long_session": self.get_long_session_status(),
            "metrics": self.metrics.summary(),
        }


def create_engine(
    config: Mapping[str, Any] | None = None,
    *,
    app: App | None = None,
    app_config: AppConfig | None = None,
) -> LongSessionEngine:
    """The document's factory: ``create_engine({"enable_long_sessions": True,
    "max_storage_mb": 1000, "model": "base", "data_dir": ...})``.

    ``app`` (or ``app_config``) supplies the speech engine and memory monitor;
    without one an app is created and closed with the engine. ``model`` picks
    faster-whisper of that size, which then needs ``app_config.model_path``.
    """
    settings = settings_from_config(config or {})
    owns = app is None
    if app is None:
        base = app_config or AppConfig()
        if settings.model is not None:
            base = base.replace(engine="whisper", model_size=settings.model)
        app = create_app(base)
    return LongSessionEngine(app, settings, owns_app=owns)


def clock_text(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


__all__ = [
    "EngineSettings",
    "LongSessionEngine",
    "clock_text",
    "create_engine",
    "settings_from_config",
]
