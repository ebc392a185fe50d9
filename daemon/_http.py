"""The HTTP side of the Engine API: a threaded server on a unix socket.

Each connection gets a thread, which suits the API's long calls (wait, logs -f, events,
attach) and lets an attach take over the raw socket after ``101 UPGRADED`` — the part that
event-loop servers make awkward.  The HTTP/1.1 framing is h11's (``_http_conn``), the routing
and the error statuses are in ``_http_routes``; this module is what the handlers see: the
``Request``.  Only the socket's owner is served, checked with SO_PEERCRED on every connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import socket
import socketserver
import struct
import tempfile
import traceback
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import h11

from rctr.core.errors import RctrError

from ._http_conn import Connection
from ._http_routes import (API_VERSION, MIN_API_VERSION, Handler, HTTPError, NotModified, Router,
                           message_for, status_for)

__all__ = ["APIServer", "Request", "Router", "HTTPError", "NotModified", "API_VERSION",
           "MIN_API_VERSION", "ChunkedWriter", "Handler", "status_for", "message_for"]

_VERSION_PREFIX = re.compile(r"^/v(\d+\.\d+)(/.*)$")


class Request:
    """One API call as the handlers see it."""

    def __init__(self, handler: Connection, method: str, path: str, params: dict[str, str],
                 query: dict[str, list[str]], api_version: str,
                 headers: dict[str, str] | None = None) -> None:
        self.handler = handler
        self.method = method
        self.path = path
        self.params = params
        self.query = query
        self.api_version = api_version
        self.headers = headers or {}  # names in lower case; the first of a repeated one
        self._body: bytes | None = None
        self.responded = False

    # -- reading ---------------------------------------------------------------------------

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.arg(name)
        if value is None:
            return default
        return value.lower() not in ("", "0", "false", "no")

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        value = self.arg(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise HTTPError(400, f"invalid value for {name!r}: {value!r} is not a number") from None

    def json_arg(self, name: str, default: Any = None) -> Any:
        value = self.arg(name)
        if not value:
            return default
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the stack
            raise HTTPError(400, f"invalid JSON in the {name!r} parameter") from None

    def filters(self) -> dict[str, list[str]]:
        """The ``filters`` parameter as {key: [values]}; clients send a list or a {value: true} map."""
        raw = self.json_arg("filters", {}) or {}
        if not isinstance(raw, dict):
            raise HTTPError(400, "filters must be a JSON object")
        out = {}
        for key, value in raw.items():
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, dict)) or \
                    not all(isinstance(v, (str, int, float)) for v in value):
                raise HTTPError(400, f"invalid filter {key!r}: give a list of strings or a "
                                     "{value: true} map")
            out[key] = [str(v) for v in value]  # a map's keys, as Docker's filters.Args.Get
        return out

    def client_gone(self) -> bool:
        """True once the client has closed the connection (or its sending side).

        A long wait that writes only now and then (events with a filter, logs -f of a quiet
        container) asks this between waits and ends, as Go's server cancels a request's context
        when its connection reads EOF; otherwise its thread stays until the next write fails."""
        sock = self.handler.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (OSError, ValueError):
            return True

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def body_stream(self) -> Iterator[bytes]:
        """The request body in pieces, as they come (Content-Length or chunked)."""
        return self.handler.body()

    @contextlib.contextmanager
    def spooled_body(self, directory: str, prefix: str) -> Iterator[str]:
        """The body copied to a temporary file in ``directory`` (loads, imports); its path."""
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=prefix, suffix=".tar") as tmp:
            for chunk in self.body_stream():
                tmp.write(chunk)
            tmp.flush()
            yield tmp.name

    def body(self, limit: int = 16 << 20) -> bytes:
        if self._body is None:
            data = bytearray()
            for chunk in self.body_stream():
                data += chunk
                if len(data) > limit:
                    raise HTTPError(413, "request body too large")
            self._body = bytes(data)
        return self._body

    def json(self, default: Any = None) -> Any:
        data = self.body()
        if not data.strip():
            if default is not None:
                return default
            raise HTTPError(400, "a JSON body is required")
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the stack
            raise HTTPError(400, f"invalid JSON body: {exc}") from None

    # -- answering -------------------------------------------------------------------------

    def send(self, status: int, body: bytes = b"", content_type: str = "application/json",
             headers: dict[str, str] | None = None) -> None:
        self.responded = True
        self.handler.respond(status, [("Content-Type", content_type),
                                      ("Content-Length", str(len(body))), *(headers or {}).items()])
        self.handler.write(body)  # not for HEAD, which has the head alone
        self.handler.end()

    def send_json(self, obj: Any, status: int = 200) -> None:
        self.send(status, json.dumps(obj).encode() + b"\n")

    def no_content(self) -> None:
        self.send(204, b"", content_type="text/plain")

    def stream(self, content_type: str = "application/json",
               headers: dict[str, str] | None = None) -> ChunkedWriter:
        """Start a chunked answer (progress, logs, events; an archive, its stat in ``headers``)."""
        self.responded = True
        self.handler.respond(200, [("Content-Type", content_type), ("Transfer-Encoding", "chunked"),
                                   *(headers or {}).items()])
        return ChunkedWriter(self.handler)

    def hijack(self, content_type: str = "application/vnd.docker.raw-stream") -> socket.socket:
        """Take over the connection for a raw two-way stream (attach, exec start): ``101`` to a
        client that asked for an upgrade, else ``200`` with the stream as the body, as dockerd."""
        self.responded = True
        upgrade = (self.header("Upgrade") or "").lower()
        if upgrade in ("tcp", "h2c"):
            return self.handler.take_over(101, [("Connection", "Upgrade"), ("Upgrade", upgrade),
                                                ("Content-Type", content_type)])
        return self.handler.take_over(200, [("Content-Type", content_type)])


class ChunkedWriter:
    """The body of a streamed answer, each write sent at once as a chunk (h11 frames it)."""

    def __init__(self, wfile: Connection) -> None:
        self.wfile = wfile
        self.closed = False

    def write(self, data: bytes) -> None:
        if data:
            self.wfile.write(data)

    def json(self, obj: Any) -> None:
        self.write(json.dumps(obj).encode() + b"\n")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.wfile.end()
        except (OSError, h11.LocalProtocolError):
            pass  # the client left, or the answer had broken off: the connection closes


def _target(raw: bytes) -> str:
    target = raw.decode("ascii")  # h11 lets only visible ASCII through
    if target.startswith("//"):  # a path, not "//host/path" (as http.server read it)
        target = "/" + target.lstrip("/")
    return target


def _dispatch(router: Router, conn: Connection, head: h11.Request) -> None:
    """Serve one request: route it, run its handler, answer whatever the handler left."""
    split = urlsplit(_target(head.target))
    path, version = split.path, API_VERSION
    found = _VERSION_PREFIX.match(path)
    if found:
        version, path = found.group(1), found.group(2)
    headers: dict[str, str] = {}
    for name, value in head.headers:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    request = Request(conn, conn.method, path, {}, parse_qs(split.query, keep_blank_values=True),
                      version, headers)
    try:
        handler, request.params = router.match(conn.method, path)
        handler(request)
    except NotModified:
        if not request.responded:
            request.send(304, b"", content_type="text/plain")
    except (BrokenPipeError, ConnectionResetError):
        conn.close_connection = True
    except Exception as exc:  # noqa: BLE001 - the daemon never dies from a request
        _answer_error(request, exc)
    if not request.responded:
        request.no_content()


def _answer_error(request: Request, exc: Exception) -> None:
    status = status_for(exc)
    if status >= 500 and not isinstance(exc, RctrError):
        traceback.print_exc()
    if request.responded:  # too late for an error answer: the connection ends the answer
        request.handler.close_connection = True
        return
    message = message_for(exc)
    hint = getattr(exc, "hint", None)
    if hint:
        message = f"{message} (hint: {hint})"
    try:
        request.send(status, json.dumps({"message": message}).encode() + b"\n")
    except (OSError, h11.LocalProtocolError):
        request.handler.close_connection = True


class _Handler(socketserver.BaseRequestHandler):
    """One connection's thread: its requests, one after the other, until either side ends it."""

    server: APIServer

    def handle(self) -> None:
        assert isinstance(self.request, socket.socket)
        conn = Connection(self.request, self.server.verbose)
        while (head := conn.next_request()) is not None:
            if head.http_version not in (b"1.0", b"1.1"):
                conn.refuse(505, "unsupported protocol version")  # Go's net/http: 505 too
                return
            conn.expect_continue()
            _dispatch(self.server.router, conn, head)
            if not conn.next_cycle():
                return


class APIServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The API on a unix socket (0600), serving only the process's own uid."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, path: str, router: Router, verbose: bool = False,
                 listening: socket.socket | None = None) -> None:
        """Bind ``path`` (replacing a stale socket), or serve ``listening``, a socket
        already bound and listening (systemd's socket activation: it owns the file)."""
        self.router = router
        self.verbose = verbose
        if listening is not None:
            super().__init__(path, _Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = listening
            self.server_address = listening.getsockname()
            return
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        old = os.umask(0o177)
        try:
            super().__init__(path, _Handler)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        creds = request.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        # The kernel gives the peer's uid as seen from this process's user namespace.
        return int(uid) == os.getuid()

    def handle_error(self, request: Any, client_address: Any) -> None:
        traceback.print_exc()
