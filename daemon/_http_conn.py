"""One client connection of the Engine API, its HTTP/1.1 framing done by h11.

h11 reads the requests (request line, headers, Content-Length or chunked bodies) and frames the
answers, by a state machine that refuses what RFC 9112 does not allow: a Content-Length that is
not all digits, a chunk size that is not hex digits, a request line with tabs or runs of spaces.
It does no I/O itself, so this module owns the socket: a blocking ``recv`` loop in the
connection's own thread, and the socket handed over whole when attach or exec hijacks it.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
from collections.abc import Iterator
from email.utils import formatdate
from http import HTTPStatus

import h11

from ._http_routes import API_VERSION, HTTPError

__all__ = ["Connection", "MAX_HEAD"]

MAX_HEAD = 1 << 20  # a request's head: Go's http.DefaultMaxHeaderBytes, dockerd's limit (431 past it)
_RECV = 1 << 16
_API_HEADERS = [("Api-Version", API_VERSION), ("Docker-Experimental", "false"), ("Ostype", "linux")]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _said(exc: h11.RemoteProtocolError) -> str:
    """h11's message, the bytes it quotes shown as b'...' rather than bytearray(b'...')."""
    return re.sub(r"bytearray\((b.*)\)$", r"\1", str(exc))


def _head_error(exc: h11.RemoteProtocolError) -> str:
    """What was wrong with a request head h11 could not read, said for a person."""
    text = _said(exc)
    if text.startswith(("illegal request line", "no request line")):
        # As Go reads it; Python's http.server split on any whitespace (tabs, \x85, \xa0).
        return (f"malformed HTTP request line ({text}): a method, a target and HTTP/1.x, "
                "separated by single spaces")
    if exc.error_status_hint == 431:
        return f"request head larger than {MAX_HEAD} bytes"
    return f"malformed HTTP request: {text}"


class Connection:
    """The server's side of one connection: requests in, answers out, one at a time."""

    def __init__(self, sock: socket.socket, verbose: bool = False) -> None:
        self.connection = sock
        self.verbose = verbose
        self.close_connection = False
        self.method = ""
        self.requestline = ""
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self._send_lock = threading.Lock()  # a progress writer may run in more than one thread

    # -- reading ---------------------------------------------------------------------------

    def _next_event(self) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        """h11's next event, reading from the socket as long as it needs data (never NEED_DATA)."""
        while True:
            event = self._h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = self.connection.recv(_RECV)
            except OSError:  # reset by the client: as good as closed
                data = b""
            self._h11.receive_data(data)

    def next_request(self) -> h11.Request | None:
        """The next request's head; None once the client has gone, or when a head that could
        not be read has been answered (400, 431, 501) and the connection is to close."""
        try:
            event = self._next_event()
        except h11.RemoteProtocolError as exc:
            self.refuse(exc.error_status_hint, _head_error(exc))
            return None
        if not isinstance(event, h11.Request):
            return None  # ConnectionClosed
        self.method = event.method.decode("ascii")
        self.requestline = f"{self.method} {event.target.decode('ascii')} HTTP/" \
                           f"{event.http_version.decode('ascii')}"
        return event

    def body(self) -> Iterator[bytes]:
        """The rest of the request's body, as it comes (h11 undoes Content-Length or chunked)."""
        while self._h11.their_state is h11.SEND_BODY:
            try:
                event = self._next_event()
            except h11.RemoteProtocolError as exc:
                self.close_connection = True
                raise HTTPError(400, f"malformed request body: {_said(exc)}") from None
            if isinstance(event, h11.Data):
                yield bytes(event.data)

    def expect_continue(self) -> None:
        """``100 Continue`` to a client that waits for it before it sends the body, at once, as
        Python's http.server did (Go's waits until the handler reads)."""
        if self._h11.they_are_waiting_for_100_continue:
            self._send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))

    # -- answering -------------------------------------------------------------------------

    def respond(self, status: int, headers: list[tuple[str, str]]) -> None:
        """The answer's head; its body follows with ``write`` and ends with ``end``."""
        self._log(f'"{self.requestline}" {status} -')
        self._send(h11.Response(status_code=status, reason=_reason(status),
                                headers=[("Server", "rctrd"), ("Date", formatdate(usegmt=True)),
                                         *headers, *_API_HEADERS]))

    def write(self, data: bytes) -> None:
        if data and self.method != "HEAD":  # HEAD: the head a GET would have, no body
            self._send(h11.Data(data=data))

    def end(self) -> None:
        self._send(h11.EndOfMessage())

    def refuse(self, status: int, message: str) -> None:
        """Docker's JSON error for a request that cannot be served, then the connection closes;
        a status line even when the request line could not be read."""
        self._log(f"code {status}, message {message}")
        self.close_connection = True
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return  # an answer had begun: closing is all that is left
        body = json.dumps({"message": message}).encode() + b"\n"
        try:
            self.respond(status, [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body))), ("Connection", "close")])
            self.write(body)
            self.end()
        except (OSError, h11.LocalProtocolError):
            pass  # the client is gone already

    def take_over(self, status: int, headers: list[tuple[str, str]]) -> socket.socket:
        """Write a head and hand over the socket for a raw two-way stream (attach, exec start).

        The head is written here, not by h11: Docker's hijack without ``Upgrade`` is a 200 whose
        body is the raw stream, unframed, which h11 would send chunked.  h11 is not used on this
        connection again."""
        self._log(f'"{self.requestline}" {status} -')
        self.close_connection = True
        lines = [f"HTTP/1.1 {status} {_reason(status)}", "Server: rctrd",
                 f"Date: {formatdate(usegmt=True)}",
                 *(f"{k}: {v}" for k, v in [*headers, *_API_HEADERS])]
        with self._send_lock:
            self.connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return self.connection

    def next_cycle(self) -> bool:
        """After an answer: whether the connection can carry the next request.  An unread body
        is read to its end first (a GET may have one), so the next request starts in step."""
        if self.close_connection or self._h11.our_state is not h11.DONE:
            return False
        try:
            for _ in self.body():
                pass
        except HTTPError:
            return False
        if self._h11.their_state is not h11.DONE:  # Connection: close, HTTP/1.0, an error
            return False
        self._h11.start_next_cycle()
        self.method = self.requestline = ""
        return True

    def _send(self, event: h11.Event) -> None:
        with self._send_lock:
            data = self._h11.send(event)
            if data:
                self.connection.sendall(data)

    def _log(self, line: str) -> None:
        if self.verbose:
            sys.stderr.write(f"rctrd: {line}\n")
