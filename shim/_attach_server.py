"""``attach.sock``: the container's output to every attached client, their input to stdin.

Each client gets its own output buffer.  A client that lets it grow past
``OUT_LIMIT`` holds the container's output back (the shim stops reading the
pipes, so the container blocks on write, as it does under ``docker attach``),
but only while it keeps reading: one that sends nothing for ``STALL_SECONDS``
while behind is dropped, so a client that never reads cannot hold up the
container or the other clients for long.  ``HARD_LIMIT`` bounds a buffer when
there is nothing left to hold back (the init has exited and its pipes drain).
Everything here is non-blocking; the shim's poll loop drives it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from ._io import frame
from ._sockets import listen_unix

__all__ = ["AttachServer", "Client", "OUT_LIMIT", "HARD_LIMIT", "STALL_SECONDS"]

OUT_LIMIT = 1 << 20  # bytes queued for a client before the container's output is held back
HARD_LIMIT = 4 * OUT_LIMIT  # bytes queued for a client before it is dropped at once
STALL_SECONDS = 5.0  # how long a client that is behind may send nothing before it is dropped


class Client:
    __slots__ = ("sock", "fd", "out", "reading", "last_progress")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.out = bytearray()
        self.reading = True  # until the client half-closes
        self.last_progress = time.monotonic()  # when it last took output, or had none waiting

    def recv(self) -> bytes | None:
        """Input from the client: b"" at its end of input, None if nothing is there yet.

        Raises OSError if the connection broke."""
        try:
            return self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return None

    @property
    def behind(self) -> bool:
        """So far behind that the container's output should be held back for it."""
        return len(self.out) > OUT_LIMIT

    def flush(self) -> int:
        """Send what the socket takes now; how many bytes. Raises OSError if the client is gone."""
        total = 0
        while self.out:
            try:
                sent = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                break
            del self.out[:sent]
            total += sent
            self.last_progress = time.monotonic()
        return total

    def close(self) -> None:
        self.sock.close()


class AttachServer:
    """The listening socket and the clients attached to it."""

    def __init__(self, path: str) -> None:
        self.listener = listen_unix(path, 64)
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
        """Queue one frame for every client; return the ones dropped for holding too much."""
        if not self.clients:
            return []
        packet = frame(stream, data)
        now = time.monotonic()
        for client in self.clients.values():
            if not client.out:
                client.last_progress = now  # the stall clock starts when output waits
            client.out += packet
        return self._drop_where(lambda c: len(c.out) > HARD_LIMIT)

    def backlogged(self) -> bool:
        """Whether some client is so far behind that the output should be held back."""
        return any(c.behind for c in self.clients.values())

    def drop_stalled(self, now: float) -> list[Client]:
        """Drop the clients that are behind and have taken nothing for ``STALL_SECONDS``."""
        return self._drop_where(
            lambda c: c.behind and now - c.last_progress >= STALL_SECONDS)

    def next_stall(self) -> float | None:
        """When the earliest client that is behind would count as stalled, if any is."""
        times = [c.last_progress + STALL_SECONDS for c in self.clients.values() if c.behind]
        return min(times, default=None)

    def _drop_where(self, condition: Callable[[Client], bool]) -> list[Client]:
        gone = [c for c in self.clients.values() if condition(c)]
        for client in gone:
            self.drop(client)
        return gone

    def drop(self, client: Client) -> None:
        if self.clients.pop(client.fd, None) is not None:
            client.close()

    def pending(self) -> bool:
        return any(c.out for c in self.clients.values())

    def close(self) -> None:
        for client in list(self.clients.values()):
            self.drop(client)
        self.listener.close()
