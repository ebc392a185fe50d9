"""The shim's formats, in-process: attach frames, json-file lines and rotation,
exit records, control lines, shim.json, the command line, and the attach
clients' back-pressure."""

from __future__ import annotations

import json
import os
from typing import Any
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from rctr.core.errors import InvalidArgument
from rctr.shim._attach_server import HARD_LIMIT, STALL_SECONDS, AttachServer, Client
from rctr.shim._request import load_config
from rctr.shim._control import ControlParser
from rctr.shim._exit import exit_record, open_fifo, write_exit
from rctr.shim._io import JsonFileLog, LineDecoder, frame, log_lines, rfc3339_nano
from rctr.shim._lifecycle import UsageError, main, parse_args


def test_frame_is_dockers_stdcopy_header() -> None:
    assert frame(1, b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    big = b"x" * 70000
    assert frame(2, big)[:8] == bytes([2, 0, 0, 0]) + (70000).to_bytes(4, "big")
    assert frame(1, b"") == b"\x01\x00\x00\x00\x00\x00\x00\x00"


def test_rfc3339_nano() -> None:
    assert rfc3339_nano(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert rfc3339_nano(5) == "1970-01-01T00:00:00.000000005Z"
    assert re.match(r"^\d{4}-.*\.\d{9}Z$", rfc3339_nano())


def test_log_lines_split_at_newlines_and_keep_a_partial_tail() -> None:
    lines = log_lines("stdout", "a\nb\n\ntail", "T")
    assert [json.loads(x) for x in lines] == [
        {"log": "a\n", "stream": "stdout", "time": "T"},
        {"log": "b\n", "stream": "stdout", "time": "T"},
        {"log": "\n", "stream": "stdout", "time": "T"},
        {"log": "tail", "stream": "stdout", "time": "T"},
    ]
    assert all(x.endswith(b"\n") and x.count(b"\n") == 1 for x in lines)
    assert lines[0] == b'{"log":"a\\n","stream":"stdout","time":"T"}\n'  # Docker's key order
    assert log_lines("stderr", "", "T") == []


def test_line_decoder_holds_a_cut_utf8_sequence_and_replaces_garbage() -> None:
    d = LineDecoder()
    euro = "€".encode()
    assert d.decode(b"a" + euro[:2]) == "a"
    assert d.decode(euro[2:] + b"\n") == "€\n"
    assert d.decode(b"\xff\n") == "\ufffd\n"
    assert d.decode(euro[:1]) == "" and d.decode(b"", final=True) == "\ufffd"


def entries(path: Path) -> list[str]:
    return [json.loads(line)["log"] for line in path.read_text().splitlines()]


def test_log_rotation_keeps_max_file_files(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    log = JsonFileLog(str(path), max_size=100, max_file=3)
    for i in range(30):
        log.write(log_lines("stdout", f"line {i:02d}\n", "T"))
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    kept = entries(path.with_name("c-json.log.2")) + entries(path.with_name("c-json.log.1")) + \
        entries(path)
    numbers = [int(x.split()[1]) for x in kept]
    assert numbers == list(range(numbers[0], 30))
    for p in tmp_path.iterdir():
        size = p.stat().st_size
        assert size < 100 + 60, p  # one line over at most, as Docker


def test_log_rotation_between_lines_of_one_read(tmp_path: Path) -> None:
    path = tmp_path / "log"
    log = JsonFileLog(str(path), max_size=100, max_file=2)
    log.write(log_lines("stdout", "".join(f"l{i}\n" for i in range(10)), "T"))
    log.close()
    assert entries(path.with_name("log.1")) + entries(path) == [f"l{i}\n" for i in range(10)][-len(
        entries(path.with_name("log.1")) + entries(path)):]
    assert entries(path)[-1] == "l9\n" and path.stat().st_size < 160


def test_log_with_one_file_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "log"
    log = JsonFileLog(str(path), max_size=80, max_file=1)
    for i in range(10):
        log.write(log_lines("stderr", f"x{i}\n", "T"))
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == ["log"]
    assert entries(path)[-1] == "x9\n" and len(entries(path)) < 10


def test_log_appends_and_counts_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"x" * 500)
    log = JsonFileLog(str(path), max_size=100, max_file=2)
    assert log.size == 500
    log.write(log_lines("stdout", "new\n", "T"))
    log.close()
    assert (tmp_path / "log.1").read_bytes() == b"x" * 500 and entries(path) == ["new\n"]


def test_no_rotation_without_max_size(tmp_path: Path) -> None:
    log = JsonFileLog(str(tmp_path / "log"))
    for _ in range(100):
        log.write(log_lines("stdout", "y" * 100 + "\n", "T"))
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == ["log"]


def test_exit_record_is_dockers() -> None:
    assert exit_record(3 << 8, 0) == {"exit_code": 3, "signal": None,
                                      "finished_at": "1970-01-01T00:00:00.000000000Z"}
    killed = exit_record(signal.SIGKILL)
    assert (killed["exit_code"], killed["signal"]) == (137, 9)
    assert "error" not in killed
    # Why the shim stopped the container, when it did (a helper it needed died).
    assert exit_record(signal.SIGKILL, 0, "slirp4netns died")["error"] == "slirp4netns died"


def test_write_exit_is_atomic_json(tmp_path: Path) -> None:
    write_exit(str(tmp_path / "exit.json"), 0)
    assert json.loads((tmp_path / "exit.json").read_text())["exit_code"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["exit.json"]


def test_exit_fifo_hangs_up_when_the_shim_closes_it(tmp_path: Path) -> None:
    import select

    held = open_fifo(str(tmp_path / "exit"))
    reader = os.open(tmp_path / "exit", os.O_RDONLY | os.O_NONBLOCK)
    poller = select.poll()
    poller.register(reader, select.POLLIN)
    assert poller.poll(0) == []
    os.close(held)
    assert poller.poll(1000)[0][1] & select.POLLHUP
    os.close(reader)


def test_control_parser() -> None:
    p = ControlParser()
    assert p.feed(b'{"op":"close_') == []
    assert p.feed(b'stdin"}\n{"op":"resize","width":100,"height":30}\n\n') == [
        {"op": "close_stdin"}, {"op": "resize", "width": 100, "height": 30}]
    bad = p.feed(b'nope\n{"op":"fly"}\n{"op":"resize","width":0,"height":1}\n[1]\n')
    assert len(bad) == 4 and all(isinstance(b, InvalidArgument) for b in bad)
    assert isinstance(p.feed(b"x" * 5000)[0], InvalidArgument)
    assert p.feed(b'{"op":"close_stdin"}\n') == [{"op": "close_stdin"}]


def shim_json(tmp_path: Path, **change: object) -> str:
    raw = {"id": "c1", "bundle": "/b", "runtime": {"name": "crun", "root": "/r",
                                                   "path": "/usr/bin/crun"},
           "tty": True, "stdin": True, "stdin_once": True,
           "log": {"path": "/l/c1-json.log", "max_size": 1000, "max_file": 3},
           "width": 100, "height": 40}
    raw.update(change)
    path = tmp_path / "shim.json"
    path.write_text(json.dumps(raw))
    return str(path)


def test_shim_json_is_loaded(tmp_path: Path) -> None:
    cfg = load_config(shim_json(tmp_path))
    assert (cfg.id, cfg.bundle, cfg.runtime, cfg.runtime_root, cfg.runtime_path) == \
        ("c1", "/b", "crun", "/r", "/usr/bin/crun")
    assert (cfg.tty, cfg.stdin, cfg.stdin_once) == (True, True, True)
    assert (cfg.log_path, cfg.log_max_size, cfg.log_max_file) == ("/l/c1-json.log", 1000, 3)
    assert (cfg.width, cfg.height) == (100, 40)


@pytest.mark.parametrize("change", [
    {"id": "../x"}, {"bundle": "relative"}, {"runtime": {"name": "docker", "root": "/r"}},
    {"runtime": {"name": "rctr"}}, {"log": {}}, {"id": 5},
])
def test_shim_json_is_checked(tmp_path: Path, change: dict) -> None:
    with pytest.raises(InvalidArgument):
        load_config(shim_json(tmp_path, **change))


def test_missing_shim_json(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="missing"):
        load_config(str(tmp_path / "shim.json"))


def test_parse_args() -> None:
    assert parse_args(["/s", "--ready-fd", "5"]) == ("/s", 5)
    assert parse_args(["--ready-fd=7", "/s"]) == ("/s", 7)
    for bad in ([], ["/s"], ["/s", "--ready-fd", "x"], ["/s", "/t", "--ready-fd", "3"],
                ["/s", "--other", "--ready-fd", "3"]):
        with pytest.raises(UsageError):
            parse_args(bad)
    assert main(["--nope"]) == 2


def test_failure_is_reported_on_the_ready_fd(tmp_path: Path) -> None:
    # No shim.json: the shim must say so on the ready fd and leave nothing behind.
    # In a child: the shim makes itself a subreaper, which pytest must not become.
    import subprocess
    import sys

    r, w = os.pipe()
    proc = subprocess.run([sys.executable, "-m", "rctr.shim", str(tmp_path), "--ready-fd", str(w)],
                          pass_fds=(w,), timeout=30)
    os.close(w)
    assert proc.returncode == 1
    with os.fdopen(r, "rb") as f:
        report = json.loads(f.read())
    assert "shim.json" in report["error"] and "hint" in report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shim-log.json", "shim.pid"]


def _attached(tmp_path: Path, n: int) -> tuple[AttachServer, list[socket.socket], list[Client]]:
    server = AttachServer(str(tmp_path / "attach.sock"))
    peers, clients = [], []
    for _ in range(n):
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        peer.connect(str(tmp_path / "attach.sock"))
        peers.append(peer)
        client = None
        while client is None:
            client = server.accept()
        clients.append(client)
    return server, peers, clients


def test_a_client_behind_holds_back_until_it_stalls(tmp_path: Path) -> None:
    server, peers, (reader, stalled) = _attached(tmp_path, 2)
    try:
        chunk = b"x" * 65536
        while not server.backlogged():
            assert server.broadcast(1, chunk) == []
        assert server.next_stall() is not None
        reader.flush()  # the reader takes what its socket holds: progress
        now = time.monotonic()
        assert server.drop_stalled(now) == []
        later = now + STALL_SECONDS + 0.1
        reader.last_progress = later  # it kept reading; the other did not
        assert server.drop_stalled(later) == [stalled]
        assert list(server.clients.values()) == [reader]
    finally:
        server.close()
        for peer in peers:
            peer.close()


def test_a_client_past_the_hard_limit_is_dropped_at_once(tmp_path: Path) -> None:
    server, peers, (client,) = _attached(tmp_path, 1)
    try:
        chunk = b"x" * 65536
        dropped: list[Client] = []
        for _ in range(HARD_LIMIT // len(chunk) + 1):
            dropped += server.broadcast(1, chunk)
        assert dropped == [client] and not server.clients
        assert server.next_stall() is None and not server.backlogged()
    finally:
        server.close()
        peers[0].close()


def test_a_full_disk_drops_log_lines_and_says_so_later(tmp_path: Path, monkeypatch: Any) -> None:
    import errno

    from rctr.shim import _io

    log = JsonFileLog(str(tmp_path / "c.log"))
    log.write(_io.log_lines("stdout", "one\n", "t"))
    real_write = os.write
    full = {"on": True, "budget": 10}

    def write(fd: int, data: Any) -> int:
        if full["on"] and fd == log._fd:
            if full["budget"]:  # half a line gets in, then the disk is full
                n, full["budget"] = full["budget"], 0
                return real_write(fd, bytes(data[:n]))
            del data  # the traceback keeps this frame: it must not pin the buffer
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(_io.os, "write", write)
    log.write(_io.log_lines("stdout", "two\nthree\n", "t"))  # never raises
    log.write(_io.log_lines("stdout", "four\n", "t"))
    assert log.dropped == 3
    full["on"] = False
    log.write(_io.log_lines("stdout", "five\n", "t"))
    entries = []
    for line in (tmp_path / "c.log").read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            entries.append(None)  # the torn half line: readers skip it
    logged = [e["log"] for e in entries if e]
    assert logged[0] == "one\n" and logged[-1] == "five\n"
    assert "3 line(s) of output were not logged: No space left on device" in logged[-2]
    assert entries.count(None) == 1 and log.dropped == 0


def test_reaping_the_init_serves_the_attach_that_connected_before(tmp_path: Path) -> None:
    """A loaded machine's race: the daemon's attach connects, the container prints and
    exits, and the shim, woken by another child's SIGCHLD, reaps the init before its loop
    has accepted the attach.  The attach still gets the output (it did not: a soak lost
    one ``run --rm`` output in about 1,500)."""
    from rctr.shim._serve import Server
    from rctr.shim._shimlog import ShimLog
    from rctr.shim._stdio import Stdio

    stdio = Stdio(tty=False, stdin=False)
    attach = AttachServer(str(tmp_path / "attach.sock"))
    control_r, control_w = os.pipe()
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    peer.connect(str(tmp_path / "attach.sock"))  # the daemon connects before the start
    pid = os.fork()
    if pid == 0:
        os.write(stdio.child[1], b"hello\n")
        os._exit(0)
    stdio.close_child_ends()
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead, not yet reaped
    server = Server(stdio, pid, JsonFileLog(str(tmp_path / "c.log")), attach, control_r,
                    ShimLog(str(tmp_path / "shim.log")), stdin=False, stdin_once=False)
    try:
        server._reap()  # what the loop does when the wakeup fd fires
        assert len(attach.clients) == 1
        assert os.WEXITSTATUS(server.run()) == 0
        server.close_clients()
        peer.settimeout(10)
        received = b""
        while chunk := peer.recv(4096):
            received += chunk
        assert received == frame(1, b"hello\n")
    finally:
        peer.close()
        attach.close()
        stdio.close_all()
        os.close(control_r)
        os.close(control_w)
