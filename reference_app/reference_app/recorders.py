"""Recorders: streaming (in memory) and file-based (temp WAV) capture (seed 004).

Both run a capture thread that pulls blocks from an
:class:`~reference_app.audio.AudioSource` and hands them to a sink, and both
stop it the same way: signal, join, close the source.

- :class:`StreamingRecorder` writes into a :class:`~reference_app.ringbuffer.RingBuffer`,
  so memory is bounded by the buffer's capacity whatever the recording length.
- :class:`FileRecorder` writes a temp WAV file registered with the
  :class:`~reference_app.resources.ResourceManager`. The file is deleted on
  stop (after its audio was optionally loaded), on error, and at exit, unless
  ``stop(keep_as=...)`` moves it atomically to its final name: the temp file is
  created in the destination's directory so :func:`os.replace` never crosses a
  file system, and a reader never sees a half-written WAV.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from reference_app import faults
from reference_app.audio import (
    AudioError,
    AudioSource,
    CaptureStats,
    EndOfStream,
    MicrophoneSource,
    WavFileSource,
    WavWriter,
    iter_blocks,
)
from reference_app.resources import ResourceManager
from reference_app.ringbuffer import BufferTracker, OverflowPolicy, RingBuffer

log = logging.getLogger(__name__)

COMPONENT = "recorders"
faults.register(
    "temp_wav_kept",
    COMPONENT,
    "temp WAV files are never deleted nor registered for cleanup, and the descriptor "
    "from mkstemp is never closed: one file on disk and one open fd per recording",
)
faults.register(
    "capture_thread_not_joined",
    COMPONENT,
    "StreamingRecorder.stop() neither signals nor joins its capture thread nor closes the "
    "source: with a live source every recording leaves a thread running, holding its ring buffer",
)


@dataclass(frozen=True)
class Recording:
    frames: int
    sample_rate: int
    channels: int
    path: Path | None = None  # where the WAV was kept, if it was
    audio: np.ndarray | None = None  # float32 (frames, channels), if loaded
    capture: CaptureStats | None = None  # microphone statistics, if from a microphone

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


class _CaptureThread(threading.Thread):
    """Pulls blocks from a source into ``sink`` until stopped, exhausted or ``max_frames``."""

    def __init__(
        self,
        source: AudioSource,
        sink: Callable[[np.ndarray], object],
        max_frames: int | None,
        name: str,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.source = source
        self.sink = sink
        self.max_frames = max_frames
        self.frames = 0
        self.stop_event = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                try:
                    block = self.source.read(timeout=0.1)
                except EndOfStream:
                    break
                if block is None:
                    continue
                if self.max_frames is not None:
                    block = block[: self.max_frames - self.frames]
                self.sink(block)
                self.frames += len(block)
                if self.max_frames is not None and self.frames >= self.max_frames:
                    break
        except BaseException as exc:  # reported by stop() on the caller's thread
            self.error = exc
        finally:
            self.done.set()


def _capture_stats(source: AudioSource) -> CaptureStats | None:
    return source.stats() if isinstance(source, MicrophoneSource) else None


class _Capturing:
    """What both recorders share: a capture thread and the frames it took."""

    _thread: _CaptureThread | None
    _frames_done: int

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the source ends or ``max_seconds`` is reached; True if it did."""
        return self._thread is None or self._thread.done.wait(timeout)

    @property
    def frames_captured(self) -> int:
        return self._frames_done if self._thread is None else self._thread.frames


class StreamingRecorder(_Capturing):
    """Captures into a ring buffer in memory.

    Example::

        with StreamingRecorder(SyntheticSource("tone", seconds=1.0)) as rec:
            rec.wait()
        audio = rec.read()
    """

    def __init__(
        self,
        source: AudioSource,
        *,
        capacity_seconds: float = 30.0,
        policy: OverflowPolicy | str = OverflowPolicy.DROP_OLDEST,
        max_seconds: float | None = None,
        tracker: BufferTracker | None = None,
        config_faults: Iterable[str] = (),
    ) -> None:
        self.source = source
        self.buffer = RingBuffer(
            max(1, round(capacity_seconds * source.sample_rate)),
            channels=source.channels,
            dtype=np.float32,
            policy=policy,
            tracker=tracker,
        )
        self._max_frames = None if max_seconds is None else round(max_seconds * source.sample_rate)
        self._leave_thread = faults.is_enabled("capture_thread_not_joined", config_faults)
        self._thread: _CaptureThread | None = None
        self._frames_done = 0  # frames of the last finished capture

    def start(self) -> None:
        if self._thread is not None:
            return
        self.source.start()
        self._thread = _CaptureThread(
            self.source, self.buffer.write, self._max_frames, "streaming-recorder"
        )
        self._thread.start()

    def read(self, n: int | None = None) -> np.ndarray:
        """Remove and return up to ``n`` captured frames (all if None)."""
        return self.buffer.read(n)

    def stop(self) -> Recording:
        """Stop capturing; what was captured stays readable in :attr:`buffer`."""
        thread, self._thread = self._thread, None
        if thread is None:
            return Recording(0, self.source.sample_rate, self.source.channels)
        self._frames_done = thread.frames
        if self._leave_thread:
            # The fault: the thread is forgotten, still reading the source into the buffer.
            return Recording(thread.frames, self.source.sample_rate, self.source.channels)
        thread.stop_event.set()
        thread.join()
        self.source.close()
        self.buffer.close()
        if thread.error is not None:
            raise thread.error
        return Recording(
            thread.frames,
            self.source.sample_rate,
            self.source.channels,
            capture=_capture_stats(self.source),
        )

    def __enter__(self) -> StreamingRecorder:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class FileRecorder(_Capturing):
    """Captures into a temp WAV file that is always cleaned up unless kept.

    Example::

        rec = FileRecorder(mic, resources, directory=out.parent, max_seconds=10)
        rec.start()
        rec.wait(timeout=15)
        rec.stop(keep_as=out)   # atomic rename; otherwise the temp file is deleted
    """

    def __init__(
        self,
        source: AudioSource,
        resources: ResourceManager,
        *,
        directory: str | os.PathLike[str] | None = None,
        max_seconds: float | None = None,
        config_faults: Iterable[str] = (),
    ) -> None:
        self.source = source
        self.resources = resources
        self.directory = None if directory is None else Path(directory)
        self._max_frames = None if max_seconds is None else round(max_seconds * source.sample_rate)
        self._keep_temp = faults.is_enabled("temp_wav_kept", config_faults)
        self._thread: _CaptureThread | None = None
        self._frames_done = 0  # frames of the last finished capture
        self._file: BinaryIO | None = None
        self._writer: WavWriter | None = None
        self.temp_path: Path | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        fd, name = tempfile.mkstemp(prefix=".recording-", suffix=".wav.tmp", dir=self.directory)
        self.temp_path = Path(name)
        if self._keep_temp:
            # The classic bug: reopen by name, forget mkstemp's descriptor, and
            # never hand the file to the resource manager.
            self._file = open(name, "wb")  # noqa: SIM115 - closed in _close_file()
        else:
            # In use until stop/abort: a memory-pressure cleanup meanwhile must
            # not delete the file the capture thread is writing.
            self.resources.add_temp_file(name, in_use=True)
            self._file = os.fdopen(fd, "wb")
        try:
            self._writer = WavWriter(self._file, self.source.sample_rate, self.source.channels)
            self.source.start()
        except BaseException:
            self._discard()
            raise
        self._thread = _CaptureThread(
            self.source, self._writer.write, self._max_frames, "file-recorder"
        )
        self._thread.start()

    def _close_file(self) -> None:
        if self._writer is not None and self._file is not None and not self._file.closed:
            self._writer.close()
        if self._file is not None:
            self._file.close()
        self._file = None

    def _discard(self) -> None:
        """Error path: close and delete the temp file."""
        try:
            self._close_file()
        finally:
            if self.temp_path is not None and not self._keep_temp:
                self.resources.delete_temp_file(self.temp_path)

    def stop(
        self, keep_as: str | os.PathLike[str] | None = None, *, load: bool = False
    ) -> Recording:
        """Stop; keep the WAV at ``keep_as`` (atomic rename) or load and delete it."""
        thread, self._thread = self._thread, None
        if thread is None:
            raise RuntimeError("FileRecorder.stop() called before start()")
        thread.stop_event.set()
        thread.join()
        self._frames_done = thread.frames
        self.source.close()
        capture = _capture_stats(self.source)
        if thread.error is not None:
            self._discard()
            raise thread.error
        assert self.temp_path is not None and self._writer is not None
        frames = self._writer.frames_written
        try:
            self._close_file()
            if frames == 0:
                raise AudioError("no audio was captured")
            if keep_as is not None:
                target = Path(keep_as)
                os.replace(self.temp_path, target)
                self.resources.release_temp_file(self.temp_path)
                return Recording(
                    frames, self.source.sample_rate, self.source.channels, target, capture=capture
                )
            audio = None
            if load:
                with WavFileSource(self.temp_path) as wav:
                    audio = np.concatenate(list(iter_blocks(wav)))
            return Recording(
                frames, self.source.sample_rate, self.source.channels, audio=audio, capture=capture
            )
        finally:
            if not self._keep_temp and (keep_as is None or self.temp_path.exists()):
                self.resources.delete_temp_file(self.temp_path)

    def abort(self) -> None:
        """Stop without keeping anything (error paths)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.stop_event.set()
            thread.join()
        self.source.close()
        self._discard()

    def __enter__(self) -> FileRecorder:
        self.start()
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        if self._thread is not None:
            self.abort()
