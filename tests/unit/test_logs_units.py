"""daemon/_logs.py: reading a container's json-file log, rotated files and follow included."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from rctr.daemon._logs import read_log


def _line(log: str, stream: str = "stdout", t: str = "2024-01-01T00:00:00Z") -> bytes:
    return json.dumps({"log": log, "stream": stream, "time": t}).encode() + b"\n"


def _logs(entries: Any) -> list[str]:
    return [e["log"] for e in entries]


def test_rotated_files_oldest_first_filtered_and_tailed(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    (tmp_path / "c-json.log.2").write_bytes(_line("a", t="2024-01-01T00:00:01Z"))
    (tmp_path / "c-json.log.1").write_bytes(_line("b", "stderr", "2024-01-01T00:00:02Z")
                                             + b"not json\n")
    path.write_bytes(_line("c", t="2024-01-01T00:00:03Z") + _line("d", t="2024-01-01T00:00:04Z"))
    p = str(path)
    assert _logs(read_log(p)) == ["a", "b", "c", "d"]
    assert _logs(read_log(p, stderr=False)) == ["a", "c", "d"]
    assert _logs(read_log(p, stdout=False)) == ["b"]
    assert _logs(read_log(p, tail=2)) == ["c", "d"]
    assert _logs(read_log(p, tail=0)) == [] and _logs(read_log(p, tail=-1)) == ["a", "b", "c", "d"]
    since = 1704067202.0  # 2024-01-01T00:00:02Z
    assert _logs(read_log(p, since=since, until=since + 1)) == ["b", "c"]
    assert _logs(read_log(str(tmp_path / "none.log"))) == []


def test_follow_reads_appends_and_a_new_file_until_the_container_ends(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    path.write_bytes(_line("old"))
    running = threading.Event()
    running.set()
    entries = read_log(str(path), follow=True, stderr=False, running=running.is_set)
    assert next(entries)["log"] == "old"

    def write() -> None:
        time.sleep(0.3)
        with open(path, "ab") as f:
            half = _line("new")
            f.write(half[:5])
            f.flush()
            time.sleep(0.2)
            f.write(half[5:] + _line("hidden", "stderr"))
        time.sleep(0.3)
        fresh = tmp_path / "fresh"
        fresh.write_bytes(_line("rotated"))
        os.replace(fresh, path)  # a rotation: another file at the path
        time.sleep(0.3)
        running.clear()

    writer = threading.Thread(target=write)
    writer.start()
    started = time.monotonic()
    assert _logs(entries) == ["new", "rotated"]
    writer.join()
    assert time.monotonic() - started < 5


def test_follow_ends_when_the_log_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    path.write_bytes(b"")
    entries = read_log(str(path), follow=True, running=lambda: True)
    threading.Timer(0.3, path.unlink).start()
    assert list(entries) == []
