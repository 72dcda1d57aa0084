"""Child processes: this process's children, a zombie being one nobody waited for.

Read from ``/proc/self/task/*/children`` (psutil elsewhere); a process is keyed
by its pid and start time, so a pid reused later is not mistaken for it.
"""

from __future__ import annotations

import os
from typing import Any

from pytest_memwatch.resources.survivor import Resource, mask_digits


def proc_stat(pid: int) -> tuple[str, str, str] | None:
    """(state, start time, command name) from ``/proc/PID/stat``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    comm = data[data.find(b"(") + 1 : data.rfind(b")")].decode("utf-8", "replace")
    rest = data.rpartition(b")")[2].split()
    return rest[0].decode(), rest[19].decode(), comm


def _child_pids() -> set[int]:
    pids: set[int] = set()
    try:
        tids = os.listdir("/proc/self/task")
        for tid in tids:
            with open(f"/proc/self/task/{tid}/children", encoding="ascii") as f:
                pids.update(int(p) for p in f.read().split())
        return pids
    except (OSError, ValueError):
        pass
    try:
        import psutil

        return {p.pid for p in psutil.Process().children()}
    except Exception:  # no psutil: children cannot be listed here
        return set()


def process_keys() -> dict[tuple[Any, ...], int]:
    """Child processes by (pid, start time): a reused pid is another process."""
    out: dict[tuple[Any, ...], int] = {}
    for pid in _child_pids():
        stat = proc_stat(pid)
        out[("process", pid, stat[1] if stat else "")] = pid
    return out


def describe_process(pid: int, key: tuple[Any, ...]) -> Resource:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = " ".join(a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a)
    except OSError:
        cmdline = ""
    stat = proc_stat(pid)
    zombie = stat is not None and stat[0] == "Z"
    if not cmdline:
        cmdline = stat[2] if stat else "?"
    shown = cmdline if len(cmdline) <= 120 else cmdline[:117] + "..."
    state = ", exited but never waited for" if zombie else ""
    return Resource(
        "process",
        key,
        f"process {pid} ({shown}{state})",
        names=(cmdline,),
        signature=f"process:{mask_digits(cmdline)}",
    )
