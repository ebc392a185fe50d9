"""The CLI's API client against a fake daemon: a real HTTP server on a unix socket.

The fake is the boundary (the daemon), not the client's internals: requests
go through real sockets, chunked encoding and connection upgrades.  Other
``test_cli_*`` modules import ``FakeDaemon`` from here.
"""

from __future__ import annotations

import io
import json
import re
import socket
import socketserver
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from rctr.cli._client import APIError, Client, ConnectionFailed, iter_frames, iter_json


@dataclass
class Req:
    method: str
    path: str  # without the /v1.41 prefix
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    handler: BaseHTTPRequestHandler = field(repr=False)

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


Route = Callable[[Req], Any]


def frame(kind: int, data: bytes) -> bytes:
    return bytes([kind, 0, 0, 0]) + struct.pack(">I", len(data)) + data


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    fake: FakeDaemon

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up mid-request (a test that is over) must not print
        # a traceback into the next test's captured stderr.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _any(self) -> None:
        split = urlsplit(self.path)
        path = re.sub(r"^/v\d+\.\d+", "", split.path)
        req = Req(self.command, path, parse_qs(split.query, keep_blank_values=True),
                  {k.lower(): v for k, v in self.headers.items()}, self._body(), self)
        fake = self.server.fake
        fake.requests.append(req)
        for (method, pattern), route in fake.routes.items():
            if method == self.command and re.fullmatch(pattern, path):
                result = route(req)
                break
        else:
            result = (404, {"message": f"page not found: {path}"})
        if result is HIJACKED:
            self.close_connection = True
            return
        if not isinstance(result, tuple):
            result = (200, result)
        self.reply(*result)

    def reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        if isinstance(payload, Stream):
            self.send_response(status)
            self.send_header("Content-Type", payload.content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in payload.chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        if isinstance(payload, (bytes, bytearray)):
            data, ctype = bytes(payload), "application/octet-stream"
        elif payload is None:
            data, ctype = b"", "text/plain"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any


@dataclass
class Stream:
    """A chunked answer, one chunk per item (chunk boundaries are part of the test)."""

    chunks: list[bytes]
    content_type: str = "application/json"


HIJACKED = object()


def hijack(req: Req, *, upgrade: bool = True) -> socket.socket:
    """Answer 101 (or 200) and hand back the raw socket, as the daemon's attach does."""
    h = req.handler
    if upgrade:
        h.send_response(101)
        h.send_header("Connection", "Upgrade")
        h.send_header("Upgrade", "tcp")
    else:
        h.send_response(200)
    h.send_header("Content-Type", "application/vnd.docker.raw-stream")
    h.end_headers()
    h.wfile.flush()
    return h.connection


class FakeDaemon:
    """Routes are (METHOD, path regex) → function(Req) returning JSON, (status, JSON[,
    headers]), bytes, a Stream, or HIJACKED after writing to the socket itself."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[Req] = []
        self.route("GET", "/_ping", lambda r: b"OK")
        self.server = _Server(path, _Handler)
        self.server.fake = self
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"unix://{self.path}"

    def route(self, method: str, pattern: str, fn: Route) -> None:
        self.routes[(method, pattern)] = fn

    def find(self, method: str, pattern: str) -> list[Req]:
        return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake(tmp_path: Any) -> Any:
    daemon = FakeDaemon(str(tmp_path / "rctr.sock"))
    yield daemon
    daemon.close()


# -- the client ------------------------------------------------------------------------------


def test_json_request_and_version_prefix(fake: FakeDaemon) -> None:
    fake.route("POST", "/containers/create", lambda r: (201, {"Id": "abc", "Warnings": []}))
    client = Client(fake.path)
    assert client.post("/containers/create", params={"name": "x"}, body={"Image": "i"}) == \
        {"Id": "abc", "Warnings": []}
    req = fake.requests[-1]
    assert req.query == {"name": ["x"]}
    assert req.json == {"Image": "i"}
    assert req.headers["content-type"] == "application/json"
    assert fake.requests[-1].handler.path.startswith("/v1.41/containers/create")


def test_params_encode_bools_lists_and_filters(fake: FakeDaemon) -> None:
    fake.route("GET", "/images/get", lambda r: b"tar")
    client = Client(fake.path)
    resp = client.open("GET", "/images/get", params={"names": ["a", "b:1"], "all": True,
                                                     "quiet": False, "skip": None,
                                                     "filters": {"label": ["x=y"]}})
    assert resp.read() == b"tar"
    q = fake.requests[-1].query
    assert q["names"] == ["a", "b:1"] and q["all"] == ["1"] and q["quiet"] == ["0"]
    assert "skip" not in q
    assert json.loads(q["filters"][0]) == {"label": ["x=y"]}


def test_error_carries_docker_message_and_status(fake: FakeDaemon) -> None:
    fake.route("GET", "/containers/nope/json",
               lambda r: (404, {"message": "No such container: nope"}))
    with pytest.raises(APIError) as info:
        Client(fake.path).get("/containers/nope/json")
    assert info.value.status == 404 and info.value.message == "No such container: nope"
    assert info.value.not_found


def test_error_without_json_body_uses_text(fake: FakeDaemon) -> None:
    fake.route("GET", "/x", lambda r: (500, b"boom"))
    with pytest.raises(APIError, match="boom"):
        Client(fake.path).get("/x")


def test_missing_socket_is_a_connection_failure(tmp_path: Any) -> None:
    with pytest.raises(ConnectionFailed) as info:
        Client(str(tmp_path / "none.sock")).get("/info")
    assert info.value.path.endswith("none.sock")
    assert not Client(str(tmp_path / "none.sock")).ping()


def test_ping(fake: FakeDaemon) -> None:
    assert Client(fake.path).ping()
    assert fake.requests[-1].handler.path == "/_ping"  # unversioned, as docker's clients do


def test_stream_splits_json_across_chunk_boundaries(fake: FakeDaemon) -> None:
    msgs = [{"status": "Pulling fs layer", "id": "a1"}, {"status": "Done ü"}, {"aux": {"ID": 1}}]
    blob = b"".join(json.dumps(m, ensure_ascii=False).encode() + b"\r\n" for m in msgs)
    # Cut in the middle of objects and of the multi-byte character.
    cut = blob.index("ü".encode()) + 1
    fake.route("POST", "/images/create", lambda r: Stream([blob[:5], blob[5:cut], blob[cut:]]))
    assert list(Client(fake.path).stream("POST", "/images/create")) == msgs


def test_iter_json_without_newlines() -> None:
    data = io.BytesIO(b'{"a":1}{"b":2} [3]')
    assert list(iter_json(data.read1)) == [{"a": 1}, {"b": 2}, [3]]


def test_iter_json_truncated_stream_is_an_error() -> None:
    with pytest.raises(APIError, match="truncated"):
        list(iter_json(io.BytesIO(b'{"a":1}{"b":').read1))


def test_iter_frames_demultiplexes_and_handles_short_reads() -> None:
    data = frame(1, b"out") + frame(2, b"err") + frame(1, b"") + frame(0, b"in-as-out")
    stream = io.BytesIO(data)
    frames = list(iter_frames(lambda n: stream.read(min(n, 3))))  # 3 bytes at a time
    assert frames == [(1, b"out"), (2, b"err"), (1, b""), (1, b"in-as-out")]


def test_iter_frames_stops_on_truncated_payload() -> None:
    stream = io.BytesIO(frame(1, b"hello")[:-2])
    assert list(iter_frames(stream.read)) == [(1, b"hel")]


@pytest.mark.parametrize("upgrade", [True, False])
def test_hijack_both_ways_with_half_close(fake: FakeDaemon, upgrade: bool) -> None:
    def attach(req: Req) -> Any:
        sock = hijack(req, upgrade=upgrade)
        sock.sendall(frame(1, b"ready\n"))
        got = b""
        while chunk := sock.recv(4096):  # until the client half-closes
            got += chunk
        sock.sendall(frame(1, got.upper()) + frame(2, b"bye\n"))
        sock.shutdown(socket.SHUT_WR)
        return HIJACKED

    fake.route("POST", "/containers/c1/attach", attach)
    conn = Client(fake.path).hijack("/containers/c1/attach", params={"stream": True, "stdin": True})
    req = fake.requests[-1]
    assert req.headers["upgrade"] == "tcp" and req.headers["connection"].lower() == "upgrade"
    conn.send(b"abc")
    conn.close_write()
    assert list(iter_frames(conn.read)) == [(1, b"ready\n"), (1, b"ABC"), (2, b"bye\n")]
    conn.close()


def test_hijack_keeps_bytes_read_past_the_head(fake: FakeDaemon) -> None:
    def attach(req: Req) -> Any:
        h = req.handler
        # Head and payload in one write: the client reads both in one recv.
        h.wfile.write(b"HTTP/1.1 101 UPGRADED\r\nUpgrade: tcp\r\nConnection: Upgrade\r\n\r\n"
                      + frame(1, b"early"))
        h.wfile.flush()
        h.connection.shutdown(socket.SHUT_WR)
        return HIJACKED

    fake.route("POST", "/exec/e1/start", attach)
    conn = Client(fake.path).hijack("/exec/e1/start", body={"Detach": False, "Tty": False})
    assert fake.requests[-1].json == {"Detach": False, "Tty": False}
    assert list(iter_frames(conn.read)) == [(1, b"early")]
    conn.close()


def test_hijack_refused_raises_with_the_message(fake: FakeDaemon) -> None:
    fake.route("POST", "/containers/c1/attach",
               lambda r: (409, {"message": "container c1 is not running"}))
    with pytest.raises(APIError) as info:
        Client(fake.path).hijack("/containers/c1/attach")
    assert info.value.status == 409 and "not running" in info.value.message


def test_upload_sends_a_length(fake: FakeDaemon, tmp_path: Any) -> None:
    fake.route("POST", "/images/load", lambda r: {"ok": len(r.body)})
    path = tmp_path / "img.tar"
    path.write_bytes(b"x" * 5000)
    with open(path, "rb") as f:
        assert Client(fake.path).post("/images/load", data=f) == {"ok": 5000}
    assert fake.requests[-1].headers["content-length"] == "5000"
    assert fake.requests[-1].headers["content-type"] == "application/x-tar"


def test_socket_path_from_host() -> None:
    from rctr.cli._client import socket_path_from_host

    assert socket_path_from_host("unix:///run/x.sock") == "/run/x.sock"
    assert socket_path_from_host("/run/x.sock") == "/run/x.sock"
    with pytest.raises(ValueError):
        socket_path_from_host("tcp://127.0.0.1:2375")


# -- the response reader, byte by byte: bodies cut at every awkward place ----------------------


def _response(raw: bytes, *, step: int, bodiless: bool = False):
    """A Response over a socket that delivers ``raw`` ``step`` bytes at a time, then EOF."""
    from rctr.cli._client import _read_response

    ours, theirs = socket.socketpair()

    def feed() -> None:
        with theirs:
            for i in range(0, len(raw), step):
                theirs.sendall(raw[i:i + step])
                threading.Event().wait(0.0005)

    threading.Thread(target=feed, daemon=True).start()
    ours.settimeout(10)
    return _read_response(ours, bodiless=bodiless)


@pytest.mark.parametrize("step", [1, 3, 7, 4096])
def test_response_bodies_by_length_chunks_and_end_of_connection(step: int) -> None:
    with _response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", step=step) as r:
        assert r.status == 200 and r.read() == b"hello" and r.read() == b""
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n"
               b"3\r\nabc\r\n10;ext=1\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\n")
    with _response(chunked, step=step) as r:
        assert r.getheader("x-a") == "b"
        assert r.read(2) == b"ab" and r.read() == b"c0123456789abcdef"
    with _response(b"HTTP/1.0 200 OK\r\n\r\nto the end", step=step) as r:
        assert r.read() == b"to the end"


def test_response_without_a_body() -> None:
    for head in (b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
                 b"HTTP/1.1 204 No Content\r\n\r\n"):
        with _response(head, step=4096) as r:
            assert r.read() == b""
    # HEAD: a length, but no body follows it
    with _response(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", step=4096, bodiless=True) as r:
        assert r.read() == b""


def test_a_cut_response_is_an_error_not_a_short_read() -> None:
    with _response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", step=4096) as r:
        with pytest.raises(APIError, match="middle of a response"):
            r.read()
    with _response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", step=4096) as r:
        with pytest.raises(APIError, match="middle of a response"):
            r.read()
    with pytest.raises(APIError, match="before answering"):
        _response(b"HTTP/1.1 200 OK\r\n", step=4096)
