"""A small Docker Engine API client over a unix socket, on the standard library.

Why not docker-py or requests: the CLI's start-up time matters, and the API
needs only four shapes of exchange, all here: JSON in and out, a stream of
JSON messages (pull progress, events), a raw byte stream (logs, archives),
and a hijacked connection (attach, exec start) where the socket is used both
ways after the HTTP response head.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode

__all__ = [
    "API_VERSION",
    "APIError",
    "Client",
    "ConnectionFailed",
    "Hijacked",
    "UnixHTTPConnection",
    "iter_frames",
    "iter_json",
    "q",
    "qi",
    "socket_path_from_host",
]

API_VERSION = "1.41"
STDIN, STDOUT, STDERR = 0, 1, 2


class APIError(Exception):
    """The daemon answered with an error status; ``message`` is Docker's ``{"message": …}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404


class ConnectionFailed(Exception):
    """The socket is missing or nobody listens on it."""

    def __init__(self, path: str, error: OSError) -> None:
        super().__init__(f"cannot connect to {path}: {error.strerror or error}")
        self.path = path
        self.error = error


def socket_path_from_host(host: str) -> str:
    """``unix:///run/x.sock`` (or a bare path) to the socket's path."""
    if host.startswith("unix://"):
        return host[len("unix://"):]
    if host.startswith("/"):
        return host
    raise ValueError(f"unsupported host {host!r}: only unix:///path sockets are supported")


def q(value: str) -> str:
    """Quote one path segment (a name, a reference with ``/`` or ``:``)."""
    return quote(value, safe="")


def qi(name: str) -> str:
    """Quote an image reference for a path: ``/`` and ``:`` stay, as docker's clients send them
    (the daemon routes ``/images/{name:.*}/json``)."""
    return quote(name, safe="/:@")


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTPConnection whose transport is a unix stream socket."""

    def __init__(self, path: str, timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise ConnectionFailed(self.socket_path, exc) from exc
        self.sock = sock


def _error_message(status: int, reason: str, body: bytes) -> str:
    try:
        data = json.loads(body)
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])
    except ValueError:
        pass
    text = body.decode("utf-8", "replace").strip()
    return text or f"{status} {reason}"


def iter_json(read1: Callable[[int], bytes]) -> Iterator[Any]:
    """Decode a stream of concatenated JSON values (newline-separated or not).

    Docker's streams put one message per line, but nothing guarantees the
    chunk boundaries fall on them, so values are cut out with ``raw_decode``.
    """
    decoder = json.JSONDecoder()
    buf = ""
    pending = b""
    while True:
        chunk = read1(65536)
        if not chunk:
            break
        pending += chunk
        try:
            buf += pending.decode("utf-8")
            pending = b""
        except UnicodeDecodeError:
            continue  # a multi-byte character split across chunks
        while True:
            buf = buf.lstrip()
            if not buf:
                break
            try:
                value, end = decoder.raw_decode(buf)
            except ValueError:
                break
            yield value
            buf = buf[end:]
    if buf.strip():
        raise APIError(0, f"truncated JSON stream: {buf.strip()[:80]!r}")


def iter_frames(read: Callable[[int], bytes]) -> Iterator[tuple[int, bytes]]:
    """Docker's multiplexed stream: ``[type, 0, 0, 0, BE uint32 size]`` then the payload.

    Used when the container has no tty (attach, exec, logs); type 1 is
    stdout, 2 stderr (0, stdin, is written back by some daemons as stdout).
    """
    while True:
        head = _read_exact(read, 8)
        if len(head) < 8:
            return
        kind, size = head[0], struct.unpack(">I", head[4:8])[0]
        payload = _read_exact(read, size)
        yield (STDERR if kind == STDERR else STDOUT), payload
        if len(payload) < size:
            return


def _read_exact(read: Callable[[int], bytes], n: int) -> bytes:
    parts = []
    while n > 0:
        chunk = read(n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


class Hijacked:
    """The raw socket of an upgraded connection, with the bytes read past the head."""

    def __init__(self, sock: socket.socket, pending: bytes) -> None:
        self.sock = sock
        self._pending = pending

    def read(self, n: int = 65536) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:n], self._pending[n:]
            return data
        try:
            return self.sock.recv(n)
        except OSError:
            return b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        """Half-close: the daemon sees stdin's end, the output keeps flowing."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class Client:
    """One daemon, one socket path; a new connection per request (they are cheap)."""

    def __init__(self, socket_path: str, version: str = API_VERSION) -> None:
        self.socket_path = socket_path
        self.prefix = f"/v{version}" if version else ""

    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        url = path if path.startswith("/_") else self.prefix + path
        if params:
            pairs: list[tuple[str, str]] = []
            for key, value in params.items():
                value = _param(value)
                if isinstance(value, list):
                    pairs.extend((key, item) for item in value)
                elif value is not None:
                    pairs.append((key, value))
            if pairs:
                url += "?" + urlencode(pairs)
        return url

    def open(self, method: str, path: str, *, params: dict[str, Any] | None = None,
             body: Any = None, data: bytes | BinaryIO | None = None,
             headers: dict[str, str] | None = None,
             timeout: float | None = None) -> http.client.HTTPResponse:
        """Send one request; return the response once its status is a success."""
        conn = UnixHTTPConnection(self.socket_path, timeout=timeout)
        hdrs = dict(headers or {})
        payload: Any = data
        if body is not None:
            payload = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif data is not None:
            hdrs.setdefault("Content-Type", "application/x-tar")
            if not isinstance(data, bytes):
                # A length, not chunked uploads: simpler for every daemon to read.
                hdrs.setdefault("Content-Length", str(_remaining(data)))
        try:
            conn.request(method, self.url(path, params), body=payload, headers=hdrs)
            resp = conn.getresponse()
            # One request per connection: the response's file holds the socket
            # from here, so closing the response closes the connection.
            sock, conn.sock = conn.sock, None
            if sock is not None:
                sock.close()
        except (http.client.HTTPException, ConnectionError) as exc:
            conn.close()
            raise APIError(0, f"lost the connection to the daemon: {exc}") from exc
        if resp.status >= 400:
            raw = resp.read()
            conn.close()
            raise APIError(resp.status, _error_message(resp.status, resp.reason, raw))
        return resp

    def call(self, method: str, path: str, **kw: Any) -> Any:
        """A request whose answer is JSON (or empty: None)."""
        resp = self.open(method, path, **kw)
        with resp:
            raw = resp.read()
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.call("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.call("DELETE", path, **kw)

    def stream(self, method: str, path: str, **kw: Any) -> Iterator[Any]:
        """A request answered with a stream of JSON messages (chunked)."""
        resp = self.open(method, path, **kw)
        with resp:
            yield from iter_json(resp.read1)

    def ping(self, timeout: float = 2.0) -> bool:
        try:
            resp = self.open("GET", "/_ping", timeout=timeout)
            with resp:
                return resp.read().strip() == b"OK"
        except (ConnectionFailed, APIError, OSError):
            return False

    def hijack(self, path: str, *, params: dict[str, Any] | None = None,
               body: Any = None) -> Hijacked:
        """POST with ``Upgrade: tcp``; after a 101 (or 200) the socket is a raw stream."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise ConnectionFailed(self.socket_path, exc) from exc
        payload = json.dumps(body).encode() if body is not None else b""
        head = (f"POST {self.url(path, params)} HTTP/1.1\r\nHost: localhost\r\n"
                "Connection: Upgrade\r\nUpgrade: tcp\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
        sock.sendall(head.encode() + payload)
        status, reason, headers, rest = _read_head(sock)
        if status in (101, 200):
            return Hijacked(sock, rest)
        body_bytes = _read_body(sock, headers, rest)
        sock.close()
        raise APIError(status, _error_message(status, reason, body_bytes))


def _remaining(f: BinaryIO) -> int:
    return os.fstat(f.fileno()).st_size - f.tell()


def _param(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return str(value)


def _read_head(sock: socket.socket) -> tuple[int, str, dict[str, str], bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            sock.close()
            raise APIError(0, "the daemon closed the connection before answering")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        sock.close()
        raise APIError(0, f"malformed response from the daemon: {lines[0]!r}") from None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, parts[2] if len(parts) > 2 else "", headers, rest


def _read_body(sock: socket.socket, headers: dict[str, str], rest: bytes) -> bytes:
    """An error body after a refused upgrade: content-length, chunked, or to EOF."""
    data = rest
    while True:
        if "content-length" in headers and len(data) >= int(headers["content-length"]):
            break
        if headers.get("transfer-encoding") == "chunked" and data.endswith(b"0\r\n\r\n"):
            return _dechunk(data)
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    if headers.get("transfer-encoding") == "chunked":
        return _dechunk(data)
    return data


def _dechunk(data: bytes) -> bytes:
    out = []
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(data[:size])
        data = data[size + 2:]
    return b"".join(out)
