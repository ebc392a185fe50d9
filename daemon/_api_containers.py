"""The ``/containers`` endpoints of a container's life: list, create, inspect, start, stop,
restart, kill, update, rename, wait, delete, prune; over ``Containers``.

Its processes and streams (top, logs, stats, resize, attach) are in ``_api_container_io``,
its files (archive) in ``_api_archive``, its exec instances in ``_api_exec``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rctr.core.errors import Conflict, InvalidArgument, NotFound

from ._http import Request
from ._logs import parse_time
from ._record import Status, inspect_json
from .containers import Container

if TYPE_CHECKING:
    from ._main import Daemon

__all__ = ["container_list", "container_create", "container_inspect", "container_start",
           "container_stop", "container_restart", "container_kill", "container_update",
           "container_rename", "container_wait", "container_delete", "container_prune"]


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


def container_list(daemon: Daemon, req: Request) -> None:
    filters = req.filters()
    everything = req.flag("all") or bool(filters.get("status") or filters.get("exited"))
    items = [c for c in daemon.containers.all() if not c.record.placeholder
             and (everything or c.running()) and _matches(c, filters)]
    items.sort(key=lambda c: c.record.created, reverse=True)
    limit = req.int_arg("limit", -1)
    if limit and limit > 0:
        items = items[:limit]
    req.send_json([_summary(c) for c in items])


def container_create(daemon: Daemon, req: Request) -> None:
    body = req.json()
    c, warnings = daemon.containers.create(body, req.arg("name"))
    req.send_json({"Id": c.id, "Warnings": warnings}, 201)


def container_inspect(daemon: Daemon, req: Request) -> None:
    c = daemon.containers.get(req.params["id"])
    if c.record.placeholder:
        raise NotFound(f"No such container: {req.params['id']}")
    req.send_json(_inspect(c))


def container_start(daemon: Daemon, req: Request) -> None:
    daemon.containers.start(req.params["id"])
    req.no_content()


def container_stop(daemon: Daemon, req: Request) -> None:
    daemon.containers.stop(req.params["id"], req.int_arg("t", req.int_arg("timeout")),
                           req.arg("signal"))
    req.no_content()


def container_restart(daemon: Daemon, req: Request) -> None:
    daemon.containers.restart(req.params["id"], req.int_arg("t", req.int_arg("timeout")))
    req.no_content()


def container_kill(daemon: Daemon, req: Request) -> None:
    daemon.containers.kill(req.params["id"], req.arg("signal"))
    req.no_content()


def container_update(daemon: Daemon, req: Request) -> None:
    req.send_json({"Warnings": daemon.containers.update(req.params["id"], req.json())})


def container_rename(daemon: Daemon, req: Request) -> None:
    new = req.arg("name")
    if not new:
        raise InvalidArgument("a new name is required (?name=)")
    daemon.containers.rename(req.params["id"], new)
    req.no_content()


def container_wait(daemon: Daemon, req: Request) -> None:
    block = daemon.containers.wait_handle(req.params["id"], req.arg("condition") or "not-running")
    # The head goes out at once, as Docker's does: clients (docker run) wait for it
    # before they start the container, and read the body when it exits.
    out = req.stream()
    try:
        result = block(req.client_gone)
        if result is not None:
            out.json(result)
    finally:
        out.close()


def container_delete(daemon: Daemon, req: Request) -> None:
    daemon.containers.remove(req.params["id"], force=req.flag("force"), volumes=req.flag("v"))
    req.no_content()


def container_prune(daemon: Daemon, req: Request) -> None:
    deleted = []
    for c in daemon.containers.all():
        if not c.running() and not c.starting and not c.record.placeholder:
            try:
                daemon.containers.remove(c.id)
                deleted.append(c.id)
            except (Conflict, NotFound):
                continue
    req.send_json({"ContainersDeleted": deleted, "SpaceReclaimed": 0})
