"""A container's processes and streams: ``/containers/{id}/`` top, logs, stats, resize, attach."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import psutil

from rctr.core import cgroups
from rctr.core.errors import Conflict, InvalidArgument

from ._attach import relay
from ._http import Request
from ._logs import frame, parse_time, read_log
from ._spec import user_names
from .containers import Container

if TYPE_CHECKING:
    from ._main import Daemon

__all__ = ["container_top", "container_logs", "container_stats", "container_resize",
           "container_attach"]

_TOP_TITLES = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]


def container_top(daemon: Daemon, req: Request) -> None:
    c = daemon.containers.get(req.params["id"])
    if not c.running():
        raise Conflict(f"Container {c.id} is not running")
    procs = []
    try:
        root = psutil.Process(c.state.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        pass
    names = user_names(c.record.rootfs)
    rows = []
    for p in procs:
        try:
            rows.append(_top_row(p, names))
        except psutil.Error:
            continue
    req.send_json({"Titles": _TOP_TITLES, "Processes": rows})


def _top_row(p: psutil.Process, names: dict[int, str]) -> list[str]:
    """One process as ``ps -ef`` shows it; psutil.Error when it is gone meanwhile."""
    with p.oneshot():
        t = p.cpu_times()
        total = int(t.user + t.system)
        uid = p.uids().real
        return [names.get(uid, str(uid)), str(p.pid), str(p.ppid()), "0",
                time.strftime("%H:%M", time.localtime(p.create_time())),
                "?", f"{total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}",
                " ".join(p.cmdline()) or p.name()]


def container_logs(daemon: Daemon, req: Request) -> None:
    c = daemon.containers.get(req.params["id"])
    stdout, stderr = req.flag("stdout"), req.flag("stderr")
    if not stdout and not stderr:
        raise InvalidArgument("you must choose at least one stream (stdout=1 or stderr=1)")
    tail = req.arg("tail")
    tail_n = None if tail in (None, "", "all") else req.int_arg("tail")
    tty = bool(c.record.config.get("Tty"))
    timestamps = req.flag("timestamps")
    out = req.stream("application/vnd.docker.raw-stream" if tty
                     else "application/vnd.docker.multiplexed-stream")
    try:
        for entry in read_log(c.record.log_path, stdout=stdout, stderr=stderr, tail=tail_n,
                              since=parse_time(req.arg("since"))
                              if req.arg("since") not in (None, "0") else None,
                              until=parse_time(req.arg("until")),
                              follow=req.flag("follow"),
                              running=lambda: (c.running() or c.starting)
                              and not req.client_gone()):
            data = entry.get("log", "")
            if timestamps:
                data = f"{entry.get('time', '')} {data}"
            payload = data.encode()
            out.write(payload if tty else frame(entry.get("stream", "stdout"), payload))
    finally:
        out.close()


def container_stats(daemon: Daemon, req: Request) -> None:
    c = daemon.containers.get(req.params["id"])
    stream = req.flag("stream", True) and not req.flag("one-shot")
    out = req.stream()
    try:
        previous: dict[str, Any] | None = None
        while True:
            sample = _stats_sample(c)
            sample["precpu_stats"] = previous["cpu_stats"] if previous else sample["cpu_stats"]
            out.json(sample)
            previous = sample
            if not stream or not c.running():
                break
            time.sleep(1)
    finally:
        out.close()


def container_resize(daemon: Daemon, req: Request) -> None:
    c = daemon.containers.get(req.params["id"])
    if not c.running():
        raise Conflict(f"Container {c.id} is not running")
    from ._shimctl import Shim

    Shim(daemon.paths.shim_dir(c.id)).control(
        {"op": "resize", "width": req.int_arg("w", 80), "height": req.int_arg("h", 24)})
    req.send(200, b"", content_type="text/plain")


def container_attach(daemon: Daemon, req: Request) -> None:
    c = daemon.containers.get(req.params["id"])
    tty = bool(c.record.config.get("Tty"))
    stdin = req.flag("stdin") and bool(c.record.config.get("OpenStdin"))
    if not c.running() and c.state.status.value not in ("created", "exited", "restarting") \
            and not c.starting:
        raise Conflict(f"You cannot attach to a stopped container {c.id}")
    streaming = req.flag("stream", True)
    pending = daemon.containers.expect_attach(c) if streaming else None
    try:
        client = req.hijack("application/vnd.docker.raw-stream" if tty
                            else "application/vnd.docker.multiplexed-stream")
        if req.flag("logs"):
            for entry in read_log(c.record.log_path):
                data = entry.get("log", "").encode()
                client.sendall(data if tty else frame(entry.get("stream", "stdout"), data))
        if not streaming:
            return
        sock = daemon.containers.wait_for_shim(c, pending).attach()
    except Exception:  # noqa: BLE001 - the client just sees the stream end
        return
    finally:
        if pending is not None:
            pending["connected"].set()  # the waiting start may run the container now
    relay(client, sock, tty=tty, stdin=stdin, stdout=req.flag("stdout", True),
          stderr=req.flag("stderr", True))


def _tree_usage(c: Container) -> tuple[float, int, int]:
    """CPU seconds, resident bytes and the number of the container's process tree."""
    cpu_total = 0.0
    mem = 0
    pids = 0
    if c.running():
        try:
            root = psutil.Process(c.state.pid)
            for p in [root, *root.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                    cpu_total += t.user + t.system
                    mem += p.memory_info().rss
                    pids += 1
                except psutil.Error:
                    continue
        except psutil.Error:
            pass
    return cpu_total, mem, pids


def _stats_sample(c: Container) -> dict[str, Any]:
    cpu_total, mem, pids = _tree_usage(c)
    system = sum(psutil.cpu_times()[:8])
    ncpu = os.cpu_count() or 1
    limit = psutil.virtual_memory().total
    counted = cgroups.usage(c.record.cgroup) if c.running() and c.record.cgroup else {}
    # The kernel's own counts where the container has a cgroup: they include processes
    # that left the container's process tree (daemons that double-forked).
    cpu_total = counted["cpu_usec"] / 1e6 if "cpu_usec" in counted else cpu_total
    mem = counted.get("memory", mem)
    pids = counted.get("pids", pids)
    if counted.get("memory_limit", -1) > 0:
        limit = min(limit, counted["memory_limit"])
    return {
        "read": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
        "preread": "0001-01-01T00:00:00Z",
        "id": c.id, "name": "/" + c.name,
        "pids_stats": {"current": pids, **({"limit": counted["pids_limit"]}
                                           if counted.get("pids_limit", -1) > 0 else {})},
        "cpu_stats": {"cpu_usage": {"total_usage": int(cpu_total * 1e9),
                                    "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                      "system_cpu_usage": int(system * 1e9), "online_cpus": ncpu,
                      "throttling_data": {}},
        "memory_stats": {"usage": mem, "limit": limit, "stats": {}},
        "blkio_stats": {}, "networks": {},
    }
