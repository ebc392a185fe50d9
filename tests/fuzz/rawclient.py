"""Raw HTTP over rctrd's unix socket, for the API fuzz tests; run as the socket's owner.

rctrd serves only its owner's uid (SO_PEERCRED), so the root test process
generates the requests and this one long-lived process, run as the user,
sends them: one JSON line a request on stdin, ``{"raw": base64 bytes,
"method": the first request's method, "half_close": bool, "head_timeout": s,
"stream_window": s}``, one JSON line an answer on stdout.  Requests are sent
as bytes, so request lines and headers can be as broken as the test likes;
answers are parsed leniently and reported, never trusted.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import sys
import time
from typing import Any

BODY_SEEN = 2000  # bytes of each answer's body reported
_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})(?: [^\r\n]*)?\r\n")


def _chunked_end(data: bytes, start: int) -> int | None:
    """Where a complete chunked body starting at ``start`` ends; None if not all here yet.

    Raises ValueError when the chunk framing is broken."""
    pos = start
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            if len(data) - pos > 64:
                raise ValueError(f"chunk size line too long: {data[pos:pos + 40]!r}")
            return None
        size = int(data[pos:eol].split(b";")[0].strip(), 16)  # ValueError: broken framing
        pos = eol + 2
        if size == 0:
            end = data.find(b"\r\n", pos)  # no trailers from rctrd: just the blank line
            return None if end < 0 else end + 2
        if len(data) < pos + size + 2:
            return None
        if data[pos + size:pos + size + 2] != b"\r\n":
            raise ValueError("chunk not followed by CRLF")
        pos += size + 2


def parse(data: bytes, first_method: str, eof: bool) -> dict[str, Any]:
    """The answers in ``data``: [{status, headers, body (start), complete}], or where it broke."""
    answers: list[dict[str, Any]] = []
    pos = 0
    method = first_method
    while pos < len(data):
        head_end = data.find(b"\r\n\r\n", pos)
        if head_end < 0:
            if not eof and _STATUS.match(data, pos) is None and len(data) - pos < 16:
                break  # the status line may not be complete yet
            if not eof:
                break
            return {"answers": answers, "malformed": f"no end of headers: {data[pos:pos + 80]!r}"}
        found = _STATUS.match(data, pos)
        if found is None:
            return {"answers": answers, "malformed": f"not an HTTP status line: {data[pos:pos + 80]!r}"}
        status = int(found.group(1))
        headers: dict[str, str] = {}
        for line in data[found.end():head_end].split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                return {"answers": answers, "malformed": f"bad header line {line!r}"}
            headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
        body_start = head_end + 4
        answer: dict[str, Any] = {"status": status, "headers": headers, "complete": False}
        end: int | None
        answers.append(answer)
        if status == 101:  # a raw stream from here on
            answer["complete"] = True
            break
        if 100 <= status < 200:  # 100 Continue: the real answer follows
            answer["complete"] = True
            pos = body_start
            continue
        if method == "HEAD" and headers.get("connection", "").lower() == "close":
            end = len(data) if eof else None  # an error about a request it could not read: a
            # daemon that could not parse the request line cannot know it said HEAD
        elif method == "HEAD" or status in (204, 304):
            end = body_start
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            try:
                end = _chunked_end(data, body_start)
            except ValueError as exc:
                return {"answers": answers, "malformed": f"broken chunked body: {exc}"}
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                return {"answers": answers, "malformed": "bad Content-Length in the answer"}
            end = body_start + length if len(data) >= body_start + length else None
        else:
            end = len(data) if eof else None  # the body runs to the end of the connection
        answer["body"] = data[body_start:body_start + BODY_SEEN if end is None
                              else min(end, body_start + BODY_SEEN)].decode("utf-8", "replace")
        if end is None:
            break
        answer["complete"] = True
        pos = end
        method = "GET"  # anything pipelined after the first request is plain
    return {"answers": answers, "malformed": None}


def exchange(path: str, request: dict[str, Any]) -> dict[str, Any]:
    raw = base64.b64decode(request["raw"])
    method = request.get("method", "GET")
    half_close = request.get("half_close", True)
    head_timeout = request.get("head_timeout", 8.0)
    window = request.get("stream_window", 0.5)
    result: dict[str, Any] = {"timed_out": False, "eof": False}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    started = time.monotonic()
    try:
        try:
            sock.connect(path)
        except OSError as exc:
            return {"connect_error": str(exc)}
        try:
            sock.sendall(raw)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError as exc:  # the daemon may answer and close before reading everything
            result["send_error"] = str(exc)
        data = bytearray()
        deadline = started + head_timeout
        parsed = parse(bytes(data), method, False)
        while True:
            if parsed["answers"] and deadline > time.monotonic() + window:
                deadline = time.monotonic() + window  # a head came: streams get a short look
            if parsed["answers"] and parsed["answers"][0]["complete"] and not half_close:
                break  # kept alive: the first answer is what was asked
            left = deadline - time.monotonic()
            if left <= 0:
                result["timed_out"] = True
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(1 << 16)
            except TimeoutError:
                result["timed_out"] = True
                break
            except OSError as exc:
                result["recv_error"] = str(exc)
                break
            if not chunk:
                result["eof"] = True
                break
            data += chunk
            parsed = parse(bytes(data), method, False)
        result.update(parse(bytes(data), method, result["eof"]))
        result["bytes"] = len(data)
    finally:
        sock.close()
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def main() -> None:
    path = sys.argv[1]
    for line in sys.stdin:
        try:
            out = exchange(path, json.loads(line))
        except Exception as exc:  # noqa: BLE001 - report the client's own failure, keep going
            out = {"client_error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
