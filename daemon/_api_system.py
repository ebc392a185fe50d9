"""``/info``, ``/version``, ``/_ping``, ``/events``, ``/system/df``.

``POST /auth``, in the reference's System section too, is in ``_api_auth``.
"""

from __future__ import annotations

import os
import platform
import queue
import time
from typing import TYPE_CHECKING, Any

from rctr.core.arch import go_arch
from rctr.core.cgroups import Delegation
from rctr.core.config import Config

from ._api_images import image_summary
from ._http import API_VERSION, MIN_API_VERSION, Request
from ._logs import parse_time
from ._record import Record

if TYPE_CHECKING:
    from ._main import Daemon

__all__ = ["system_info", "system_version", "system_ping", "system_events",
           "system_data_usage"]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("rctr")
    except Exception:  # noqa: BLE001
        return "0"


def _event_matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if not values:
            continue
        if key == "type" and event["Type"] not in values:
            return False
        if key == "event" and event["Action"].split(":")[0] not in values:
            return False
        if key in ("container", "image", "volume") and event["Type"] == key and not any(
                v in (event["Actor"]["ID"], event["Actor"]["Attributes"].get("name"))
                or event["Actor"]["ID"].startswith(v) for v in values):
            return False
        if key == "container" and event["Type"] != "container":
            return False
        if key == "label":
            attrs = event["Actor"]["Attributes"]
            for v in values:
                k, sep, val = v.partition("=")
                if k not in attrs or (sep and attrs[k] != val):
                    return False
    return True


def system_info(daemon: Daemon, req: Request) -> None:
    cs = [c for c in daemon.containers.all() if not c.record.placeholder]
    running = sum(1 for c in cs if c.running())
    uname = platform.uname()
    config = daemon.config
    req.send_json({
        "ID": daemon.instance_id, "Containers": len(cs), "ContainersRunning": running,
        "ContainersPaused": 0, "ContainersStopped": len(cs) - running,
        "Images": len(daemon.store.images.list()), "Driver": daemon.driver,
        "DriverStatus": [["Root Dir", daemon.paths.storage]],
        "Plugins": {"Volume": ["local"], "Network": ["host", "none"], "Log": ["json-file"]},
        **_limits(daemon.delegation), "CPUSet": False, "IPv4Forwarding": False,
        "Debug": config.log_level == "debug", "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": 0,
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs" if daemon.delegation else "none",
        "CgroupVersion": _cgroup_version(daemon.delegation),
        "KernelVersion": uname.release, "OperatingSystem": _os_name(), "OSType": "linux",
        "Architecture": uname.machine, "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(), "DockerRootDir": daemon.paths.datadir,
        "Name": uname.node, "Labels": [], "ExperimentalBuild": False,
        "ServerVersion": _version(),
        "Runtimes": {name: {"path": name} for name in ("rctr", "crun", "runc")},
        "DefaultRuntime": daemon.runtime.name, "Swarm": {"LocalNodeState": "inactive"},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": daemon.init_path or "",
        "SecurityOptions": ["name=seccomp,profile=default", "name=rootless"],
        "Warnings": daemon.warnings,
        **_registries(config),
    })


def _registries(config: Config) -> dict[str, Any]:
    """/info's registry settings: rctr.toml's mirrors and insecure registries."""
    mirrored = dict(config.registry_mirrors)
    indexes = {name: {"Name": name, "Mirrors": list(mirrored.get(name, ())),
                      "Secure": name not in config.insecure_registries,
                      "Official": name == "docker.io"}
               for name in ("docker.io", *mirrored, *(h for h in config.insecure_registries
                                                      if "/" not in h))}
    return {
        "IndexServerAddress": "https://index.docker.io/v1/", "RegistryConfig": {
            "InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128", *(
                h for h in config.insecure_registries if "/" in h)],
            "IndexConfigs": indexes, "Mirrors": list(mirrored.get("docker.io", ())),
            "AllowNondistributableArtifactsCIDRs": None,
            "AllowNondistributableArtifactsHostnames": None},
    }


def system_version(daemon: Daemon, req: Request) -> None:
    uname = platform.uname()
    v = _version()
    req.send_json({
        "Platform": {"Name": "rctr"},
        "Components": [{"Name": "Engine", "Version": v,
                        "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                                    "Os": "linux", "Arch": go_arch(),
                                    "KernelVersion": uname.release, "Experimental": "false"}}],
        "Version": v, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "", "GoVersion": f"python{platform.python_version()}", "Os": "linux",
        "Arch": go_arch(), "KernelVersion": uname.release, "BuildTime": "",
    })


def system_ping(daemon: Daemon, req: Request) -> None:
    req.send(200, b"OK", content_type="text/plain",
             headers={"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache",
                      "Builder-Version": "1"})


def system_events(daemon: Daemon, req: Request) -> None:
    since = parse_time(req.arg("since"))
    until = parse_time(req.arg("until"))
    filters = req.filters()
    past, q = daemon.events.subscribe(int(since * 1e9) if since is not None else None)
    out = req.stream()
    try:
        for event in past:
            if until is not None and event["timeNano"] > until * 1e9:
                return
            if _event_matches(event, filters):
                out.json(event)
        while until is None or time.time() < until:
            try:
                event = q.get(timeout=1.0 if until is None
                              else max(0.01, min(1.0, until - time.time())))
            except queue.Empty:
                if req.client_gone():
                    return
                continue
            if _event_matches(event, filters):
                out.json(event)
    finally:
        daemon.events.unsubscribe(q)
        out.close()


def system_data_usage(daemon: Daemon, req: Request) -> None:
    images = [image_summary(daemon, i) for i in daemon.store.images.list()]
    containers = []
    for c in daemon.containers.all():
        if c.record.placeholder:
            continue
        containers.append(_df_entry(c.record))
    volumes = []
    for v in daemon.volumes.list():
        users = sum(1 for c in daemon.containers.all()
                    for m in c.record.mounts if m.get("Name") == v["Name"])
        volumes.append({**v, "UsageData": {"Size": daemon.volumes.size(v["Name"]),
                                           "RefCount": users}})
    req.send_json({"LayersSize": sum(i["Size"] for i in images), "Images": images,
                   "Containers": containers, "Volumes": volumes, "BuildCache": []})


def _df_entry(r: Record) -> dict[str, Any]:
    """A container in ``GET /system/df``."""
    return {"Id": r.id, "Names": ["/" + r.name], "Image": r.config.get("Image"),
            "ImageID": r.image, "State": r.state.status.value, "Status": r.state.status.value,
            "SizeRw": 0, "SizeRootFs": 0, "Created": int(parse_time(r.created) or 0),
            "Mounts": r.mounts, "Command": r.path, "Labels": r.config.get("Labels") or {}}


def _cgroup_version(delegation: Delegation | None) -> str:
    return "2" if delegation or os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def _limits(delegation: Delegation | None) -> dict[str, bool]:
    """/info's booleans for the limits this daemon can enforce."""
    have = delegation.controllers if delegation else frozenset()
    memory, cpu = "memory" in have, "cpu" in have
    return {"MemoryLimit": memory, "SwapLimit": memory, "CpuCfsPeriod": cpu, "CpuCfsQuota": cpu,
            "CPUShares": cpu, "PidsLimit": "pids" in have}


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
