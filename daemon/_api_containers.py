"""The ``/containers`` endpoints, over ``Containers``."""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

from rctr.core import cgroups
from rctr.core.errors import Conflict, InvalidArgument, NotFound

from ._attach import relay
from ._http import Request, Router
from ._logs import frame, parse_time, read_log
from ._record import Status, inspect_json
from ._spec import user_names
from .containers import Container

__all__ = ["register"]


def _ports(c: Container) -> list[dict[str, Any]]:
    out = []
    for port, bindings in (c.record.network_settings.get("Ports") or {}).items():
        number, _, proto = port.partition("/")
        for b in bindings or [{}]:
            entry: dict[str, Any] = {"PrivatePort": int(number), "Type": proto or "tcp"}
            if b.get("HostPort"):
                entry.update({"PublicPort": int(b["HostPort"]), "IP": b.get("HostIp") or "0.0.0.0"})
            out.append(entry)
    return out


def _status_text(c: Container) -> str:
    state = c.state
    if state.running:
        started = parse_time(state.started_at) or time.time()
        return f"Up {_ago(time.time() - started)}{_health_suffix(c)}"
    if state.status is Status.CREATED:
        return "Created"
    if state.status is Status.RESTARTING:
        return f"Restarting ({state.exit_code})"
    finished = parse_time(state.finished_at) or time.time()
    return f"Exited ({state.exit_code}) {_ago(time.time() - finished)} ago"


def _health_suffix(c: Container) -> str:
    status = (c.state.health or {}).get("Status")
    if not status:
        return ""
    return " (health: starting)" if status == "starting" else f" ({status})"


def _ago(seconds: float) -> str:
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    if seconds < 3600:
        m = int(seconds / 60)
        return "About a minute" if m == 1 else f"{m} minutes"
    h = int(seconds / 3600)
    return "About an hour" if h == 1 else f"{h} hours"


def _summary(c: Container) -> dict[str, Any]:
    r = c.record
    command = " ".join([r.path, *r.args])
    return {
        "Id": c.id, "Names": ["/" + r.name], "Image": r.config.get("Image", ""),
        "ImageID": r.image, "Command": command,
        "Created": int(parse_time(r.created) or 0), "Ports": _ports(c),
        "Labels": r.config.get("Labels") or {}, "State": r.state.status.value,
        "Status": _status_text(c), "HostConfig": {"NetworkMode": r.host_config.get("NetworkMode")},
        "NetworkSettings": {"Networks": r.network_settings["Networks"]},
        "Mounts": r.mounts, "SizeRw": 0, "SizeRootFs": 0,
    }


def _matches(c: Container, filters: dict[str, list[str]]) -> bool:
    r = c.record
    for key, values in filters.items():
        if not values:
            continue
        if key == "id" and not any(c.id.startswith(v) for v in values):
            return False
        if key == "name" and not any(v.lstrip("/") in c.name for v in values):
            return False
        if key == "status" and c.state.status.value not in values:
            return False
        if key == "health" and (c.state.health or {}).get("Status", "none") not in values:
            return False
        if key == "exited" and not (not c.running() and str(c.state.exit_code) in values):
            return False
        if key == "label":
            labels = r.config.get("Labels") or {}
            for v in values:
                k, sep, val = v.partition("=")
                if k not in labels or (sep and labels[k] != val):
                    return False
        if key == "ancestor" and not any(v in (r.config.get("Image"), r.image) or
                                         r.image.removeprefix("sha256:").startswith(v)
                                         for v in values):
            return False
        if key == "volume" and not any(m.get("Name") in values or m.get("Destination") in values
                                       for m in r.mounts):
            return False
        if key == "network" and not any(v in r.network_settings["Networks"] for v in values):
            return False
    return True


def _inspect(c: Container) -> dict[str, Any]:
    with c.lock:
        return inspect_json(c.record, list(c.execs))  # execs: in memory only, dropped at the stop


def register(router: Router, daemon: Any) -> None:
    containers = daemon.containers

    @router.route("GET", "/containers/json")
    def list_containers(req: Request) -> None:
        filters = req.filters()
        everything = req.flag("all") or bool(filters.get("status") or filters.get("exited"))
        items = [c for c in containers.all() if not c.record.placeholder
                 and (everything or c.running()) and _matches(c, filters)]
        items.sort(key=lambda c: c.record.created, reverse=True)
        limit = req.int_arg("limit", -1)
        if limit and limit > 0:
            items = items[:limit]
        req.send_json([_summary(c) for c in items])

    @router.route("POST", "/containers/create")
    def create(req: Request) -> None:
        body = req.json()
        c, warnings = containers.create(body, req.arg("name"), req.arg("platform"))
        req.send_json({"Id": c.id, "Warnings": warnings}, 201)

    @router.route("GET", "/containers/{id}/json")
    def inspect(req: Request) -> None:
        c = containers.get(req.params["id"])
        if c.record.placeholder:
            raise NotFound(f"No such container: {req.params['id']}")
        req.send_json(_inspect(c))

    @router.route("POST", "/containers/{id}/start")
    def start(req: Request) -> None:
        containers.start(req.params["id"])
        req.no_content()

    @router.route("POST", "/containers/{id}/stop")
    def stop(req: Request) -> None:
        containers.stop(req.params["id"], req.int_arg("t", req.int_arg("timeout")), req.arg("signal"))
        req.no_content()

    @router.route("POST", "/containers/{id}/restart")
    def restart(req: Request) -> None:
        containers.restart(req.params["id"], req.int_arg("t", req.int_arg("timeout")))
        req.no_content()

    @router.route("POST", "/containers/{id}/kill")
    def kill(req: Request) -> None:
        containers.kill(req.params["id"], req.arg("signal"))
        req.no_content()

    @router.route("POST", "/containers/{id}/wait")
    def wait(req: Request) -> None:
        block = containers.wait_handle(req.params["id"], req.arg("condition") or "not-running")
        # The head goes out at once, as Docker's does: clients (docker run) wait for it
        # before they start the container, and read the body when it exits.
        out = req.stream()
        try:
            result = block(req.client_gone)
            if result is not None:
                out.json(result)
        finally:
            out.close()

    @router.route("DELETE", "/containers/{id}")
    def remove(req: Request) -> None:
        containers.remove(req.params["id"], force=req.flag("force"), volumes=req.flag("v"))
        req.no_content()

    @router.route("POST", "/containers/{id}/rename")
    def rename(req: Request) -> None:
        new = req.arg("name")
        if not new:
            raise InvalidArgument("a new name is required (?name=)")
        containers.rename(req.params["id"], new)
        req.no_content()

    @router.route("POST", "/containers/{id}/update")
    def update(req: Request) -> None:
        req.send_json({"Warnings": containers.update(req.params["id"], req.json())})

    @router.route("POST", "/containers/{id}/resize")
    def resize(req: Request) -> None:
        c = containers.get(req.params["id"])
        if not c.running():
            raise Conflict(f"Container {c.id} is not running")
        from ._shimctl import Shim

        Shim(daemon.paths.shim_dir(c.id)).control(
            {"op": "resize", "width": req.int_arg("w", 80), "height": req.int_arg("h", 24)})
        req.send(200, b"", content_type="text/plain")

    @router.route("POST", "/containers/{id}/attach")
    def attach(req: Request) -> None:
        c = containers.get(req.params["id"])
        tty = bool(c.record.config.get("Tty"))
        stdin = req.flag("stdin") and bool(c.record.config.get("OpenStdin"))
        if not c.running() and c.state.status.value not in ("created", "exited", "restarting") \
                and not c.starting:
            raise Conflict(f"You cannot attach to a stopped container {c.id}")
        streaming = req.flag("stream", True)
        pending = containers.expect_attach(c) if streaming else None
        try:
            client = req.hijack("application/vnd.docker.raw-stream" if tty
                                else "application/vnd.docker.multiplexed-stream")
            if req.flag("logs"):
                for entry in read_log(c.record.log_path):
                    data = entry.get("log", "").encode()
                    client.sendall(data if tty else frame(entry.get("stream", "stdout"), data))
            if not streaming:
                return
            sock = containers.wait_for_shim(c, pending).attach()
        except Exception:  # noqa: BLE001 - the client just sees the stream end
            return
        finally:
            if pending is not None:
                pending["connected"].set()  # the waiting start may run the container now
        relay(client, sock, tty=tty, stdin=stdin, stdout=req.flag("stdout", True),
              stderr=req.flag("stderr", True))

    @router.route("GET", "/containers/{id}/logs")
    def logs(req: Request) -> None:
        c = containers.get(req.params["id"])
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
                                  since=parse_time(req.arg("since")) if req.arg("since") not in (None, "0") else None,
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

    @router.route("GET", "/containers/{id}/top")
    def top(req: Request) -> None:
        c = containers.get(req.params["id"])
        if not c.running():
            raise Conflict(f"Container {c.id} is not running")
        pid = c.state.pid
        procs = []
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            pass
        names = user_names(c.record.rootfs)
        rows = []
        for p in procs:
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    total = int(t.user + t.system)
                    uid = p.uids().real
                    rows.append([names.get(uid, str(uid)), str(p.pid), str(p.ppid()), "0",
                                 time.strftime("%H:%M", time.localtime(p.create_time())),
                                 "?", f"{total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}",
                                 " ".join(p.cmdline()) or p.name()])
            except psutil.Error:
                continue
        req.send_json({"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
                       "Processes": rows})

    @router.route("GET", "/containers/{id}/stats")
    def stats(req: Request) -> None:
        c = containers.get(req.params["id"])
        stream = req.flag("stream", True) and not req.flag("one-shot")
        out = req.stream()
        try:
            previous = None
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

    @router.route("POST", "/containers/prune")
    def prune(req: Request) -> None:
        deleted = []
        for c in containers.all():
            if not c.running() and not c.starting and not c.record.placeholder:
                try:
                    containers.remove(c.id)
                    deleted.append(c.id)
                except (Conflict, NotFound):
                    continue
        req.send_json({"ContainersDeleted": deleted, "SpaceReclaimed": 0})


def _stats_sample(c: Container) -> dict[str, Any]:
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


