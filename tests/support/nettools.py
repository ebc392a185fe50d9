"""Loopback helpers for tests of containers' networks: free ports, fetching a page."""

from __future__ import annotations

import socket
import time

__all__ = ["HELPERS", "SERVE_PAGE", "free_port", "fetch", "listening"]

# The processes a container's network runs on the host.
HELPERS = ("slirp4netns", "passt", "passt.avx2", "pasta", "rctr-ports")
# A busybox command line: serve "page-from-NAME" on port 80.
SERVE_PAGE = "echo page-from-{0} > /www/index.html && exec httpd -f -p 80 -h /www"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(port: int, host: str = "127.0.0.1", timeout: float = 10) -> str:
    """GET / over a plain socket, retried while the server inside starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            if data:
                return data.decode(errors="replace")
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing answered on {host}:{port}")
        time.sleep(0.1)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
