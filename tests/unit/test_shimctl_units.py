"""daemon/_shimctl.py without a shim: the helpers' command lines, and waiting for an exit
through the files a shim leaves (exit.json, the exit FIFO, shim.pid)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rctr.core.proc import start_time
from rctr.daemon import _shimctl
from rctr.daemon._runtimes import OCIRuntime
from rctr.daemon._shimctl import Shim, Zygote

pytestmark = pytest.mark.timeout(30)


class _Popen:
    """Records the command line and answers on the ready fd as the helper would."""

    started: list[list[str]] = []
    answer: dict[str, Any] = {}

    def __init__(self, argv: list[str], **kw: Any) -> None:
        self.started.append(argv)
        (fd,) = kw["pass_fds"]
        os.write(fd, json.dumps(self.answer).encode() + b"\n")

    def wait(self) -> int:
        return 0

    def kill(self) -> None:
        pass


@pytest.fixture
def popen(monkeypatch: pytest.MonkeyPatch) -> type[_Popen]:
    _Popen.started = []
    monkeypatch.setattr(_shimctl.subprocess, "Popen", _Popen)
    return _Popen


def test_the_shim_and_the_zygote_keep_their_command_lines(tmp_path: Path,
                                                          popen: type[_Popen]) -> None:
    # Processes are found by these command lines (ps, the test harness): they stay as they were.
    popen.answer = {"pid": 1}
    assert Shim(str(tmp_path / "s")).launch({}) == {"pid": 1}
    zygote = Zygote(str(tmp_path / "z.sock"))
    zygote._token = popen.answer["token"] = "t"
    assert zygote._replace(0)
    (shim, ready), (zyg, zready) = [(argv[:-1], argv[-1]) for argv in popen.started]
    assert shim == [sys.executable, "-m", "rctr.shim", str(tmp_path / "s"), "--ready-fd"]
    assert zyg == [sys.executable, "-m", "rctr.shim", "--zygote", str(tmp_path / "z.sock"),
                   "--ready-fd"]
    assert ready.isdigit() and zready.isdigit()


def test_rctrs_runtime_execs_by_its_cli() -> None:
    argv = OCIRuntime("rctr", "/root").exec_argv("c1", "/p.json", tty_socket="/t.sock",
                                                 pid_file="/pid")
    assert argv == [sys.executable, "-m", "rctr.rootless.cli", "--root", "/root", "exec",
                    "--process", "/p.json", "--tty", "--console-socket", "/t.sock",
                    "--pid-file", "/pid", "c1"]


# -- wait_exit --------------------------------------------------------------------------------


def _shim(tmp_path: Path, *, alive: bool = True, fifo: bool = True) -> Shim:
    if fifo:
        os.mkfifo(tmp_path / "exit")
    pid = os.getpid() if alive else 2 ** 22 + 1
    (tmp_path / "shim.pid").write_text(json.dumps({"pid": pid,
                                                   "start_time": start_time(os.getpid())}))
    return Shim(str(tmp_path))


def test_an_exit_already_written_is_returned(tmp_path: Path) -> None:
    (tmp_path / "exit.json").write_text('{"exit_code": 3}')
    assert Shim(str(tmp_path)).wait_exit() == {"exit_code": 3}


def test_the_exit_fifo_closing_brings_the_exit(tmp_path: Path) -> None:
    shim = _shim(tmp_path)

    def exit_() -> None:
        fd = os.open(tmp_path / "exit", os.O_WRONLY)  # the shim holds the FIFO open...
        time.sleep(0.3)
        (tmp_path / "exit.json").write_text('{"exit_code": 0}')
        os.close(fd)                                   # ...and closes it once it wrote exit.json

    threading.Thread(target=exit_).start()
    started = time.monotonic()
    assert shim.wait_exit() == {"exit_code": 0}
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("fifo", [True, False])
def test_a_shim_that_died_without_a_word_is_a_lost_exit(tmp_path: Path, fifo: bool) -> None:
    status = _shim(tmp_path, alive=False, fifo=fifo).wait_exit()
    assert status["exit_code"] == 255 and status["lost"] and status["error"] == "the shim died"


def test_a_stop_or_a_broken_check_ends_the_wait(tmp_path: Path) -> None:
    shim = _shim(tmp_path)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert shim.wait_exit(stop) == {"exit_code": -1, "interrupted": True}
    asked: list[int] = []

    def check() -> str | None:
        asked.append(1)
        return "root gone" if len(asked) == 2 else None

    assert shim.wait_exit(None, check) == {"broken": "root gone"}
