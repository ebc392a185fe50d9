"""Relaying a hijacked API connection to a shim's attach socket, both ways.

The shim always speaks Docker's 8-byte framing; a client of a tty container
gets the payload alone, as Docker sends it.
"""

from __future__ import annotations

import socket
import threading

__all__ = ["relay"]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def relay(client: socket.socket, shim: socket.socket, *, tty: bool, stdin: bool,
          stdout: bool = True, stderr: bool = True) -> None:
    """Copy until the shim closes (the container ended) or the client goes away."""
    if stdin:
        threading.Thread(target=_copy_stdin, args=(client, shim), name="attach-stdin",
                         daemon=True).start()
    try:
        _copy_output(shim, client, tty=tty, stdout=stdout, stderr=stderr)
    except OSError:
        pass
    finally:
        for s in (shim, client):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        shim.close()


def _copy_stdin(client: socket.socket, shim: socket.socket) -> None:
    """The client's bytes to the shim, then the end of the container's stdin (StdinOnce)."""
    try:
        while True:
            data = client.recv(65536)
            if not data:
                break
            shim.sendall(data)
    except OSError:
        pass
    finally:
        try:
            shim.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _copy_output(shim: socket.socket, client: socket.socket, *, tty: bool, stdout: bool,
                 stderr: bool) -> None:
    """The shim's frames to the client (the payload alone for a tty), until one is cut."""
    while True:
        header = _recv_exact(shim, 8)
        if not header:
            return
        size = int.from_bytes(header[4:8], "big")
        payload = _recv_exact(shim, size) if size else b""
        if size and not payload:
            return
        kind = header[0]
        if (kind == 1 and not stdout) or (kind == 2 and not stderr):
            continue
        client.sendall(payload if tty else header + payload)
