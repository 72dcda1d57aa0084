"""A real microphone for machines without a sound card: ALSA's ``file`` plugin.

PortAudio (under sounddevice) reads the ALSA configuration once, when it is
initialised, so the capture has to happen in a process started with the
configuration in place: these helpers write ``$HOME/.asoundrc`` into a
temporary home (from ``shared/audio/asoundrc.template``'s recipe) whose
``default`` capture device reads a raw file of signed 16-bit little-endian mono
samples, and the tests run ``python -m reference_app`` with that ``HOME``.

A regular file is read as fast as the consumer asks (ALSA's ``null`` slave has
no clock), which suits ``record``. For ``live``, which must see audio arrive
in real time, :class:`PacedFeeder` makes the raw file a FIFO and writes into
it at the sample rate, looping the speech; ALSA's blocking reads then pace the
stream like a real microphone (the capture must use 100 ms blocks, the app's
default, see :meth:`PacedFeeder._run`).

Run as a script for the manual soak run::

    python tests/alsa_mic.py --home /tmp/mic --raw speech.raw -- \
        python -m reference_app live --minutes 10 --status-interval 30
"""

from __future__ import annotations

import argparse
import ctypes.util
import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ASOUNDRC_TEMPLATE = """\
# Capture from a raw file, discard playback (written by the reference app's tests).
pcm.!default {
  type plug
  slave.pcm "filein"
}
pcm.filein {
  type file
  slave.pcm "null"
  file "/dev/null"
  infile "@INFILE@"
  format "raw"
}
"""


def portaudio_missing() -> str | None:
    """Why PortAudio cannot be used here, or None if it can."""
    if ctypes.util.find_library("portaudio") is None:
        return "libportaudio2 is not installed (apt-get install libportaudio2)"
    return None


def write_asoundrc(home: Path, infile: Path) -> Path:
    """Make ``home/.asoundrc`` define a ``default`` capture device reading ``infile``."""
    home.mkdir(parents=True, exist_ok=True)
    rc = home / ".asoundrc"
    rc.write_text(ASOUNDRC_TEMPLATE.replace("@INFILE@", str(infile.resolve())))
    return rc


def mic_env(home: Path) -> dict[str, str]:
    """Environment for a child process whose default input device is the file device."""
    env = dict(os.environ)
    env["HOME"] = str(home)
    env.pop("ALSA_CONFIG_PATH", None)
    return env


class PacedFeeder:
    """Writes raw int16 audio into a FIFO at ``sample_rate``, looping, until stopped.

    PortAudio opens and closes every device while it initialises, which breaks
    the pipe; the feeder then reopens and goes on, so the capture that follows
    gets a fresh, paced stream.
    """

    def __init__(
        self,
        fifo: Path,
        pcm: np.ndarray,
        sample_rate: int = 16_000,
        *,
        stall_after: float | None = None,
    ) -> None:
        """``stall_after=S``: after S seconds of audio to one reader, stop writing
        but keep the pipe open, like a device that hangs (its driver's reads
        block forever)."""
        self.fifo = fifo
        self.stall_after = stall_after
        self.stalled = threading.Event()
        self.data = np.ascontiguousarray(pcm, dtype="<i2").tobytes()
        self.rate = sample_rate
        self.bytes_written = 0
        self._stop = threading.Event()
        if fifo.exists():
            fifo.unlink()
        os.mkfifo(fifo)
        self._thread = threading.Thread(target=self._run, name="paced-feeder", daemon=True)

    def start(self) -> PacedFeeder:
        self._thread.start()
        return self

    def _run(self) -> None:
        # Write exactly one capture block (the app's default 100 ms) at a time.
        # ALSA's file plugin reads one period per read() and does not retry a
        # short read from a pipe, so pieces must be whole periods: measured here,
        # 100 ms pieces gave a bit-exact, contiguous stream at 16 kHz, while 50 ms
        # or 128 ms pieces gave duplicated and missing stretches.
        step = self.rate // 10 * 2
        while not self._stop.is_set():
            # Every reader starts at the beginning: what went into the pipe of a
            # reader that only probed the device is lost with that pipe.
            pos = 0
            try:
                with open(self.fifo, "wb", buffering=0) as f:
                    t0 = time.monotonic()
                    sent = 0
                    while not self._stop.is_set():
                        stall = self.stall_after
                        if stall is not None and sent >= stall * 2 * self.rate:
                            self.stalled.set()
                            self._stop.wait()
                            break
                        start = pos % len(self.data)
                        piece = self.data[start : start + step]
                        f.write(piece)
                        pos += len(piece)
                        sent += len(piece)
                        self.bytes_written += len(piece)
                        delay = t0 + sent / (2 * self.rate) - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
            except BrokenPipeError:
                continue
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    continue
                raise

    def stop(self) -> None:
        self._stop.set()
        # A writer blocked in open() waits for a reader: be that reader.
        try:
            fd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            fd = None
        self._thread.join(5)
        if fd is not None:
            os.close(fd)
        self.fifo.unlink(missing_ok=True)


def _main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--raw", type=Path, required=True, help="raw s16le mono file to loop")
    parser.add_argument("--rate", type=int, default=16_000)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    pcm = np.fromfile(args.raw, dtype="<i2")
    fifo = args.home / "mic.fifo"
    write_asoundrc(args.home, fifo)
    feeder = PacedFeeder(fifo, pcm, args.rate).start()
    try:
        return subprocess.call(command, env=mic_env(args.home))
    finally:
        feeder.stop()


if __name__ == "__main__":
    sys.exit(_main())
