"""Streaming and file recorders: capture, bounded memory, temp files always cleaned."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from reference_app.audio import AudioError, EndOfStream, SyntheticSource, WavFileSource, iter_blocks
from reference_app.config import App
from reference_app.recorders import FileRecorder, StreamingRecorder
from reference_app.resources import ResourceManager
from wavtools import dominant_frequency


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".recording-"))


def test_streaming_recorder_captures_into_ring(make_app: Callable[..., App]) -> None:
    app = make_app()
    src = SyntheticSource("tone", seconds=1.0, frequency=300, block_frames=1000)
    with app.streaming_recorder(src, capacity_seconds=2.0) as rec:
        assert rec.wait(timeout=10)
    audio = rec.read()
    assert audio.shape == (16000, 1)
    assert dominant_frequency(audio[:, 0], 16000) == pytest.approx(300, abs=2)
    assert app.tracker.info().buffer_count == 0, "stop() untracks the ring's storage"


def test_streaming_recorder_memory_bounded_by_capacity() -> None:
    src = SyntheticSource("noise", seconds=5.0, block_frames=1600)
    rec = StreamingRecorder(src, capacity_seconds=0.5)
    rec.start()
    assert rec.wait(timeout=10)
    rec.stop()
    assert len(rec.buffer) == 8000 and rec.buffer.stats.dropped == 80000 - 8000
    assert rec.frames_captured == 80000


def test_streaming_recorder_max_seconds_and_thread_joined() -> None:
    src = SyntheticSource("tone", seconds=None, realtime=True)  # endless, like a microphone
    before = threading.active_count()
    rec = StreamingRecorder(src, max_seconds=0.2)
    rec.start()
    assert rec.wait(timeout=5)
    recording = rec.stop()
    assert recording.frames == 3200
    assert threading.active_count() == before


def test_streaming_recorder_stop_on_endless_source_joins() -> None:
    src = SyntheticSource("tone", seconds=None, realtime=True)
    before = threading.active_count()
    rec = StreamingRecorder(src)
    rec.start()
    rec.stop()
    assert threading.active_count() == before
    with pytest.raises(EndOfStream):  # the source was closed
        src.read()


def test_file_recorder_load_then_delete(tmp_path: Path) -> None:
    with ResourceManager() as resources:
        src = SyntheticSource("tone", seconds=0.5, frequency=500, sample_rate=8000, channels=2)
        rec = FileRecorder(src, resources, directory=tmp_path)
        rec.start()
        assert rec.temp_path is not None and rec.temp_path in resources.temp_files
        assert rec.wait(timeout=10)
        recording = rec.stop(load=True)
        assert recording.audio is not None and recording.audio.shape == (4000, 2)
        assert dominant_frequency(recording.audio[:, 0], 8000) == pytest.approx(500, abs=3)
        assert recording.path is None
        assert leftovers(tmp_path) == [] and resources.temp_files == frozenset()


def test_file_recorder_keep_as_is_atomic_rename(tmp_path: Path) -> None:
    out = tmp_path / "take.wav"
    with ResourceManager() as resources:
        rec = FileRecorder(
            SyntheticSource("tone", seconds=2.0), resources, directory=tmp_path, max_seconds=0.75
        )
        rec.start()
        assert rec.wait(timeout=10)
        recording = rec.stop(keep_as=out)
    assert recording.path == out and recording.seconds == 0.75
    with WavFileSource(out) as wav:
        assert wav.info.frames == 12000 and wav.sample_rate == 16000
        assert np.abs(np.concatenate(list(iter_blocks(wav)))).max() == pytest.approx(0.5, abs=1e-3)
    assert out.exists() and leftovers(tmp_path) == []


def test_file_recorder_deletes_temp_file_on_error(tmp_path: Path) -> None:
    class Failing(SyntheticSource):
        def read(self, timeout: float | None = None) -> np.ndarray | None:
            if self._pos >= 3200:
                raise AudioError("device unplugged")
            return super().read(timeout)

    with ResourceManager() as resources:
        rec = FileRecorder(Failing("tone", seconds=1.0), resources, directory=tmp_path)
        rec.start()
        rec.wait(timeout=10)
        with pytest.raises(AudioError, match="device unplugged"):
            rec.stop(keep_as=tmp_path / "never.wav")
    assert leftovers(tmp_path) == [] and not (tmp_path / "never.wav").exists()


def test_file_recorder_with_block_error_aborts(tmp_path: Path) -> None:
    with (
        ResourceManager() as resources,
        pytest.raises(KeyboardInterrupt),
        FileRecorder(
            SyntheticSource("tone", seconds=None, realtime=True), resources, directory=tmp_path
        ),
    ):
        assert len(leftovers(tmp_path)) == 1
        raise KeyboardInterrupt
    assert leftovers(tmp_path) == []


def test_temp_file_removed_at_exit_even_if_never_stopped(
    tmp_path: Path, run_cli: Callable[..., object]
) -> None:
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        f"""
        from reference_app.config import create_app
        from reference_app.audio import SyntheticSource
        app = create_app(temp_dir={str(tmp_path)!r})
        rec = app.file_recorder(SyntheticSource("tone", seconds=None, realtime=True))
        rec.start()
        print(rec.temp_path)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).name.startswith(".recording-")
    assert leftovers(tmp_path) == []


@pytest.mark.no_leaks(warmup=1, runs=4)
def test_file_recorder_repeated_leaves_no_files_or_fds() -> None:
    # A TemporaryDirectory rather than tmp_path: pytest's per-run fixture state
    # would show up in the repeated measurement.
    with tempfile.TemporaryDirectory() as name, ResourceManager() as resources:
        for _ in range(3):
            rec = FileRecorder(SyntheticSource("tone", seconds=0.2), resources, directory=name)
            rec.start()
            rec.wait(timeout=10)
            rec.stop()
        assert leftovers(Path(name)) == []


@pytest.mark.no_leaks(warmup=1, runs=4)
def test_streaming_recorder_repeated_leaves_no_threads() -> None:
    for _ in range(3):
        rec = StreamingRecorder(
            SyntheticSource("tone", seconds=None, realtime=True), capacity_seconds=1.0
        )
        rec.start()
        rec.stop()


def test_memory_pressure_cleanup_keeps_a_recording_in_progress(
    make_app: Callable[..., App], tmp_path: Path
) -> None:
    # High memory while a file is being transcribed: the chunked processor runs
    # the app's cleanup (the resource manager's) before each chunk.
    app = make_app(memory_percent=lambda: 80.0, pause_seconds=0.0, chunk_seconds=0.5)
    mic = SyntheticSource("tone", seconds=None, realtime=True, frequency=440)
    recorder = app.file_recorder(mic, directory=tmp_path, max_seconds=1.0)
    recorder.start()
    assert recorder.temp_path is not None and recorder.temp_path.exists()
    processor = app.chunked_processor(lambda pcm: "")
    list(processor.process(iter([np.zeros(16000, np.int16)] * 3)))
    assert processor.stats.cleanups >= 3
    assert recorder.temp_path.exists(), "the cleanup deleted the WAV being written"
    assert app.resources.info().files_in_use == 1
    assert recorder.wait(timeout=10)
    out = tmp_path / "kept.wav"
    recording = recorder.stop(keep_as=out)
    assert recording.frames == 16000
    with WavFileSource(out) as wav:
        assert wav.info.frames == 16000
    assert leftovers(tmp_path) == [] and app.resources.info().files_in_use == 0


def test_finished_temp_files_go_at_the_next_cleanup_and_in_use_ones_at_close(
    tmp_path: Path,
) -> None:
    resources = ResourceManager()
    busy = resources.add_temp_file(tmp_path / "busy.tmp", in_use=True)
    idle = resources.add_temp_file(tmp_path / "idle.tmp")
    busy.write_bytes(b"x")
    idle.write_bytes(b"y")
    resources.cleanup()
    assert busy.exists() and not idle.exists()
    resources.done_with(busy)
    resources.cleanup()
    assert not busy.exists()
    again = resources.add_temp_file(tmp_path / "again.tmp", in_use=True)
    again.write_bytes(b"z")
    resources.close()  # the final cleanup: nothing survives it
    assert not again.exists()
