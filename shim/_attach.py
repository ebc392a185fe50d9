"""``attach.sock``: the container's output to every attached client, their input to stdin.

Each client gets its own output buffer; one that lets it grow past
``OUT_LIMIT`` is too slow (or gone) and is dropped, so it can never hold up
the container or the other clients (containerd drops slow fifo readers the
same way).  Everything here is non-blocking; the shim's poll loop drives it.
"""

from __future__ import annotations

import os
import socket

from ._io import frame

__all__ = ["AttachServer", "Client", "OUT_LIMIT"]

OUT_LIMIT = 1 << 20  # bytes of output a client may fall behind before it is dropped


class Client:
    __slots__ = ("sock", "fd", "out", "reading")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.out = bytearray()
        self.reading = True  # until the client half-closes

    def recv(self) -> bytes | None:
        """Input from the client: b"" at its end of input, None if nothing is there yet.

        Raises OSError if the connection broke."""
        try:
            return self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return None

    def flush(self) -> None:
        """Send what the socket takes now. Raises OSError if the client is gone."""
        while self.out:
            try:
                sent = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                return
            del self.out[:sent]

    def close(self) -> None:
        self.sock.close()


class AttachServer:
    """The listening socket and the clients attached to it."""

    def __init__(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.listener.bind(path)
        os.chmod(path, 0o600)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.fd = self.listener.fileno()
        self.clients: dict[int, Client] = {}

    def accept(self) -> Client | None:
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return None
        sock.set_inheritable(False)
        client = Client(sock)
        self.clients[client.fd] = client
        return client

    def broadcast(self, stream: int, data: bytes) -> list[Client]:
        """Queue one frame for every client; return the ones dropped for falling behind."""
        if not self.clients:
            return []
        packet = frame(stream, data)
        slow = []
        for client in self.clients.values():
            client.out += packet
            if len(client.out) > OUT_LIMIT:
                slow.append(client)
        for client in slow:
            self.drop(client)
        return slow

    def drop(self, client: Client) -> None:
        if self.clients.pop(client.fd, None) is not None:
            client.close()

    def pending(self) -> bool:
        return any(c.out for c in self.clients.values())

    def close(self) -> None:
        for client in list(self.clients.values()):
            self.drop(client)
        self.listener.close()
