"""daemon/_attach.py: the relay between a hijacked API connection and a shim's attach socket."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from rctr.daemon._attach import relay


def _frame(kind: int, data: bytes) -> bytes:
    return bytes([kind, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


_open: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def _run(tty: bool, stdin: bool, **kw: bool) -> tuple[socket.socket, socket.socket,
                                                      threading.Thread]:
    """The relay in a thread between a user's socket and a shim's (the relay closes the
    shim's; the API server closes the client's)."""
    daemon_side, user = socket.socketpair()
    shim_side, shim = socket.socketpair()
    _open.extend([daemon_side, user, shim])
    for s in (user, shim):
        s.settimeout(5)
    t = threading.Thread(target=relay, args=(daemon_side, shim_side),
                         kwargs={"tty": tty, "stdin": stdin, **kw})
    t.start()
    return user, shim, t


def test_output_framed_and_filtered_until_the_shim_closes() -> None:
    user, shim, t = _run(tty=False, stdin=False, stderr=False)
    shim.sendall(_frame(1, b"out") + _frame(2, b"err") + _frame(1, b"") + _frame(1, b"more"))
    shim.close()
    t.join(5)
    assert not t.is_alive()
    assert _read_all(user) == _frame(1, b"out") + _frame(1, b"") + _frame(1, b"more")


def test_a_tty_gets_the_payload_alone_and_stdin_goes_to_the_shim() -> None:
    user, shim, t = _run(tty=True, stdin=True)
    user.sendall(b"typed")
    user.shutdown(socket.SHUT_WR)
    assert _read_all(shim) == b"typed"  # the shim sees the end of stdin
    shim.sendall(_frame(1, b"echo"))
    shim.close()
    t.join(5)
    assert _read_all(user) == b"echo"


def test_a_truncated_frame_ends_the_relay() -> None:
    user, shim, t = _run(tty=False, stdin=False)
    shim.sendall(_frame(1, b"whole") + _frame(1, b"cut")[:-2])
    shim.shutdown(socket.SHUT_WR)
    t.join(5)
    assert not t.is_alive()
    assert _read_all(user) == _frame(1, b"whole")
