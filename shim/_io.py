"""The container's output as Docker writes it: json-file log lines and attach frames.

Both formats are Docker's, so the daemon can serve ``docker logs`` from the
file and ``docker attach`` from the socket without converting anything:

- json-file: one object per line, ``{"log": "...\\n", "stream": "stdout",
  "time": "...Z"}``, split at newlines (moby daemon/logger/jsonfilelog);
  rotated like Docker's ``max-size``/``max-file`` (daemon/logger/loggerutils).
- attach: ``[stream, 0, 0, 0, size (big-endian uint32)] + data``
  (moby pkg/stdcopy).
"""

from __future__ import annotations

import codecs
import errno
import json
import os
import time

__all__ = ["STDOUT", "STDERR", "STREAM_NAMES", "frame", "rfc3339_nano", "log_lines",
           "LineDecoder", "JsonFileLog"]

STDOUT, STDERR = 1, 2
STREAM_NAMES = {STDOUT: "stdout", STDERR: "stderr"}


def rfc3339_nano(ns: int | None = None) -> str:
    """UTC time with nanoseconds and a Z, as Docker's log lines and events carry it."""
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def frame(stream: int, data: bytes) -> bytes:
    """One attach frame (moby pkg/stdcopy); the size field limits a frame to 4 GiB - 1."""
    return bytes((stream, 0, 0, 0)) + len(data).to_bytes(4, "big") + data


def log_lines(stream: str, text: str, stamp: str) -> list[bytes]:
    """json-file lines for ``text``: one per newline-terminated line, plus the tail if any.

    A tail without a newline is written as it is (Docker marks such lines
    partial; json-file keeps them as a log without the newline).
    """
    out = []
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        entry = {"log": text[start:end], "stream": stream, "time": stamp}
        out.append(json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        start = end
    return out


class LineDecoder:
    """Bytes of one stream to text, holding back a UTF-8 sequence cut by a read.

    Bytes that are not UTF-8 become U+FFFD, as Go's encoding/json writes them.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def decode(self, data: bytes, final: bool = False) -> str:
        return self._decoder.decode(data, final)


class JsonFileLog:
    """An append-only json-file log with Docker's rotation.

    As in Docker, the size is checked before each write: when the file has
    reached ``max_size`` it is rotated first (PATH -> PATH.1 -> ... ->
    PATH.(max_file-1), the oldest dropped), so one file exceeds the limit by
    at most one write.  With ``max_file`` 1 the file is truncated instead.
    """

    def __init__(self, path: str, max_size: int = 0, max_file: int = 1) -> None:
        self.path = path
        self.max_size = max_size
        self.max_file = max(1, max_file)
        self._fd = self._open(0)
        self.size = os.fstat(self._fd).st_size
        # Lines lost to a full disk since the last write that went through, and why; the
        # next write that goes through says so in the log (the container is not stopped
        # for it, as under Docker).
        self.dropped = 0
        self.dropped_why = ""
        self._torn = False  # a write cut short left half a line in the file

    def _open(self, extra: int) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | extra,
                       0o640)

    def write(self, lines: list[bytes]) -> None:
        """Append log lines, rotating between two lines whenever the file is full.

        The lines between two rotations go out in one write.  On a full disk (or
        quota) the lines are dropped and counted, never raised: the container's
        output keeps flowing to attached clients, and the log says what it lost
        once there is room again."""
        if self.dropped:
            lost = (f"rctr: {self.dropped} line(s) of output were not logged: "
                    f"{self.dropped_why}\n")
            lines = [*log_lines("stderr", lost, rfc3339_nano()), *lines]
        try:
            batch = bytearray(b"\n" if self._torn else b"")
            for line in lines:
                if self.max_size > 0 and self.size + len(batch) >= self.max_size:
                    self._append(batch)
                    self.rotate()
                batch += line
            self._append(batch)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self.dropped += len(lines) - (1 if self.dropped else 0)
            self.dropped_why = f"{exc.strerror} for {self.path}"
            return
        self.dropped = 0

    def _append(self, data: bytearray) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                self.size += written
                self._torn = True
                view = view[written:]
            self._torn = False
        finally:
            del view
            data.clear()

    def rotate(self) -> None:
        os.close(self._fd)
        if self.max_file > 1:
            for n in range(self.max_file - 1, 1, -1):
                _rename_if_exists(f"{self.path}.{n - 1}", f"{self.path}.{n}")
            _rename_if_exists(self.path, f"{self.path}.1")
            self._fd = self._open(0)
        else:
            self._fd = self._open(os.O_TRUNC)
        self.size = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _rename_if_exists(src: str, dst: str) -> None:
    try:
        os.rename(src, dst)
    except FileNotFoundError:
        pass
