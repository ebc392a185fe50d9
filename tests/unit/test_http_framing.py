"""rctrd's HTTP/1.1 framing (h11) against raw bytes: malformed lengths, chunk sizes and request
lines are refused quickly, and the same server then serves the next client.

An ``APIServer`` in this process on a socket in a temporary directory; each request is written
byte for byte on its own connection, which the client keeps open (unless the test says it
closes), so an answer that waits for more input shows as a timeout.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rctr.daemon._http import APIServer, Request, Router

LIMIT = 1.0  # seconds a malformed request may take to be answered or closed


def _hijack_echo(req: Request) -> None:
    sock = req.hijack()
    while data := sock.recv(1024):
        sock.sendall(data.upper())


def _own_head(req: Request) -> None:
    """As the archive's GET does: a stream with a header of its own (the path's stat)."""
    out = req.stream("application/x-tar", {"X-Stat": "e30="})
    out.write(b"tar")
    out.close()


def _stream(req: Request) -> None:
    out = req.stream()
    out.json({"n": 1})
    out.write(b"")  # nothing: no chunk, which would read as the end
    out.json({"n": 2})
    out.close()


@pytest.fixture
def path(tmp_path: Path) -> Iterator[str]:
    router = Router()
    router.add("GET", "/ping", lambda req: req.send(200, b"OK", content_type="text/plain"))
    router.add("POST", "/json", lambda req: req.send_json(req.json()))
    router.add("POST", "/attach", _hijack_echo)
    router.add("GET", "/own-head", _own_head)
    router.add("GET", "/stream", _stream)
    sock = str(tmp_path / "api.sock")
    srv = APIServer(sock, router)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield sock
    srv.shutdown()
    srv.server_close()


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    return sock


def _read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float, bool]:
    """What comes until the server closes, or ``limit`` seconds pass: (data, seconds, closed)."""
    started = time.monotonic()
    data = b""
    while (left := started + limit - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:  # closed with our bytes unread: a unix socket says so
            return data, time.monotonic() - started, True
        if not chunk:
            return data, time.monotonic() - started, True
        data += chunk
    return data, time.monotonic() - started, False


def refused(path: str, raw: bytes, close_after: bool = False) -> tuple[bytes, float]:
    """Send ``raw`` and check it is answered with a JSON 400 (or the connection just closed)
    within LIMIT, the connection then closed; the answer and the seconds it took."""
    with _connect(path) as sock:
        sock.sendall(raw)
        if close_after:
            sock.shutdown(socket.SHUT_WR)
        data, seconds, closed = _read_until_closed(sock, LIMIT)
    assert closed, f"no answer and still open after {LIMIT}s: {data!r}"
    if data:
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), data
        assert b"\r\nContent-Type: application/json\r\n" in head, head
        assert json.loads(body)["message"], body
    serves_the_next_client(path)
    return data, seconds


def serves_the_next_client(path: str) -> None:
    with _connect(path) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, _, closed = _read_until_closed(sock, LIMIT)
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\nOK") and closed, data


BODY = b'{"a": 1}GET /ping HTTP/1.1\r\nHost: x\r\n\r\n'  # read as a request if the length is


@pytest.mark.parametrize("length", [b"-5", b"0x10", b"1_0", b"+5", b"5 5", b"", b"1e1"])
@pytest.mark.parametrize("target", [b"POST /json", b"GET /ping"])
def test_a_content_length_is_decimal_digits(path: str, length: bytes, target: bytes) -> None:
    data, _ = refused(path, target + b" HTTP/1.1\r\nHost: x\r\nContent-Length: " + length +
                      b"\r\n\r\n" + BODY)
    assert data, "a length that cannot be read is answered"


def test_two_different_content_lengths_are_refused(path: str) -> None:
    refused(path, b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nContent-Length: 9\r\n\r\n" + BODY)


@pytest.mark.parametrize("size", [b"-1", b"0x10", b"1_0", b"+8", b" 8", b"", b"g"])
def test_a_chunk_size_is_hex_digits(path: str, size: bytes) -> None:
    data, _ = refused(path, b"POST /json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                      size + b"\r\n" + BODY[:8] + b"\r\n0\r\n\r\n")
    assert data


@pytest.mark.parametrize("after", [b": 1}\r\n", b"XX", b"\n"])
def test_a_chunk_is_followed_by_crlf(path: str, after: bytes) -> None:
    """Longer than its size, or ended by other bytes (h11 before 0.16 skipped any two:
    CVE-2025-43859, hence h11>=0.16)."""
    refused(path, b"POST /json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"2\r\n{}" + after + b"0\r\n\r\n")


@pytest.mark.parametrize("cut", [b"8\r\n{\"a\"", b"8\r\n" + BODY[:8], b"8\r\n" + BODY[:8] + b"\r\n"])
def test_a_truncated_chunked_body_then_close_is_400(path: str, cut: bytes) -> None:
    data, _ = refused(path, b"POST /json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + cut,
                      close_after=True)
    assert data


def test_a_truncated_chunked_body_then_quiet_holds_only_its_own_connection(path: str) -> None:
    """No read timeout (a slow upload is not an error): the quiet client waits, the others are
    served meanwhile, and its answer comes as soon as it closes its side."""
    with _connect(path) as quiet:
        quiet.sendall(b"POST /json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n{\"a\"")
        data, _, closed = _read_until_closed(quiet, 0.3)
        assert (data, closed) == (b"", False)
        for _ in range(3):
            serves_the_next_client(path)
        quiet.shutdown(socket.SHUT_WR)
        data, seconds, closed = _read_until_closed(quiet, LIMIT)
    assert closed and data.startswith(b"HTTP/1.1 400 "), data


def test_a_route_that_reads_no_body_answers_at_once_whatever_follows(path: str) -> None:
    with _connect(path) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n{\"a\"")
        data, _, closed = _read_until_closed(sock, 0.5)
    assert data.startswith(b"HTTP/1.1 200 ") and not closed


@pytest.mark.parametrize("line", [b"GET\t/ping HTTP/1.1", b"GET /ping\tHTTP/1.1", b"GET\t/ping\tHTTP/1.1",
                                  b"GET /ping HTTP/1.1\t", b"\tGET /ping HTTP/1.1"])
def test_a_request_line_with_tabs_is_400(path: str, line: bytes) -> None:
    data, _ = refused(path, line + b"\r\nHost: x\r\n\r\n")
    assert b"single spaces" in data


def test_an_http_1_1_request_without_host_is_400_as_dockerd(path: str) -> None:
    data, _ = refused(path, b"GET /ping HTTP/1.1\r\n\r\n")
    assert b"Host" in data


def test_an_http_1_0_request_needs_no_host_and_is_not_kept_alive(path: str) -> None:
    with _connect(path) as sock:
        sock.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
        data, _, closed = _read_until_closed(sock, LIMIT)
    assert data.startswith(b"HTTP/1.1 200 ") and closed


def test_pipelined_requests_are_answered_in_order(path: str) -> None:
    with _connect(path) as sock:
        sock.sendall(b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n" + BODY)
        data, _, closed = _read_until_closed(sock, 0.5)
    assert not closed and data.count(b"HTTP/1.1 200 ") == 2
    assert b'{"a": 1}\n' in data and data.endswith(b"OK")


def test_a_chunked_answer_and_keep_alive_after_it(path: str) -> None:
    with _connect(path) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        data, _, _ = _read_until_closed(sock, 0.5)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert b"Transfer-Encoding: chunked" in lines and not any(b"Content-Length" in x for x in lines)
    assert rest.startswith(b'9\r\n{"n": 1}\n\r\n9\r\n{"n": 2}\n\r\n0\r\n\r\nHTTP/1.1 200 '), rest


def test_a_head_request_gets_the_head_alone(path: str) -> None:
    with _connect(path) as sock:
        sock.sendall(b"HEAD /ping HTTP/1.1\r\nHost: x\r\n\r\nHEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        data, _, _ = _read_until_closed(sock, 0.5)
    first, second, third = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert b"Content-Length: 2\r\n" in first and first.endswith(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked\r\n" in second and second.endswith(b"\r\n\r\n")
    assert third.endswith(b"\r\n\r\nOK")


def test_expect_100_continue(path: str) -> None:
    with _connect(path) as sock:
        sock.sendall(b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nExpect: 100-continue\r\n\r\n")
        data, _, _ = _read_until_closed(sock, 0.5)
        assert data == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(BODY[:8])
        data, _, _ = _read_until_closed(sock, 0.5)
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b'{"a": 1}\n')


def test_a_route_can_write_its_own_head(path: str) -> None:
    with _connect(path) as sock:
        sock.sendall(b"GET /own-head HTTP/1.1\r\nHost: x\r\n\r\n")
        data, _, _ = _read_until_closed(sock, 0.5)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"\r\nX-Stat: e30=\r\n" in head and b"\r\nApi-Version: " in head
    assert body == b"3\r\ntar\r\n0\r\n\r\n"


@pytest.mark.parametrize("upgrade", [True, False])
def test_hijack_with_and_without_upgrade(path: str, upgrade: bool) -> None:
    head = b"POST /attach HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
    if upgrade:
        head += b"Connection: Upgrade\r\nUpgrade: tcp\r\n"
    with _connect(path) as sock:
        sock.sendall(head + b"\r\n")
        data, _, _ = _read_until_closed(sock, 0.5)
        sock.sendall(b"hello")
        echoed, _, _ = _read_until_closed(sock, 0.5)
        sock.shutdown(socket.SHUT_WR)
        rest, _, closed = _read_until_closed(sock, LIMIT)
    lines = data.split(b"\r\n")
    assert data.endswith(b"\r\n\r\n")
    if upgrade:
        assert lines[0] == b"HTTP/1.1 101 Switching Protocols"
        assert b"Upgrade: tcp" in lines and b"Connection: Upgrade" in lines
    else:
        assert lines[0] == b"HTTP/1.1 200 OK"
    assert b"Content-Type: application/vnd.docker.raw-stream" in lines
    assert not any(line.lower().startswith((b"content-length", b"transfer-encoding")) for line in lines)
    assert echoed == b"HELLO" and rest == b"" and closed
