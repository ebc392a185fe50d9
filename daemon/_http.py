"""The HTTP side of the Engine API: a threaded server on a unix socket.

Built on the standard library's ``http.server``: each connection gets a
thread, which suits the API's long calls (wait, logs -f, events, attach) and
lets an attach take over the raw socket after ``101 UPGRADED`` — the part
that event-loop servers make awkward.  Only the socket's owner is served,
checked with SO_PEERCRED on every connection.
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
import sys
import tempfile
import traceback
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

from rctr.core.errors import (AlreadyExists, no_space, Conflict, FailedPrecondition, InvalidArgument,
                              NotFound, RctrError, Unsupported)

__all__ = ["APIServer", "Request", "Router", "HTTPError", "NotModified", "API_VERSION",
           "MIN_API_VERSION"]

API_VERSION = "1.43"
MIN_API_VERSION = "1.24"
_VERSION_PREFIX = re.compile(r"^/v(\d+\.\d+)(/.*)$")


class HTTPError(Exception):
    """An answer other than success, with Docker's status code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class NotModified(Exception):
    """304: Docker's answer to starting a running container or stopping a stopped one."""


def status_for(exc: BaseException) -> int:
    if isinstance(exc, HTTPError):
        return exc.status
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, (AlreadyExists, Conflict)):
        return 409
    if isinstance(exc, (InvalidArgument, ValueError)):
        return 400
    if isinstance(exc, FailedPrecondition):
        return 409
    if isinstance(exc, Unsupported):
        return 501
    return 500  # Unavailable and anything unexpected


def message_for(exc: BaseException) -> str:
    """The message of an error (its hint apart); a full disk says what to do."""
    if isinstance(exc, OSError) and (full := no_space(exc)) is not None:
        return str(full)
    if isinstance(exc, RctrError):
        return exc.message  # the hint is added once, by the caller
    return str(exc) or type(exc).__name__


class Request:
    """One API call as the handlers see it."""

    def __init__(self, handler: _Handler, method: str, path: str, params: dict[str, str],
                 query: dict[str, list[str]], api_version: str) -> None:
        self.handler = handler
        self.method = method
        self.path = path
        self.params = params
        self.query = query
        self.api_version = api_version
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
        if value in (None, ""):
            return default
        try:
            return int(value)  # type: ignore[arg-type]
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
        return self.handler.headers.get(name, default)

    def body_stream(self) -> Iterator[bytes]:
        """The request body in chunks (Content-Length or chunked)."""
        rfile = self.handler.rfile
        if (self.header("Transfer-Encoding") or "").lower() == "chunked":
            while True:
                line = rfile.readline(65537)
                try:
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise HTTPError(400, "malformed chunked body") from None
                if size == 0:
                    while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    chunk = rfile.read(min(left, 1 << 16))
                    if not chunk:
                        raise HTTPError(400, "truncated chunked body")
                    left -= len(chunk)
                    yield chunk
                rfile.readline(3)
        else:
            try:
                left = int(self.header("Content-Length") or 0)
            except ValueError:
                raise HTTPError(400, "malformed Content-Length") from None
            while left > 0:
                chunk = rfile.read(min(left, 1 << 16))
                if not chunk:
                    raise HTTPError(400, "truncated body")
                left -= len(chunk)
                yield chunk

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
        h = self.handler
        self.responded = True
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if self.method != "HEAD":
            h.wfile.write(body)

    def send_json(self, obj: Any, status: int = 200) -> None:
        self.send(status, json.dumps(obj).encode() + b"\n")

    def no_content(self) -> None:
        self.send(204, b"", content_type="text/plain")

    def stream(self, content_type: str = "application/json") -> ChunkedWriter:
        """Start a chunked answer (progress, logs, events)."""
        h = self.handler
        self.responded = True
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.flush()
        return ChunkedWriter(h.wfile)

    def hijack(self, content_type: str = "application/vnd.docker.raw-stream") -> socket.socket:
        """Take over the connection for a raw two-way stream (attach, exec start)."""
        h = self.handler
        self.responded = True
        upgrade = (self.header("Upgrade") or "").lower()
        if upgrade in ("tcp", "h2c"):
            h.send_response(101)
            h.send_header("Connection", "Upgrade")
            h.send_header("Upgrade", upgrade)
        else:
            h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.end_headers()
        h.wfile.flush()
        h.close_connection = True
        return h.connection  # type: ignore[no-any-return]


class ChunkedWriter:
    def __init__(self, wfile: Any) -> None:
        self.wfile = wfile

    def write(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def json(self, obj: Any) -> None:
        self.write(json.dumps(obj).encode() + b"\n")

    def close(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass


Handler = Callable[[Request], None]


class Router:
    """Method + path pattern → handler; ``{name}`` matches one segment (or the rest, ``{name:path}``)."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.patterns: list[tuple[str, str]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+):path\}", r"(?P<\1>.+)", pattern)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        self.routes.append((method, re.compile(f"^{regex}/?$"), handler))
        self.patterns.append((method, pattern))

    def table(self) -> list[tuple[str, str]]:
        """(method, pattern) of every route, in the order added (the API fuzz tests read it)."""
        return list(self.patterns)

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.add(method, pattern, fn)
            return fn
        return register

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        allowed = False
        for m, regex, handler in self.routes:
            found = regex.match(path)
            if found:
                if m == method or (method == "HEAD" and m == "GET"):
                    # Matched on the path as sent, so an escaped "/" stays in its segment;
                    # the values decoded, as Go's router gives them (docker-py escapes the
                    # "@" of "name@sha256:…", for one).
                    return handler, {k: unquote(v) for k, v in found.groupdict().items()}
                allowed = True
        if allowed:
            raise HTTPError(405, f"method {method} not allowed on {path}")
        raise HTTPError(404, f"page not found: {path}")


# What str.split() takes for whitespace in a line decoded as Latin-1, besides the space.
_STRAY_SPACE = frozenset(b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: APIServer
    server_version = "rctrd"
    sys_version = ""
    # The stdlib starts from HTTP/0.9, whose answers have no status line: an error about a
    # request line it could not read went out as a bare HTML page.
    default_request_version = "HTTP/1.0"

    def parse_request(self) -> bool:
        line = self.raw_requestline.rstrip(b"\r\n")
        if len(line.split()) == 2:  # "GET /path": HTTP/0.9, which Go refuses too
            return self._refuse_line(line, "malformed HTTP request: no HTTP version")
        parts = line.split(b" ")
        if line and (len(parts) != 3 or b"" in parts or not _STRAY_SPACE.isdisjoint(line)):
            # The stdlib splits on any Unicode whitespace (\x85, \xa0, tabs, runs of spaces);
            # HTTP, and Go's server, separate the three parts by one space each.
            return self._refuse_line(line, "malformed HTTP request line: method, target and "
                                           "version are separated by single spaces")
        if not super().parse_request():
            return False
        if self.request_version.startswith("HTTP/0."):  # the stdlib would answer without a head
            self.request_version = self.default_request_version
            self.send_error(505, "unsupported protocol version")  # Go's net/http: 505 too
            return False
        return True

    def _refuse_line(self, line: bytes, message: str) -> bool:
        """A 400 for a request line that cannot be read; the connection closes."""
        self.command, self.close_connection = None, True
        self.requestline = str(line, "iso-8859-1")
        self.request_version = self.default_request_version
        self.send_error(400, message)
        return False

    def __getattr__(self, name: str) -> Any:
        # Any other method goes to the router too (404 or 405), not the stdlib's 501.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A request the stdlib could not parse: Docker's JSON error, not an HTML page."""
        self.log_error("code %d, message %s", code, message)
        body = json.dumps({"message": message or self.responses.get(code, ("error",))[0]}).encode()
        self.close_connection = True
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) + 1))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body + b"\n")
        except OSError:
            pass  # the client is gone already

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        if self.server.verbose:
            sys.stderr.write("rctrd: %s\n" % (format % args))

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        path = split.path
        version = API_VERSION
        found = _VERSION_PREFIX.match(path)
        if found:
            version, path = found.group(1), found.group(2)
        request = Request(self, self.command, path, {}, parse_qs(split.query, keep_blank_values=True),
                          version)
        try:
            handler, request.params = self.server.router.match(self.command, path)
            handler(request)
        except NotModified:
            if not request.responded:
                request.send(304, b"", content_type="text/plain")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - the daemon never dies from a request
            status = status_for(exc)
            if status >= 500 and not isinstance(exc, RctrError):
                traceback.print_exc()
            if request.responded:
                self.close_connection = True
                return
            message = message_for(exc)
            hint = getattr(exc, "hint", None)
            if hint:
                message = f"{message} (hint: {hint})"
            try:
                request.send(status, json.dumps({"message": message}).encode() + b"\n")
            except OSError:
                self.close_connection = True
        if not request.responded:
            request.no_content()
        # Drain an unread body, whatever the method (a GET may have one), so that keep-alive
        # stays in step.
        if request._body is None and not self.close_connection:
            try:
                for _ in request.body_stream():
                    pass
            except Exception:  # noqa: BLE001
                self.close_connection = True

    def end_headers(self) -> None:
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")
        super().end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch


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
        return uid == os.getuid()

    def handle_error(self, request: Any, client_address: Any) -> None:
        traceback.print_exc()
