"""App configuration and the app factory (built like flask's tutorial app).

:class:`AppConfig` is a frozen dataclass holding every setting of the audio and
transcription pipeline; :func:`create_app` turns one into an :class:`App` that
wires the components together. Components receive their settings (and
injected collaborators such as the memory reader) as constructor arguments,
so they never read globals and do not know whether a CLI or a test built them.

Example::

    with create_app(AppConfig(phrases=("turn off the radio",))) as app:
        result = app.transcribe_file("speech.wav")
        print(result.text)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reference_app import faults
from reference_app.audio import (
    AudioSource,
    MicrophoneSource,
    StreamFactory,
    WavFileSource,
    convert_blocks,
    iter_blocks,
)
from reference_app.chunking import ChunkedProcessor, ChunkPolicy, ChunkResult, system_memory_percent
from reference_app.monitor import MemoryMonitor, MemoryReading, read_memory
from reference_app.recorders import FileRecorder, StreamingRecorder
from reference_app.resources import ResourceManager
from reference_app.ringbuffer import BufferTracker
from reference_app.transcription import (
    ENGINES,
    WHISPER_MODEL_MEMORY_MB,
    Engine,
    StreamingTranscriber,
    create_engine,
    memory_budget_mb,
)


@dataclass(frozen=True)
class AppConfig:
    """Every setting of the pipeline; defaults are the CLI's defaults."""

    # transcription
    engine: str = "pocketsphinx"
    grammar: Path | None = None
    phrases: tuple[str, ...] = ()
    model_path: Path | None = None
    model_size: str = "base"
    # chunking (seed 003)
    chunk_seconds: float = 30.0
    min_chunk_seconds: float = 2.0
    high_percent: float = 70.0
    critical_percent: float = 85.0
    pause_seconds: float = 1.0
    # capture
    device: int | str | None = None
    sample_rate: int = 16_000
    channels: int = 1
    block_seconds: float = 0.1
    queue_blocks: int = 64  # 6.4 s of audio at the default block size
    max_utterance_seconds: float = 15.0
    temp_dir: Path | None = None
    # monitoring
    monitor_interval: float = 5.0
    # faults switched on for this app (in addition to REFERENCE_APP_FAULTS)
    faults: frozenset[str] = frozenset()
    # injected collaborators (tests replace these; the CLI keeps the defaults)
    memory_reader: Callable[[], MemoryReading] = read_memory
    memory_percent: Callable[[], float] = system_memory_percent
    sleep: Callable[[float], None] = time.sleep
    stream_factory: StreamFactory | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        faults.validate(self.faults)

    def replace(self, **changes: Any) -> AppConfig:
        return dataclasses.replace(self, **changes)

    @property
    def chunk_policy(self) -> ChunkPolicy:
        return ChunkPolicy(
            chunk_seconds=self.chunk_seconds,
            min_chunk_seconds=min(self.min_chunk_seconds, self.chunk_seconds),
            high_percent=self.high_percent,
            critical_percent=self.critical_percent,
            pause_seconds=self.pause_seconds,
        )

    @property
    def memory_budget_mb(self) -> int:
        return memory_budget_mb(self.engine, self.model_size)


@dataclass(frozen=True)
class TranscriptResult:
    text: str
    chunks: list[ChunkResult]
    audio_seconds: float
    processing_seconds: float

    @property
    def real_time_factor(self) -> float:
        """Processing time over audio time (below 1: faster than real time)."""
        return self.processing_seconds / self.audio_seconds if self.audio_seconds else 0.0


class App:
    """The wired pipeline for one config. Close it (or use ``with``) to release everything."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.faults = config.faults
        self.resources = ResourceManager(config_faults=config.faults)
        self.tracker = BufferTracker(config_faults=config.faults)
        self.monitor = MemoryMonitor(
            interval=config.monitor_interval,
            high_percent=config.high_percent,
            critical_percent=config.critical_percent,
            max_rss_mb=config.memory_budget_mb,
            reader=config.memory_reader,
            config_faults=config.faults,
        )
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """The transcription engine, created on first use and reused after."""
        if self._engine is None:
            c = self.config
            self._engine = create_engine(
                c.engine,
                grammar=c.grammar,
                phrases=c.phrases,
                model_path=c.model_path,
                model_size=c.model_size,
                config_faults=c.faults,
            )
        return self._engine

    # -- sources ------------------------------------------------------------------
    def open_wav(self, path: str | os.PathLike[str]) -> WavFileSource:
        return WavFileSource(path)

    def microphone(self) -> MicrophoneSource:
        c = self.config
        return MicrophoneSource(
            sample_rate=c.sample_rate,
            channels=c.channels,
            device=c.device,
            block_frames=max(1, round(c.block_seconds * c.sample_rate)),
            queue_blocks=c.queue_blocks,
            stream_factory=c.stream_factory,
            config_faults=c.faults,
        )

    # -- components ---------------------------------------------------------------
    def chunked_processor(
        self, handler: Callable[[np.ndarray], str] | None = None
    ) -> ChunkedProcessor:
        """A chunked processor running ``handler`` (default: the engine) per chunk."""
        return ChunkedProcessor(
            handler or self.engine.transcribe,
            sample_rate=self.engine.sample_rate,
            policy=self.config.chunk_policy,
            memory_percent=self.config.memory_percent,
            sleep=self.config.sleep,
            monitor=self.monitor,
            cleanup_callbacks=[self.resources.cleanup],
            config_faults=self.faults,
        )

    def streaming_recorder(
        self,
        source: AudioSource,
        *,
        capacity_seconds: float = 30.0,
        max_seconds: float | None = None,
    ) -> StreamingRecorder:
        return StreamingRecorder(
            source,
            capacity_seconds=capacity_seconds,
            max_seconds=max_seconds,
            tracker=self.tracker,
            config_faults=self.faults,
        )

    def file_recorder(
        self,
        source: AudioSource,
        *,
        directory: str | os.PathLike[str] | None = None,
        max_seconds: float | None = None,
    ) -> FileRecorder:
        return FileRecorder(
            source,
            self.resources,
            directory=directory if directory is not None else self.config.temp_dir,
            max_seconds=max_seconds,
            config_faults=self.faults,
        )

    def streaming_transcriber(self) -> StreamingTranscriber:
        return StreamingTranscriber(
            self.engine, max_utterance_seconds=self.config.max_utterance_seconds
        )

    # -- use cases ----------------------------------------------------------------
    def pcm_blocks(self, source: AudioSource) -> Iterator[np.ndarray]:
        """``source`` converted to what the engine takes (16 kHz mono int16).

        A WAV file of another sample size (8, 24, 32-bit, float) is requantised
        to 16 bits, so it is dithered like resampled audio.
        """
        dither = None
        if isinstance(source, WavFileSource) and (source.info.bits != 16 or source.info.is_float):
            dither = True
        return convert_blocks(
            iter_blocks(source),
            source.sample_rate,
            source.channels,
            self.engine.sample_rate,
            dither=dither,
        )

    def transcribe_source(self, source: AudioSource) -> TranscriptResult:
        """Transcribe a finite source in chunks.

        Each chunk goes through the utterance segmenter rather than straight to
        the engine: decoding whole utterances is more accurate than decoding
        arbitrary 30 s cuts, and the segmenter's state carries across chunk
        boundaries, so a word cut by a boundary is still decoded whole.
        """
        engine = self.engine  # load the model before timing starts
        started = time.perf_counter()
        segmenter = self.streaming_transcriber()
        processor = self.chunked_processor(lambda pcm: " ".join(segmenter.feed(pcm)))
        chunks = list(processor.process(self.pcm_blocks(source)))
        texts = [c.text for c in chunks if c.text] + segmenter.flush()
        elapsed = time.perf_counter() - started
        return TranscriptResult(
            " ".join(texts), chunks, processor.stats.frames / engine.sample_rate, elapsed
        )

    def transcribe_file(self, path: str | os.PathLike[str]) -> TranscriptResult:
        with self.open_wav(path) as source:
            return self.transcribe_source(source)

    # -- lifetime -----------------------------------------------------------------
    def close(self) -> None:
        self.monitor.stop()
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self.resources.close()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def create_app(config: AppConfig | None = None, **overrides: Any) -> App:
    """Build an :class:`App`; keyword overrides replace fields of ``config``."""
    base = config or AppConfig()
    return App(base.replace(**overrides) if overrides else base)


# -- command line ------------------------------------------------------------------
def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by the commands that transcribe."""
    group = parser.add_argument_group("transcription")
    group.add_argument(
        "--engine",
        choices=ENGINES,
        default="pocketsphinx",
        help="speech engine (default: pocketsphinx, works offline)",
    )
    vocab = group.add_mutually_exclusive_group()
    vocab.add_argument(
        "--grammar",
        type=Path,
        metavar="FILE",
        help="JSGF grammar constraining what can be recognised (pocketsphinx)",
    )
    vocab.add_argument(
        "--phrase",
        action="append",
        default=[],
        metavar="TEXT",
        dest="phrases",
        help="a phrase to recognise; repeat for several (pocketsphinx, builds a grammar)",
    )
    group.add_argument(
        "--model-path",
        type=Path,
        metavar="DIR",
        help="local faster-whisper model directory (whisper engine; never downloaded)",
    )
    group.add_argument(
        "--model-size",
        choices=sorted(WHISPER_MODEL_MEMORY_MB),
        default="base",
        help="whisper model size, sets the memory budget (default: base)",
    )


def config_from_args(args: argparse.Namespace, **extra: Any) -> AppConfig:
    """An :class:`AppConfig` from the options of :func:`add_engine_arguments`."""
    return AppConfig(
        engine=args.engine,
        grammar=args.grammar,
        phrases=tuple(args.phrases),
        model_path=args.model_path,
        model_size=args.model_size,
        **extra,
    )


def positive_float(text: str) -> float:
    """argparse type: a number greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number greater than zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def device_arg(text: str) -> int | str:
    """argparse type: a PortAudio device index or name."""
    return int(text) if text.isdigit() else text
