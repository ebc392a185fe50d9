"""The shim as the daemon drives it, as an ordinary user, on real namespaces.

A pause process (a user + mount namespace with the user's subordinate ids)
stands in for the daemon's; a small "daemon" driver enters it with nsenter,
starts the shim exactly as the daemon does (new session, stdio /dev/null, a
ready fd) and exits, so every shim here outlives its starter.  The harness
(root) then talks to the shim only through its files: attach.sock, the
control and exit FIFOs, exit.json and the json-file log.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import pytest
from harness import RCTR, Bundle, UserShell

from rctr.shim._attach_server import STALL_SECONDS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90),
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap")]

RUNTIMES = ["rctr", pytest.param("crun", marks=pytest.mark.requires("crun"))]

# The pause process: a child in a new user + mount namespace, mapped like the
# daemon's (user -> 0, first subordinate range -> 1..), that waits forever.
PAUSE = """
import os, signal
from rctr.core import linux
from rctr.core.idmap import write_id_maps
from rctr.core.userns import default_id_maps
to_r, to_w = os.pipe(); from_r, from_w = os.pipe()
pid = os.fork()
if pid == 0:
    linux.unshare(linux.CLONE_NEWUSER | linux.CLONE_NEWNS)
    os.write(from_w, b"u"); os.read(to_r, 1)
    os.setresgid(0, 0, 0); os.setresuid(0, 0, 0)
    os.write(from_w, b"r")
    while True:
        signal.pause()
os.read(from_r, 1)
write_id_maps(pid, *default_id_maps())
os.write(to_w, b"m"); os.read(from_r, 1)
print(pid, flush=True)
os.waitpid(pid, 0)
"""

# The daemon's side of starting a shim; prints the ready line and whether the
# ready fd then reached its end (no process but the shim may hold it).
START_SHIM = """
import json, os, select, subprocess, sys
r, w = os.pipe()
p = subprocess.Popen([sys.executable, "-m", "rctr.shim", sys.argv[1], "--ready-fd", str(w)],
                     start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, pass_fds=(w,), cwd="/")
os.close(w)
data = b""
eof = False
while select.select([r], [], [], 60)[0]:
    chunk = os.read(r, 4096)
    if not chunk:
        eof = True
        break
    data += chunk
print(json.dumps({"shim": p.pid, "ready": data.decode(), "eof": eof}))
p.returncode = 0  # the shim outlives us: do not wait for it
"""


class Pause:
    def __init__(self, user: UserShell) -> None:
        self.user = user
        self.proc = user.popen([sys.executable, "-c", PAUSE], stdout=subprocess.PIPE, text=True)
        self.pid = int(self.proc.stdout.readline())

    def run(self, args: list[str], **kw: Any) -> subprocess.CompletedProcess:
        return self.user.run(["nsenter", "-t", str(self.pid), "-U", "-m", "--", *args], **kw)

    def pids(self) -> set[int]:
        return {self.proc.pid, self.pid}

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture
def pause(user: UserShell) -> Pause:
    p = Pause(user)
    yield p
    p.stop()


def namespaced(bundle: Bundle, *args: str) -> None:
    """The daemon's bundles: no user namespace (the shim is root in the pause's)."""
    def change(c: dict) -> None:
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "user"]
        c["linux"].pop("uidMappings", None)
        c["linux"].pop("gidMappings", None)
        c["process"]["args"] = list(args)
    bundle.update(change)


class Shim:
    """One shim's state directory, seen from the harness."""

    def __init__(self, pause: Pause, bundle: Bundle, runtime: str, cid: str = "c1",
                 **options: Any) -> None:
        user = pause.user
        self.pause, self.user, self.runtime, self.id = pause, user, runtime, cid
        self.bundle = bundle
        # Every process of this test carries the mark: shim, runtime, container.
        self.mark = f"RCTR_SHIM_TEST={user.base}/{cid}"
        bundle.update(lambda c: c["process"]["env"].append(self.mark))
        self.dir = user.base / f"shim-{cid}"
        self.dir.mkdir(mode=0o700)
        os.chown(self.dir, user.uid, user.gid)
        self.log = user.base / f"{cid}-json.log"
        self.root = user.base / f"root-{runtime}"
        log = {"path": str(self.log), "max_size": options.pop("max_size", 0),
               "max_file": options.pop("max_file", 1)}
        rt = {"name": runtime, "root": str(self.root)}
        if runtime != "rctr":
            rt["path"] = f"/usr/bin/{runtime}"
        spec = {"id": cid, "bundle": str(bundle.path), "runtime": rt, "tty": False,
                "stdin": False, "stdin_once": False, "log": log, "width": 80, "height": 24}
        spec.update(options)
        self.write("shim.json", json.dumps(spec))

    def write(self, name: str, text: str) -> None:
        path = self.dir / name
        path.write_text(text)
        os.chown(path, self.user.uid, self.user.gid)

    def start_shim(self) -> dict:
        r = self.pause.run([sys.executable, "-c", START_SHIM, str(self.dir)], check=True,
                           env=self.user.env(**dict([self.mark.split("=", 1)])))
        out = json.loads(r.stdout)
        assert out["eof"], "something besides the shim holds the ready fd"
        self.shim_pid = out["shim"]
        shim_pid = json.loads((self.dir / "shim.pid").read_text())
        assert shim_pid["pid"] == self.shim_pid
        self.shim_start = shim_pid["start_time"]
        return json.loads(out["ready"])

    def create(self) -> int:
        ready = self.start_shim()
        assert "pid" in ready, ready
        return int(ready["pid"])

    def runtime_cmd(self, *args: str) -> subprocess.CompletedProcess:
        prefix = [RCTR, "runtime"] if self.runtime == "rctr" else [self.runtime]
        return self.pause.run([*prefix, "--root", str(self.root), *args], check=True)

    def start(self) -> None:
        self.runtime_cmd("start", self.id)

    def attach(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        sock.connect(str(self.dir / "attach.sock"))
        return sock

    def control(self, **cmd: Any) -> None:
        fd = os.open(self.dir / "control", os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, json.dumps(cmd).encode() + b"\n")
        finally:
            os.close(fd)

    def wait_exit(self, timeout: float = 30) -> dict:
        """As the daemon does: exit.json, else the exit FIFO's POLLHUP, then exit.json."""
        exit_json = self.dir / "exit.json"
        if not exit_json.exists():
            fd = os.open(self.dir / "exit", os.O_RDONLY | os.O_NONBLOCK)
            try:
                if not exit_json.exists():
                    poller = select.poll()
                    poller.register(fd, select.POLLIN)
                    events = poller.poll(timeout * 1000)
                    assert events and events[0][1] & select.POLLHUP, "the shim did not finish"
            finally:
                os.close(fd)
        return json.loads(exit_json.read_text())

    def log_entries(self, path: Path | None = None) -> list[dict]:
        text = (path or self.log).read_text()
        return [json.loads(line) for line in text.splitlines()]

    def assert_no_leftovers(self) -> None:
        """The shim exits after the container, and nothing of the container remains.

        Scoped to this test's processes (other work may run as the same user):
        the shim's pid with its start time, and every process with the mark in
        its environment.
        """
        mark = self.mark.encode() + b"\0"
        deadline = time.monotonic() + 10
        while True:
            left = [pid for pid in _pids() if mark in _environ(pid)]
            if _start_time(self.shim_pid) == self.shim_start:
                left.append(self.shim_pid)
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert not left, [(pid, _cmdline(pid)) for pid in left]


def _pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return "?"


def read_frames(sock: socket.socket, until: bytes | None = None) -> list[tuple[int, bytes]]:
    """Docker-framed output, to the end (or until a frame contains ``until``)."""
    frames, buf = [], b""
    while True:
        while len(buf) >= 8:
            size = int.from_bytes(buf[4:8], "big")
            assert buf[1:4] == b"\0\0\0", buf[:8]
            if len(buf) < 8 + size:
                break
            frames.append((buf[0], buf[8:8 + size]))
            buf = buf[8 + size:]
            if until is not None and until in b"".join(d for _, d in frames):
                return frames
        chunk = sock.recv(65536)
        if not chunk:
            assert not buf, f"a torn frame: {buf!r}"
            return frames
        buf += chunk


def joined(frames: list[tuple[int, bytes]], stream: int) -> bytes:
    return b"".join(d for s, d in frames if s == stream)


RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_output_goes_to_log_and_attach_and_exit_code_is_recorded(
        pause: Pause, bundle: Bundle, runtime: str) -> None:
    namespaced(bundle, "sh", "-c", "echo out; echo err >&2; printf partial; exit 3")
    shim = Shim(pause, bundle, runtime)
    init = shim.create()
    # Created, not started: the files are there, the init is parked.
    assert int((shim.dir / "pid").read_text()) == init
    assert (shim.dir / "starttime").read_text() == \
        Path(f"/proc/{init}/stat").read_text().rsplit(")", 1)[1].split()[19]
    assert json.loads((shim.dir / "process.json").read_text()) == bundle.config["process"]
    assert shim.shim_start == _start_time(shim.shim_pid)
    assert not (shim.dir / "exit.json").exists()

    client = shim.attach()
    time.sleep(0.2)  # let the shim accept before the output starts
    shim.start()
    frames = read_frames(client)
    client.close()
    assert joined(frames, 1) == b"out\npartial" and joined(frames, 2) == b"err\n"

    result = shim.wait_exit()
    assert result["exit_code"] == 3 and result["signal"] is None
    assert RFC3339_NANO.match(result["finished_at"])
    entries = shim.log_entries()
    assert sorted((e["stream"], e["log"]) for e in entries) == \
        [("stderr", "err\n"), ("stdout", "out\n"), ("stdout", "partial")]
    assert all(RFC3339_NANO.match(e["time"]) for e in entries)
    assert list(entries[0]) == ["log", "stream", "time"]
    assert not (shim.dir / "shim-log.json").exists(), "the shim had problems"
    shim.assert_no_leftovers()


def test_killed_container_exits_137(pause: Pause, bundle: Bundle) -> None:
    namespaced(bundle, "sleep", "1000")
    shim = Shim(pause, bundle, "rctr")
    init = shim.create()
    shim.start()
    # What assert_no_leftovers looks for (environ reads empty while the init execs).
    deadline = time.monotonic() + 5
    while shim.mark.encode() not in _environ(init) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert shim.mark.encode() in _environ(init) and shim.mark.encode() in _environ(shim.shim_pid)
    shim.runtime_cmd("kill", shim.id, "KILL")
    result = shim.wait_exit()
    assert (result["exit_code"], result["signal"]) == (137, 9)
    shim.assert_no_leftovers()


def test_exit_fifo_hangs_up_only_after_exit_json(pause: Pause, bundle: Bundle) -> None:
    namespaced(bundle, "sh", "-c", "read x; exit 5")
    shim = Shim(pause, bundle, "rctr", stdin=True)
    shim.create()
    fd = os.open(shim.dir / "exit", os.O_RDONLY | os.O_NONBLOCK)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        shim.start()
        assert poller.poll(300) == [], "the exit FIFO hung up while the container runs"
        shim.control(op="close_stdin")
        events = poller.poll(30_000)
        assert events and events[0][1] & select.POLLHUP
        assert json.loads((shim.dir / "exit.json").read_text())["exit_code"] == 5
    finally:
        os.close(fd)
    shim.assert_no_leftovers()


def test_stdin_through_attach_closed_by_stdin_once(pause: Pause, bundle: Bundle) -> None:
    namespaced(bundle, "sh", "-c", "cat; echo done")
    shim = Shim(pause, bundle, "rctr", stdin=True, stdin_once=True)
    shim.create()
    client = shim.attach()
    watcher = shim.attach()  # a second client sees the same output
    shim.start()
    client.sendall(b"hello\n")
    assert joined(read_frames(client, until=b"hello\n"), 1) == b"hello\n"
    client.shutdown(socket.SHUT_WR)  # its end of input ends the container's (stdin_once)
    rest = read_frames(client)
    assert joined(rest, 1) == b"done\n"
    assert joined(read_frames(watcher), 1) == b"hello\ndone\n"
    assert shim.wait_exit()["exit_code"] == 0
    client.close()
    watcher.close()
    shim.assert_no_leftovers()


def test_close_stdin_from_the_control_fifo(pause: Pause, bundle: Bundle) -> None:
    namespaced(bundle, "sh", "-c", "cat; echo done")
    shim = Shim(pause, bundle, "rctr", stdin=True)
    shim.create()
    client = shim.attach()
    shim.start()
    client.sendall(b"abc\n")
    client.shutdown(socket.SHUT_WR)  # without stdin_once the container's stdin stays open
    assert joined(read_frames(client, until=b"abc\n"), 1) == b"abc\n"
    time.sleep(0.3)
    assert not (shim.dir / "exit.json").exists()
    shim.control(op="bogus")  # logged and ignored
    shim.control(op="close_stdin")
    assert joined(read_frames(client), 1) == b"done\n"
    assert shim.wait_exit()["exit_code"] == 0
    client.close()
    problems = [json.loads(line) for line in (shim.dir / "shim-log.json").read_text().splitlines()]
    assert any("bogus" in p["msg"] for p in problems)
    shim.assert_no_leftovers()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_tty_output_and_resize(pause: Pause, bundle: Bundle, runtime: str) -> None:
    namespaced(bundle, "sh", "-c", "stty size; read x; stty size; echo err >&2")
    bundle.update(lambda c: c["process"].update(terminal=True))
    shim = Shim(pause, bundle, runtime, tty=True, stdin=True, width=90, height=25)
    shim.create()
    client = shim.attach()
    shim.start()
    frames = read_frames(client, until=b"25 90")
    shim.control(op="resize", width=100, height=30)
    time.sleep(0.2)
    client.sendall(b"go\n")
    frames += read_frames(client)
    out = joined(frames, 1)
    assert {s for s, _ in frames} == {1}
    assert out.index(b"25 90") < out.index(b"30 100") < out.index(b"err"), out
    assert shim.wait_exit()["exit_code"] == 0
    entries = shim.log_entries()
    assert {e["stream"] for e in entries} == {"stdout"}
    assert "30 100\r\n" in "".join(e["log"] for e in entries)
    assert not (shim.dir / "shim-log.json").exists(), "the shim had problems"
    client.close()
    shim.assert_no_leftovers()


def test_log_rotation(pause: Pause, bundle: Bundle) -> None:
    namespaced(bundle, "sh", "-c", "i=0; while [ $i -lt 60 ]; do echo line-$i; i=$((i+1)); done")
    shim = Shim(pause, bundle, "rctr", max_size=400, max_file=3)
    shim.create()
    shim.start()
    assert shim.wait_exit()["exit_code"] == 0
    files = [shim.log, Path(f"{shim.log}.1"), Path(f"{shim.log}.2")]
    assert all(f.exists() for f in files) and not Path(f"{shim.log}.3").exists()
    lines = []
    for f in reversed(files):
        text = f.read_text()
        assert len(text.encode()) < 400 + 200, f  # at most one write over the limit
        lines += [json.loads(line)["log"] for line in text.splitlines()]
    joined_text = "".join(lines)
    assert joined_text.endswith("line-59\n") and "line-0\n" not in joined_text
    numbers = [int(x) for x in re.findall(r"line-(\d+)\n", joined_text)]
    assert numbers == list(range(numbers[0], 60))  # the newest, in order, none lost
    shim.assert_no_leftovers()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_create_failure_is_reported_on_the_ready_fd(pause: Pause, bundle: Bundle,
                                                    runtime: str) -> None:
    namespaced(bundle, "/no/such/program")
    shim = Shim(pause, bundle, runtime)
    ready = shim.start_shim()
    assert "/no/such/program" in ready["error"], ready
    assert "hint" in ready
    assert not (shim.dir / "exit").exists() and not (shim.dir / "attach.sock").exists()
    problems = (shim.dir / "shim-log.json").read_text()
    assert "/no/such/program" in problems
    assert not (shim.root / shim.id).exists()
    shim.assert_no_leftovers()


def test_bad_shim_json_is_reported(pause: Pause, bundle: Bundle) -> None:
    shim = Shim(pause, bundle, "rctr")
    shim.write("shim.json", json.dumps({"id": "c1"}))
    ready = shim.start_shim()
    assert "shim.json" in ready["error"], ready
    shim.assert_no_leftovers()


def test_shim_memory_is_small(pause: Pause, bundle: Bundle) -> None:
    import psutil

    namespaced(bundle, "sleep", "1000")
    shim = Shim(pause, bundle, "rctr")
    shim.create()
    shim.start()
    info = psutil.Process(shim.shim_pid).memory_full_info()
    print(f"shim memory: rss {info.rss / 2**20:.1f} MiB, pss {info.pss / 2**20:.1f} MiB, "
          f"uss {info.uss / 2**20:.1f} MiB")
    assert info.pss < 24 * 2**20, info
    shim.runtime_cmd("kill", shim.id, "KILL")
    assert shim.wait_exit()["exit_code"] == 137
    shim.assert_no_leftovers()


def test_a_client_that_does_not_read_is_dropped(pause: Pause, bundle: Bundle) -> None:
    """A client far behind holds the output back only while it reads; a stalled one goes.

    The fast client here reads slowly on purpose at first: it must still get every
    byte, because being behind while reading means back-pressure, not a drop."""
    size = 3_000_000
    namespaced(bundle, "sh", "-c", f"head -c {size} /dev/zero | tr '\\0' x; echo; echo end")
    shim = Shim(pause, bundle, "rctr")
    shim.create()
    with closing(shim.attach()) as slow, closing(shim.attach()) as fast:  # slow never reads
        time.sleep(0.2)
        started = time.monotonic()
        shim.start()
        time.sleep(1)  # both fall behind; the container is held back
        out = joined(read_frames(fast), 1)
        assert out == b"x" * size + b"\nend\n"
        assert time.monotonic() - started >= STALL_SECONDS  # held until the slow one went
        assert shim.wait_exit()["exit_code"] == 0
        got = b""
        with suppress(ConnectionResetError):
            while chunk := slow.recv(1 << 20):
                got += chunk
        assert len(got) < size, "the slow client was not dropped"
    assert "fell behind" in (shim.dir / "shim-log.json").read_text()
    logged = "".join(json.loads(line)["log"] for line in shim.log.read_text().splitlines())
    assert logged == "x" * size + "\nend\n"  # the log has it all, held back or not
    shim.assert_no_leftovers()
