"""``python -m rctr.shim --zygote SOCKET --ready-fd N``: forks shims that are already loaded.

A shim is a Python process that lives as long as its container.  Started
from scratch, each one pays for an interpreter start-up and its imports
(about 18 ms) and keeps its own copy of every module (about 5 MiB).  The
zygote imports the shim (and the in-process runtime) once, freezes those
objects out of the garbage collector's reach, and forks a shim per request:
the child shares the zygote's pages until it writes to them, so a running
shim costs about half the memory, and starts in a millisecond or two.

Protocol (the daemon's side is ``rctr.daemon._shimctl``), on a unix stream
socket in the user's run directory (0600): the daemon connects and sends one
JSON line ``{"dir": STATE_DIR, "token": T}`` with the shim's ready fd
attached (SCM_RIGHTS).  The zygote answers
``{"ok": true}`` once the shim is forked (the shim then speaks on its ready
fd exactly as one started by ``python -m rctr.shim`` does), or
``{"stale": true}`` when ``T`` is not its own token — rctr was reinstalled,
or the daemon lives in other namespaces — and then exits, so the daemon
starts a fresh one.  The shim is forked twice and calls ``setsid``: it is
nobody's child and leads its own session, like a shim started directly, and
outlives both the zygote and the daemon.
"""

from __future__ import annotations

import array
import gc
import json
import os
import socket

from rctr.core.zygote import MAX_MESSAGE, code_token

from ._sockets import listen_unix

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rctr.core.zygote import SpawnAnswer, SpawnRequest, ZygoteReady

__all__ = ["serve"]


def serve(sock_path: str, ready_fd: int, check_every: float = 60.0) -> int:
    """Load the shim, listen on ``sock_path``, say so on ``ready_fd``, fork shims until
    stale, or until ``sock_path`` is no longer ours (the run directory was wiped, or
    another zygote took the path): then nobody can reach this one, and it ends."""
    from rctr.core.linux import set_name

    set_name("rctr-zygote")
    _preload()
    token = code_token()
    listener = listen_unix(sock_path, 64)
    bound = os.stat(sock_path).st_ino
    ready: ZygoteReady = {"pid": os.getpid(), "token": token}
    os.write(ready_fd, json.dumps(ready).encode() + b"\n")
    os.close(ready_fd)
    gc.collect()
    gc.freeze()  # what is loaded now is never scanned again: the pages stay shared
    listener.settimeout(check_every)
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if not _still_ours(sock_path, bound):
                return 0
            continue
        with conn:
            if not _serve_one(conn, listener, token):
                _unlink_if_ours(sock_path, bound)
                return 0


def _preload() -> None:
    """Everything a shim imports on its way, so a forked shim imports nothing."""
    import rctr.core.linux  # noqa: F401
    import rctr.core.proc  # noqa: F401
    import rctr.netstack  # noqa: F401 - the container's network, for most containers
    import rctr.rootless  # noqa: F401 - the in-process runtime's create, in the creator
    from rctr.shim import (  # noqa: F401
        _attach_server, _create, _exit, _io, _lifecycle, _request, _serve, _stdio)


def _still_ours(path: str, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False


def _unlink_if_ours(path: str, inode: int) -> None:
    """A replacement may already listen on the path: leave its socket alone."""
    if _still_ours(path, inode):
        try:
            os.unlink(path)
        except OSError:
            pass


def _serve_one(conn: socket.socket, listener: socket.socket, token: str) -> bool:
    """One request; False when this zygote is stale and must end."""
    conn.settimeout(10)
    fds: list[int] = []
    try:
        data, fds = _receive(conn)
        request: SpawnRequest = json.loads(data)
        if not isinstance(request, dict):
            raise ValueError("the request must be a JSON object")
        if request.get("token") != token:
            _answer(conn, {"stale": True})
            return False
        if len(fds) != 1 or not isinstance(request.get("dir"), str):
            raise ValueError("expected a state directory and one ready fd")
        _fork_shim(request["dir"], fds[0], conn, listener)
        _answer(conn, {"ok": True})
    except (OSError, ValueError) as exc:
        _answer(conn, {"error": f"{type(exc).__name__}: {exc}"})
    finally:
        for fd in fds:
            os.close(fd)
    return True


def _receive(conn: socket.socket) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    data, ancdata, _flags, _ = conn.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(4 * fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    while not data.endswith(b"\n") and len(data) < MAX_MESSAGE:
        chunk = conn.recv(MAX_MESSAGE)
        if not chunk:
            break
        data += chunk
    return data, list(fds)


def _answer(conn: socket.socket, message: SpawnAnswer) -> None:
    try:
        conn.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        pass  # the daemon gave up on us; the shim, if forked, reports on its ready fd


def _fork_shim(state_dir: str, ready_fd: int, conn: socket.socket,
               listener: socket.socket) -> None:
    """Fork twice: the shim is reparented at once and never the zygote's zombie."""
    middle = os.fork()
    if middle == 0:  # pragma: no cover - runs in the forked children
        code = 1
        try:
            if os.fork() == 0:
                conn.close()
                listener.close()
                os.setsid()
                code = _become_shim(state_dir, ready_fd)
            else:
                code = 0
        finally:
            os._exit(code)
    os.waitpid(middle, 0)


def _become_shim(state_dir: str, ready_fd: int) -> int:  # pragma: no cover - in the child
    from rctr.shim._lifecycle import main

    try:
        return main([state_dir, "--ready-fd", str(ready_fd)])
    except BaseException:  # noqa: BLE001, B036 - a forked child must not return into the zygote
        return 1
