"""A small Docker Engine API client over a unix socket, on the standard library.

Why not docker-py or requests, or even ``http.client``: the CLI's start-up
time matters (``http.client`` alone imports ``email`` and ``ssl``, ~20 ms on
every command), and the API needs only four shapes of exchange, all here:
JSON in and out, a stream of JSON messages (pull progress, events), a raw
byte stream (logs, archives), and a hijacked connection (attach, exec start)
where the socket is used both ways after the HTTP response head.  HTTP/1.1
is spoken one request per connection, which keeps the reading side to the
three ways a body can end: Content-Length, chunked, or the connection's end.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Callable, Iterator

# For the type checker only (start-up imports: see _run_fastpath).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import IO, Any, TypedDict, Unpack

    class RequestOptions(TypedDict, total=False):
        """The keywords of :meth:`Client.open`, which ``call``, ``get``… pass on."""
        params: Mapping[str, object] | None
        body: object
        data: bytes | IO[bytes] | None
        headers: dict[str, str] | None
        timeout: float | None

__all__ = [
    "API_VERSION",
    "APIError",
    "Client",
    "ConnectionFailed",
    "Hijacked",
    "Response",
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


# RFC 3986's unreserved characters, never escaped.  Quoting here rather than with
# urllib.parse, whose import (with ipaddress) costs 2 ms on every command.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(value: str, safe: str = "/") -> str:
    """``urllib.parse.quote``: UTF-8, every other byte as %XX."""
    keep = _UNRESERVED | frozenset(safe.encode())
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in value.encode())


def urlencode(pairs: list[tuple[str, str]]) -> str:
    """``urllib.parse.urlencode`` of (key, value) pairs: quote_plus on each side."""
    def plus(text: str) -> str:
        return quote(text, safe=" ").replace(" ", "+")
    return "&".join(f"{plus(str(k))}={plus(str(v))}" for k, v in pairs)


def q(value: str) -> str:
    """Quote one path segment (a name, a reference with ``/`` or ``:``)."""
    return quote(value, safe="")


def qi(name: str) -> str:
    """Quote an image reference for a path: ``/`` and ``:`` stay, as docker's clients send them
    (the daemon routes ``/images/{name:.*}/json``)."""
    return quote(name, safe="/:@")


def _connect(path: str, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise ConnectionFailed(path, exc) from exc
    return sock


class Response:
    """A response read off its socket: the head parsed, the body read as it is asked for.

    ``read``, ``read1`` and ``getheader`` as on ``http.client``'s response, so
    it serves as a file for ``tarfile`` and the stream readers; and like it,
    it closes the connection once the body has been read to its end."""

    def __init__(self, sock: socket.socket, status: int, reason: str,
                 headers: dict[str, str], rest: bytes, *, bodiless: bool = False) -> None:
        self.sock = sock
        self.status = status
        self.reason = reason
        self.headers = headers  # names in lower case
        self._raw = rest  # bytes received past what has been parsed
        self._chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        self._left: int | None = None  # body bytes still to come; None: until the end
        self._done = bodiless or status in (204, 304) or 100 <= status < 200
        if not self._chunked and "content-length" in headers:
            try:
                self._left = max(0, int(headers["content-length"]))
            except ValueError:
                raise APIError(0, "malformed Content-Length from the daemon") from None
            self._done = self._done or self._left == 0
        self._chunk_left = 0

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def buffered(self) -> bytes:
        """What was received past the head and not yet read: after a 101, the stream's start."""
        return self._raw

    def read1(self, n: int = 65536) -> bytes:
        """Some of the body, at most ``n`` bytes, after at most one receive; b"" at its end."""
        if self._done or n <= 0:
            return b""
        try:
            data = self._read_body(n)
        finally:
            if self._done:
                self.sock.close()
        return data

    def _read_body(self, n: int) -> bytes:
        if self._chunked:
            if self._chunk_left == 0 and not self._next_chunk():
                return b""
            data = self._take(min(n, self._chunk_left))
            self._chunk_left -= len(data)
        else:
            data = self._take(n if self._left is None else min(n, self._left))
            if self._left is not None:
                self._left -= len(data)
                self._done = self._left == 0
        if not data:
            self._done = True
            if self._chunked or self._left:
                raise APIError(0, "the daemon closed the connection in the middle of a response")
        return data

    def read(self, n: int = -1) -> bytes:
        """``n`` bytes of the body (fewer only at its end), or all the rest."""
        parts = []
        while n < 0 or n > 0:
            data = self.read1(65536 if n < 0 else n)
            if not data:
                break
            parts.append(data)
            if n > 0:
                n -= len(data)
        return b"".join(parts)

    def _next_chunk(self) -> bool:
        """Parse a chunk's size line; False (and the trailer consumed) at the last chunk."""
        line = b""
        while not line.strip():  # skips the CRLF that ends the previous chunk's data
            line = self._line()
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise APIError(0, f"malformed chunk from the daemon: {line[:40]!r}") from None
        if size == 0:
            while self._line().strip():
                pass
            self._done = True
            return False
        self._chunk_left = size
        return True

    def _line(self) -> bytes:
        while b"\n" not in self._raw:
            more = self._recv()
            if not more:
                raise APIError(0, "the daemon closed the connection in the middle of a response")
            self._raw += more
        line, _, self._raw = self._raw.partition(b"\n")
        return line

    def _take(self, n: int) -> bytes:
        if not self._raw:
            self._raw = self._recv()
        data, self._raw = self._raw[:n], self._raw[n:]
        return data

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except ConnectionError:
            return b""

    def close(self) -> None:
        self._done = True
        self.sock.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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

    def url(self, path: str, params: Mapping[str, object] | None = None) -> str:
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

    def open(self, method: str, path: str, *, params: Mapping[str, object] | None = None,
             body: object = None, data: bytes | IO[bytes] | None = None,
             headers: dict[str, str] | None = None,
             timeout: float | None = None) -> Response:
        """Send one request; return the response once its status is a success."""
        resp = self._request(method, path, params, body, data, headers, timeout)
        if resp.status >= 400:
            _raise_for(resp)
        return resp

    def _request(self, method: str, path: str, params: Mapping[str, object] | None, body: object,
                 data: bytes | IO[bytes] | None, headers: dict[str, str] | None,
                 timeout: float | None) -> Response:
        """Send one request on a new connection; the response with its head read."""
        hdrs = {"Host": "localhost", **(headers or {})}
        payload: bytes | IO[bytes] | None = data
        if body is not None:
            payload = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif data is not None:
            hdrs.setdefault("Content-Type", "application/x-tar")
        if isinstance(payload, bytes):
            hdrs["Content-Length"] = str(len(payload))
        elif payload is not None:
            # A length, not chunked uploads: simpler for every daemon to read.
            hdrs.setdefault("Content-Length", str(_remaining(payload)))
        elif method in ("POST", "PUT"):
            hdrs["Content-Length"] = "0"
        head = f"{method} {self.url(path, params)} HTTP/1.1\r\n" + \
            "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        sock = _connect(self.socket_path, timeout)
        try:
            try:
                _send(sock, head.encode(), payload)
            except BrokenPipeError:
                pass  # the daemon refused the body early: its answer says why
            resp = _read_response(sock, bodiless=method == "HEAD")
        except ConnectionError as exc:
            sock.close()
            raise APIError(0, f"lost the connection to the daemon: {exc}") from exc
        except BaseException:
            sock.close()
            raise
        return resp

    def call(self, method: str, path: str, **kw: Unpack[RequestOptions]) -> Any:
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

    def get(self, path: str, **kw: Unpack[RequestOptions]) -> Any:
        return self.call("GET", path, **kw)

    def post(self, path: str, **kw: Unpack[RequestOptions]) -> Any:
        return self.call("POST", path, **kw)

    def delete(self, path: str, **kw: Unpack[RequestOptions]) -> Any:
        return self.call("DELETE", path, **kw)

    def stream(self, method: str, path: str, **kw: Unpack[RequestOptions]) -> Iterator[Any]:
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

    def hijack(self, path: str, *, params: Mapping[str, object] | None = None,
               body: object = None) -> Hijacked:
        """POST with ``Upgrade: tcp``; after a 101 (or 200) the socket is a raw stream."""
        resp = self._request("POST", path, params, body, None,
                             {"Connection": "Upgrade", "Upgrade": "tcp"}, None)
        if resp.status not in (101, 200):
            _raise_for(resp)
        return Hijacked(resp.sock, resp.buffered())


def _raise_for(resp: Response) -> None:
    """The daemon's error answer as an APIError; the connection closed."""
    with resp:
        raise APIError(resp.status, _error_message(resp.status, resp.reason, resp.read()))


def _send(sock: socket.socket, head: bytes, payload: bytes | IO[bytes] | None) -> None:
    if payload is None or isinstance(payload, bytes):
        sock.sendall(head + (payload or b""))
        return
    sock.sendall(head)
    while block := payload.read(1 << 16):
        sock.sendall(block)


def _remaining(f: IO[bytes]) -> int:
    return os.fstat(f.fileno()).st_size - f.tell()


def _param(value: object) -> str | list[str] | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return str(value)


def _read_response(sock: socket.socket, *, bodiless: bool = False) -> Response:
    """The status line and headers; the body stays on the socket for the Response."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            sock.close()
            raise APIError(0, "the daemon closed the connection before answering")
        buf += chunk
        if len(buf) > 1 << 20:
            sock.close()
            raise APIError(0, "the daemon's response head is too large")
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
    return Response(sock, status, parts[2] if len(parts) > 2 else "", headers, rest,
                    bodiless=bodiless)
