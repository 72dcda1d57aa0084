"""Open file descriptors and sockets, read from ``/proc/self/fd`` (psutil elsewhere).

A descriptor is compared by number (pytest's capture points fds 1 and 2
elsewhere during a test, which is not a new descriptor) and described by what
it points to: a path, a pipe or anonymous inode, or a socket's addresses.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Any

from pytest_memwatch.resources.survivor import Resource, short_path

_FD_DIR = "/proc/self/fd"


def fd_targets() -> dict[int, str]:
    """Open descriptors and what each points to (``readlink`` of ``/proc/self/fd/N``)."""
    try:
        names = os.listdir(_FD_DIR)
    except OSError:
        return _fd_targets_psutil()
    out: dict[int, str] = {}
    for n in names:
        try:
            out[int(n)] = os.readlink(f"{_FD_DIR}/{n}")
        except (OSError, ValueError):
            # The listing's own descriptor, already closed by now.
            continue
    return out


def _fd_targets_psutil() -> dict[int, str]:
    try:
        import psutil

        proc = psutil.Process()
        out = {f.fd: f.path for f in proc.open_files() if f.fd >= 0}
        for c in proc.net_connections(kind="all"):
            if c.fd >= 0:
                out[c.fd] = "socket:"
        return out
    except Exception:  # no psutil, or not allowed to read this process
        return {}


def _addr(value: Any) -> str:
    if isinstance(value, tuple) and len(value) >= 2:
        host, port = value[0], value[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value) or "(unnamed)"


def _socket_info(fd: int) -> tuple[str, str]:
    """(what rules match, description) of a socket descriptor, read through a duplicate."""
    try:
        dup = os.dup(fd)
    except OSError:
        return "", "socket"
    try:
        s = socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return "", "socket"
    with s:
        if s.family == socket.AF_UNIX:
            proto = "unix"
        elif s.type == socket.SOCK_STREAM:
            proto = "tcp"
        elif s.type == socket.SOCK_DGRAM:
            proto = "udp"
        else:
            proto = s.family.name
        try:
            local = _addr(s.getsockname())
        except OSError:
            local = "?"
        try:
            peer = _addr(s.getpeername())
        except OSError:
            peer = None
        listening = False
        with contextlib.suppress(OSError, AttributeError):
            listening = bool(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    if peer:
        return peer, f"{proto} {local} -> {peer}"
    if listening:
        return local, f"{proto} listening on {local}"
    return local, f"{proto} {local}, not connected"


def describe_fd(fd: int, target: str) -> Resource:
    """A descriptor as a ``socket`` (peer or local address) or an ``fd`` (path or type)."""
    if target.startswith("socket:"):
        name, what = _socket_info(fd)
        return Resource(
            "socket",
            ("fd", fd, target),
            f"socket fd {fd} ({what})",
            names=(name, target) if name else (target,),
            signature=f"socket:{name}" if name and "->" in what else None,
        )
    # Pipes and anonymous inodes have no stable name to compare across a session.
    stable = target.startswith("/")
    return Resource(
        "fd",
        ("fd", fd, target),
        f"fd {fd} ({short_path(target) if stable else target})",
        names=(target,),
        signature=f"fd:{target}" if stable else None,
    )
