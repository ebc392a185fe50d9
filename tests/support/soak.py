"""A soak: containers run and removed from parallel clients, with logs and exec between.

``soak(rc, clients, seconds)`` drives the user's rctrd through the ``rctr`` CLI
from ``clients`` threads for about ``seconds``; each round of a client runs a
detached container that prints, reads its logs, execs into it, runs a
``--rm`` container in the foreground and removes the first.  It returns the
figures: containers handled, errors (with the first few messages), rctrd's
memory (PSS), open fds and threads before and after, and what was left
(``leftovers.problems``).  Used by ``tests/faults/test_soak.py`` (short) and
``bench/soak.py`` (long).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

import psutil
from daemonenv import IMAGE
from leftovers import pause_mounts, pause_pid, quiet_problems, user_processes

__all__ = ["soak", "daemon_figures"]

TICKER = "echo started; while true; do echo tick; sleep 0.2; done"


def daemon_figures(pid: int) -> dict[str, int]:
    """rctrd's proportional set size (KiB), open fds and threads, read as root."""
    pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    with open(f"/proc/{pid}/status") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    return {"pss_kib": pss, "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": threads}


def _round(rc: Any, name: str) -> int:
    """One client's round; the number of containers it ran.  Raises on any failure."""
    def ok(*args: str) -> str:
        r = rc.rctr(*args, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"rctr {' '.join(args[:3])}… exited {r.returncode}: "
                               f"{r.stderr.strip()[:300]}")
        return r.stdout  # type: ignore[no-any-return]

    ok("run", "-d", "--name", name, IMAGE, "sh", "-c", TICKER)
    try:
        deadline = time.monotonic() + 10
        while "started" not in ok("logs", name):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} printed nothing in 10 s")
            time.sleep(0.1)
        if ok("exec", name, "sh", "-c", "echo $((6 * 7))") != "42\n":
            raise RuntimeError(f"exec in {name} gave the wrong answer")
        out = ok("run", "--rm", IMAGE, "echo", name)
        if out != f"{name}\n":
            raise RuntimeError(f"run --rm printed {out!r}, not {name!r}")
    finally:
        ok("rm", "-f", name)
    return 2


def soak(rc: Any, clients: int = 4, seconds: float = 60) -> dict[str, Any]:
    ok_run = rc.rctr("run", "--rm", IMAGE, "true")  # starts rctrd, warms the zygote
    assert ok_run.returncode == 0, ok_run.stderr
    for i in range(3):  # warm-up: caches and pools at their working size before measuring
        _round(rc, f"warm-{i}")
    pid = rc.daemon_pid()
    before = daemon_figures(pid)
    handled, errors = [0] * clients, []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(index: int) -> None:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            try:
                handled[index] += _round(rc, f"soak-{index}-{n}")
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(str(exc))

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    left = quiet_problems(rc)
    time.sleep(1)
    after = daemon_figures(pid)
    extra = []
    pause = pause_pid(rc)
    for p in user_processes(rc):
        with contextlib.suppress(psutil.Error):
            if p.pid not in (pid, pause) and p.name() != "rctr-zygote":
                extra.append(f"{p.pid} {p.name()}")
    return {
        "clients": clients, "seconds": round(elapsed, 1), "containers": sum(handled),
        "containers_per_minute": round(sum(handled) * 60 / elapsed, 1),
        "errors": len(errors), "first_errors": errors[:5],
        "daemon_same": rc.daemon_pid() == pid,
        "daemon_before": before, "daemon_after": after,
        "leftover_problems": left, "leftover_processes": extra,
        "leftover_mounts": pause_mounts(rc),
    }

