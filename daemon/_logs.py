"""Reading a container's json-file log for ``logs``: tail, since/until, follow.

The shim writes one JSON object per line (``log``, ``stream``, ``time``) and
rotates to ``PATH.1`` … ``PATH.N``; this reads them oldest first.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator

__all__ = ["read_log", "parse_time", "frame", "format_time"]


def parse_time(value: str | None) -> float | None:
    """Docker's ``since``/``until``: unix seconds (with fraction) or RFC 3339."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    text = value.strip().replace("Z", "+00:00")
    if "." in text:  # Python wants at most microseconds
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        tail = rest[len(digits):]
        text = f"{head}.{digits[:6]}{tail}"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"invalid time {value!r}: use unix seconds or RFC 3339") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def format_time(ns: int | None = None) -> str:
    ns = time.time_ns() if ns is None else ns
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def frame(stream: str, data: bytes) -> bytes:
    """Docker's 8-byte header for multiplexed (no tty) streams."""
    kind = 2 if stream == "stderr" else 1
    return bytes([kind, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def _files(path: str) -> list[str]:
    rotated = []
    n = 1
    while os.path.exists(f"{path}.{n}"):
        rotated.append(f"{path}.{n}")
        n += 1
    return [*reversed(rotated), path]


def _entries(path: str) -> Iterator[dict[str, Any]]:
    for name in _files(path):
        try:
            with open(name, "rb") as f:
                yield from _parsed(f)
        except FileNotFoundError:
            continue


def read_log(path: str, *, stdout: bool = True, stderr: bool = True, tail: int | None = None,
             since: float | None = None, until: float | None = None, follow: bool = False,
             running: Callable[[], bool] = lambda: False) -> Iterator[dict[str, Any]]:
    """Log entries in order; with ``follow``, new ones until ``running()`` turns false."""
    def wanted(entry: dict[str, Any]) -> bool:
        return _wanted(entry, stdout=stdout, stderr=stderr, since=since, until=until)

    entries = [e for e in _entries(path) if wanted(e)]
    if tail is not None and tail >= 0:
        entries = entries[-tail:] if tail else []
    yield from entries
    if follow:
        yield from _follow(path, wanted, running)


def _wanted(entry: dict[str, Any], *, stdout: bool, stderr: bool, since: float | None,
            until: float | None) -> bool:
    """Whether the entry is of a stream asked for, and in the time asked for (if it says)."""
    stream = entry.get("stream")
    if (stream == "stderr" and not stderr) or (stream != "stderr" and not stdout):
        return False
    if since is not None or until is not None:
        t = parse_time(entry.get("time"))
        if t is not None and since is not None and t < since:
            return False
        if t is not None and until is not None and t > until:
            return False
    return True


def _follow(path: str, wanted: Callable[[dict[str, Any]], bool],
            running: Callable[[], bool]) -> Iterator[dict[str, Any]]:
    """The live file from where it ends now; a rotation starts it afresh.  Ends a few
    polls after the container, or with the file."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    try:
        f.seek(0, os.SEEK_END)
        inode = os.fstat(f.fileno()).st_ino
        pending = b""
        idle_after_exit = 0
        while True:
            chunk = f.read(65536)
            if chunk:
                *lines, pending = (pending + chunk).split(b"\n")
                yield from (e for e in _parsed(lines) if wanted(e))
                continue
            try:
                if os.stat(path).st_ino != inode:
                    f.close()
                    f = open(path, "rb")
                    inode = os.fstat(f.fileno()).st_ino
                    continue
            except FileNotFoundError:
                return
            if not running():
                idle_after_exit += 1
                if idle_after_exit > 2:
                    return
            time.sleep(0.1)
    finally:
        f.close()


def _parsed(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The entries of JSON lines; a line that is not JSON is skipped."""
    for line in lines:
        try:
            yield json.loads(line)
        except ValueError:
            continue
