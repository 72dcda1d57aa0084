"""The soak's client load: concurrent loopback clients streaming speech, in a process of their own.

``python soak_clients.py URL AUDIO_DIR STATUS.json [CLIENTS]`` starts the
clients; each streams the playlist's files in real time, session after
session, and checks each transcript exactly. Every second, and once more at
the end, the counts go to ``STATUS.json`` (written atomically):
``{"sessions": n, "per_client": [...], "wrong": [...], "errors": [...],
"done": bool}``. Closing the process's standard input stops it: each client
finishes the file it is streaming, then the final status is written.

Why a separate process: the soak measures the service, and clients in the
same process would be measured with it. Their per-stream buffers (a whole
file converted and cut into frames, the client's socket buffers and JSON)
churn in their own thread's malloc arena, whose footprint keeps creeping for
minutes (free chunks pile up between long-lived ones) with nothing kept:
about +1.5 MiB a minute of RSS that was the clients', not the server's.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from pathlib import Path

from reference_app.service.client import stream_file

PLAYLIST = [
    ("sequence.wav", "please open the door and turn on the light turn off the radio "
     "close the window please call my mother tomorrow morning"),
    ("the_quick_brown_fox_jumps_over_the_lazy_dog.wav",
     "the quick brown fox jumps over the lazy dog"),
    ("send_a_message_to_john.wav", "send a message to john"),
    ("play_some_music.wav", "play some music"),
]  # fmt: skip


class Clients:
    """``count`` clients streaming the playlist to ``url`` until :meth:`stop`."""

    def __init__(self, url: str, audio_dir: Path, count: int) -> None:
        self.url = url
        self.audio_dir = audio_dir
        self.per_client = [0] * count
        self.wrong: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()

    async def _client(self, index: int) -> None:
        turn = index
        while not self._stop.is_set():
            name, expected = PLAYLIST[turn % len(PLAYLIST)]
            turn += 1
            try:
                result = await stream_file(self.audio_dir / name, self.url, pace=1.0, timeout=60)
            except Exception as exc:  # reported in the status file
                self.errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1)
                continue
            self.per_client[index] += 1
            if result.text != expected or result.errors:
                self.wrong.append(f"{name}: {result.text!r} {result.errors}")

    async def run(self) -> None:
        await asyncio.gather(*(self._client(i) for i in range(len(self.per_client))))

    def stop(self) -> None:
        self._stop.set()

    def status(self, *, done: bool) -> dict[str, object]:
        return {
            "sessions": sum(self.per_client),
            "per_client": list(self.per_client),
            "wrong": list(self.wrong),
            "errors": list(self.errors),
            "done": done,
        }


def write_status(path: Path, status: dict[str, object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(status), encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    url, audio_dir, status_path = argv[0], Path(argv[1]), Path(argv[2])
    clients = Clients(url, audio_dir, int(argv[3]) if len(argv) > 3 else 4)

    def stop_when_stdin_closes() -> None:
        # Standard input closed (or the parent gone): stop after the current files.
        sys.stdin.read()
        clients.stop()

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()

    async def report() -> None:
        while True:
            write_status(status_path, clients.status(done=False))
            await asyncio.sleep(1)

    async def run() -> None:
        reporter = asyncio.create_task(report())
        try:
            await clients.run()
        finally:
            reporter.cancel()

    asyncio.run(run())
    write_status(status_path, clients.status(done=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
