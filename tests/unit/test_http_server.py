"""rctrd's HTTP layer against raw bytes: what the API fuzz suite (tests/fuzz) found, pinned down.

An ``APIServer`` in this process on a socket in a temporary directory, with a
few routes; requests are written byte for byte, answers read to the end.
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


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, threading.Event]]]:
    events = {"left": threading.Event()}
    router = Router()
    router.add("GET", "/ping", lambda req: req.send(200, b"OK", content_type="text/plain"))
    router.add("GET", "/filtered", lambda req: req.send_json(req.filters()))
    router.add("POST", "/json", lambda req: req.send_json(req.json()))

    def wait_for_client(req: Request) -> None:
        out = req.stream()
        while not req.client_gone():
            time.sleep(0.05)
        events["left"].set()
        out.close()

    router.add("GET", "/quiet-stream", wait_for_client)
    path = str(tmp_path / "api.sock")
    srv = APIServer(path, router)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield path, events
    srv.shutdown()
    srv.server_close()


def exchange(path: str, raw: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_a_get_with_a_body_keeps_keep_alive_in_step(server: tuple[str, dict]) -> None:
    data = exchange(server[0], b"GET /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nnull"
                               b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.count(b"HTTP/1.1 200 ") == 2 and b" 400 " not in data


def test_a_request_line_without_a_version_is_answered_with_a_status_line(server: tuple[str, dict]) -> None:
    data = exchange(server[0], b"GET /ping\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 ")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["message"]


@pytest.mark.parametrize("version", [b"HTTP/0.9", b"HTTP/2.0"])
def test_unsupported_versions_get_505_with_a_status_line(server: tuple[str, dict], version: bytes) -> None:
    assert exchange(server[0], b"GET /ping " + version + b"\r\n\r\n").startswith(b"HTTP/1.1 505 ")


def test_garbage_gets_a_json_400(server: tuple[str, dict]) -> None:
    data = exchange(server[0], b"\x16\x03\x01 nonsense here now\r\n\r\n")
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 ") and b"application/json" in head
    assert json.loads(body)["message"]


@pytest.mark.parametrize(("request_line", "status"), [(b"PATCH /ping", b"405"), (b"FOO /nowhere", b"404")])
def test_other_methods_go_to_the_router(server: tuple[str, dict], request_line: bytes, status: bytes) -> None:
    assert exchange(server[0], request_line + b" HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 " + status)


@pytest.mark.parametrize("filters", ['{"status": false}', '{"dangling": 8}', '{"a": [null]}', '[1]'])
def test_filters_of_the_wrong_shape_are_400(server: tuple[str, dict], filters: str) -> None:
    from urllib.parse import quote

    data = exchange(server[0], b"GET /filtered?filters=%s HTTP/1.1\r\nHost: x\r\n\r\n" % quote(filters).encode())
    assert data.startswith(b"HTTP/1.1 400 ")


def test_filters_as_lists_and_maps(server: tuple[str, dict]) -> None:
    data = exchange(server[0], b"GET /filtered?filters=%7B%22a%22%3A%5B%22x%22%5D%2C%22b%22%3A%7B%22y%22"
                               b"%3Atrue%7D%2C%22c%22%3A%22z%22%7D HTTP/1.1\r\nHost: x\r\n\r\n")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1]) == {"a": ["x"], "b": ["y"], "c": ["z"]}


def test_json_nested_past_the_stack_is_400(server: tuple[str, dict]) -> None:
    body = b"[" * 100000
    data = exchange(server[0], b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert data.startswith(b"HTTP/1.1 400 ")


def test_a_quiet_stream_ends_when_its_client_leaves(server: tuple[str, dict]) -> None:
    path, events = server
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.sendall(b"GET /quiet-stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 200 ")
        assert not events["left"].wait(0.3)
    assert events["left"].wait(5), "the handler did not notice that its client had gone"


def test_path_parameters_are_percent_decoded() -> None:
    router = Router()
    router.add("GET", "/images/{name:path}/json", lambda req: None)
    router.add("GET", "/containers/{id}/json", lambda req: None)
    # docker-py quotes the arguments it puts in a path: "@" becomes %40
    _, params = router.match("GET", "/images/busybox%40sha256:ab12/json")
    assert params == {"name": "busybox@sha256:ab12"}
    _, params = router.match("GET", "/images/localhost:5000/x/y:1/json")
    assert params == {"name": "localhost:5000/x/y:1"}
    _, params = router.match("GET", "/containers/a%2Fb/json")  # an escaped / stays in its segment
    assert params == {"id": "a/b"}


@pytest.mark.parametrize("request_line", [b"GET\xa0/_ping HTTP/1.1", b"GET /_ping\x85HTTP/1.1",
                                          b"GET\t/_ping HTTP/1.1", b"GET  /_ping HTTP/1.1",
                                          b"GET /_ping HTTP/1.1 extra", b"GET /_ping HTTP/1.1\x85",
                                          b"GET /_p\xa0ing HTTP/1.1"])
def test_a_request_line_is_split_on_single_spaces_only(server: tuple[str, dict],
                                                       request_line: bytes) -> None:
    data = exchange(server[0], request_line + b"\r\n\r\n")
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 "), head
    assert b"single spaces" in body or b"no HTTP version" in body
