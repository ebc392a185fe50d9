"""What a user's rctr holds, checked from outside: processes, mounts, records, layers.

The faults and soak suites break rctr on purpose and then ask ``problems(rc)``
whether everything is accounted for.  The rules, read as root from /proc and
the user's directories:

- every container the API lists has its record and its RW layer, and every
  record and RW layer on disk belongs to a container the API lists;
- every process of the user (and of the user's subordinate ids) is rctrd, the
  zygote, the pause process, or a descendant of the shim of a container the
  API reports running; a FUSE mount process serves the root of such a container;
- every layer or network-namespace mount in the pause process's mount
  namespace belongs to a running container;
- the store's ``tmp/`` is empty when nothing is under way.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import psutil

__all__ = ["problems", "user_processes", "pause_mounts", "pause_pid", "quiet_problems"]

FUSE_MOUNTERS = ("fuse-overlayfs",)


def user_processes(rc: Any) -> list[psutil.Process]:
    """The live processes of the user and of its subordinate ids (zombies excluded)."""
    ids = rc.shell._owned_ids()
    found = []
    for p in psutil.process_iter(["uids", "status"]):
        with contextlib.suppress(psutil.Error):
            if p.info["uids"] and p.info["uids"].real in ids \
                    and p.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(p)
    return found


def pause_pid(rc: Any) -> int | None:
    """The pid the user's pause.json names, or None."""
    try:
        return int(json.loads((rc.rundir / "pause.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def pause_mounts(rc: Any) -> list[str]:
    """Mount points in the user's mount namespace that rctr makes per container."""
    pid = pause_pid(rc)
    if pid is None:
        return []
    try:
        lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[4] for line in lines]
    shims, rw = str(rc.rundir / "s") + "/", str(rc.data / "rctr" / "storage" / "containers") + "/"
    return [p for p in points if p.startswith(shims) or p.startswith(rw)]


def _containers(rc: Any) -> list[dict[str, Any]]:
    status, body = rc.api("GET", "/containers/json?all=1")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def _shim_pids(rc: Any) -> dict[int, str]:
    """Shim pid -> the shim directory's name (the container id's first 32 digits)."""
    out = {}
    shims = rc.rundir / "s"
    for d in shims.iterdir() if shims.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, KeyError):
            out[int(json.loads((d / "shim.pid").read_text())["pid"])] = d.name
    return out


def _ancestors(p: psutil.Process) -> list[int]:
    out = []
    with contextlib.suppress(psutil.Error):
        while p is not None and p.pid > 1:
            out.append(p.pid)
            p = p.parent()
    return out


def problems(rc: Any, *, quiescent: bool = True) -> list[str]:
    """Everything that is not accounted for; empty when the user's state is whole."""
    found: list[str] = []
    listed = _containers(rc)
    ids = {c["Id"] for c in listed}
    running = {c["Id"] for c in listed if c["State"] == "running"}
    records = rc.data / "rctr" / "containers"
    layers = rc.data / "rctr" / "storage" / "containers"
    for cid in ids:
        if not (records / cid / "config.json").is_file():
            found.append(f"container {cid[:12]} is listed but has no record")
        if not (layers / cid).is_dir():
            found.append(f"container {cid[:12]} has no RW layer")
    for d in (records, layers):
        for entry in os.listdir(d) if d.is_dir() else []:
            if entry not in ids:
                found.append(f"{d / entry} belongs to no container")

    shim_of = _shim_pids(rc)
    running_short = {cid[:32] for cid in running}
    allowed = {rc.daemon_pid(), pause_pid(rc)}
    for p in user_processes(rc):
        with contextlib.suppress(psutil.Error):
            name = p.name()
            if p.pid in allowed or name == "rctr-zygote":
                continue
            if name in FUSE_MOUNTERS:
                if not any(cid in " ".join(p.cmdline()) for cid in running):
                    found.append(f"{name} {p.pid} serves no running container: {p.cmdline()}")
                continue
            owners = [shim_of[a] for a in _ancestors(p) if a in shim_of]
            if not owners:
                found.append(f"process {p.pid} ({name}: {' '.join(p.cmdline())[:80]}) has no owner")
            elif owners[0] not in running_short:
                found.append(f"process {p.pid} ({name}) belongs to container {owners[0][:12]}, "
                             "which is not running")
    for point in pause_mounts(rc):
        if not any(cid[:32] in point or cid in point for cid in running):
            found.append(f"mount {point} belongs to no running container")
    if quiescent:
        tmp = rc.data / "rctr" / "storage" / "tmp"
        if tmp.is_dir() and os.listdir(tmp):
            found.append(f"the store's tmp/ holds {sorted(os.listdir(tmp))}")
    return found


def quiet_problems(rc: Any, timeout: float = 15) -> list[str]:
    """``problems``, asked again until they are gone or ``timeout`` passes (exits settle)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        found = problems(rc)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.3)
