"""A container's record: rctr's own state as typed fields, and its form on disk.

The record is what ``<datadir>/containers/ID/config.json`` holds.  Docker's request
parts (``Config``, ``HostConfig``), the ``Mounts`` and ``NetworkSettings`` stay the
JSON they are in Docker's API; everything rctr decides or tracks itself (the state
and its lifecycle, the root's mount, the image named, the anonymous volumes, the user
networks, the cgroup, the health...) is a field.  Docker's inspect JSON is made from
a record only at the API boundary (``inspect_json``).

Dataclasses, not attrs: they are in the stdlib (rctrd adds no dependency and no import
time for them), mypy reads them without a plugin, and what attrs adds (validators,
converters) is not needed here: requests are checked where they arrive, and the
record only ever holds what the daemon itself put in.

On disk, a record carries ``version``.  A record without it was written by rctr 0.x
before the typed record (``LEGACY_VERSION``): Docker's inspect shape, with rctr's own
fields under ``_rctr``.  Such a record is read as it is, so the containers that an
older rctrd started survive its upgrade; the next write stores the current form.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

from ._logs import format_time

__all__ = ["JSON", "LEGACY_VERSION", "RECORD_VERSION", "ZERO_TIME", "Endpoint", "Record",
           "State", "Status", "UnknownVersion", "from_disk", "inspect_json", "to_disk"]

JSON = dict[str, Any]
ZERO_TIME = "0001-01-01T00:00:00Z"
RECORD_VERSION = 2
LEGACY_VERSION = 1  # no "version" key: the inspect shape plus "_rctr"


class UnknownVersion(ValueError):
    """A record written by a later rctrd: this one leaves it, and what it owns, alone."""


class Status(str, enum.Enum):
    """Docker's ``State.Status``."""
    CREATED = "created"
    RUNNING = "running"
    RESTARTING = "restarting"
    EXITED = "exited"
    REMOVING = "removing"
    PAUSED = "paused"
    DEAD = "dead"


@dataclass(slots=True)
class State:
    """The lifecycle: created -> running -> exited (-> restarting -> running ...) -> removing.

    The transitions are the methods; the record is changed under its container's lock.
    """
    status: Status = Status.CREATED
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    health: JSON | None = None      # Docker's State.Health, while a healthcheck runs or ran
    health_run: str | None = None   # the StartedAt of the run that ``health`` belongs to

    @property
    def running(self) -> bool:
        return self.status is Status.RUNNING

    def started(self, pid: int) -> None:
        self.status, self.pid, self.exit_code, self.error = Status.RUNNING, pid, 0, ""
        self.started_at, self.finished_at = format_time(), ZERO_TIME

    def exited(self, code: int, finished_at: str, error: str) -> None:
        self.status, self.pid, self.exit_code = Status.EXITED, 0, code
        self.finished_at, self.error = finished_at, error

    def start_failed(self, error: str, code: int) -> None:
        """A start that did not get the container running: the status stays as it was."""
        self.error, self.exit_code = error, code

    def restarting(self) -> None:
        self.status = Status.RESTARTING

    def restart_failed(self, error: str) -> None:
        self.status, self.error = Status.EXITED, error

    def removing(self) -> None:
        self.status = Status.REMOVING


@dataclass(slots=True)
class Endpoint:
    """What a container asks of its endpoint on a user network (part of Docker's
    EndpointSettings), and the interface it got at its last start."""
    network_id: str
    aliases: list[str] = field(default_factory=list)
    ipv4_address: str = ""
    ifname: str = ""


@dataclass(slots=True)
class Record:
    id: str
    name: str                      # without Docker's leading "/"
    created: str = ""
    path: str = ""
    args: list[str] = field(default_factory=list)
    image: str = ""                # the image's id
    image_ref: str = ""            # the image as the create request named it
    driver: str = ""
    runtime: str = ""
    config: JSON = field(default_factory=dict)         # Docker's Config, merged with the image's
    host_config: JSON = field(default_factory=dict)    # Docker's HostConfig
    mounts: list[JSON] = field(default_factory=list)   # Docker's MountPoints (and NoCopy)
    network_settings: JSON = field(default_factory=dict)  # Docker's NetworkSettings
    graph_driver: JSON = field(default_factory=dict)   # Docker's GraphDriver
    resolv_conf_path: str = ""
    hostname_path: str = ""
    hosts_path: str = ""
    log_path: str = ""
    state: State = field(default_factory=State)
    restart_count: int = 0
    rw_mount: JSON = field(default_factory=dict)      # storage's description of the root's mount
    anonymous: list[str] = field(default_factory=list)  # volumes made for it, removed with -v
    manually_stopped: bool = False
    networks: dict[str, Endpoint] = field(default_factory=dict)  # user networks, by name
    cgroup: str = ""               # its cgroup directory while it runs with one of its own
    placeholder: bool = False      # a name reserved by a create under way

    @property
    def rootfs(self) -> str:
        return str(self.rw_mount.get("destination") or "")


# -- Docker's view, at the API boundary -------------------------------------------------------

def inspect_json(r: Record, exec_ids: list[str] | None = None) -> JSON:
    """``GET /containers/{id}/json``: Docker's inspect of the record (a copy: the caller
    may change it)."""
    out: JSON = {
        "Id": r.id, "Created": r.created, "Path": r.path, "Args": list(r.args),
        "State": _state_json(r.state), "Image": r.image,
        "ResolvConfPath": r.resolv_conf_path, "HostnamePath": r.hostname_path,
        "HostsPath": r.hosts_path, "LogPath": r.log_path, "Name": "/" + r.name,
        "RestartCount": r.restart_count, "Driver": r.driver, "Platform": "linux",
        "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "ExecIDs": exec_ids or None, "HostConfig": r.host_config, "GraphDriver": r.graph_driver,
        "Mounts": [{k: v for k, v in m.items() if k != "NoCopy"} for m in r.mounts],
        "Config": r.config, "NetworkSettings": r.network_settings,
    }
    copied: JSON = _copy(out)
    return copied


def _state_json(s: State) -> JSON:
    out: JSON = {
        "Status": s.status.value, "Running": s.running, "Paused": False,
        "Restarting": s.status is Status.RESTARTING, "OOMKilled": False, "Dead": False,
        "Pid": s.pid, "ExitCode": s.exit_code, "Error": s.error, "StartedAt": s.started_at,
        "FinishedAt": s.finished_at}
    if s.health:
        out["Health"] = s.health
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# -- on disk ----------------------------------------------------------------------------------

def to_disk(r: Record) -> JSON:
    """The record as ``config.json`` holds it (the current version)."""
    out: JSON = {"version": RECORD_VERSION}
    out.update(dataclasses.asdict(r))
    out["state"]["status"] = r.state.status.value
    return out


def from_disk(data: JSON) -> Record:
    """A record from ``config.json``: the current version, or the legacy one."""
    version = data.get("version", LEGACY_VERSION)
    if version == LEGACY_VERSION:
        return _from_legacy(data)
    if version != RECORD_VERSION:
        raise UnknownVersion(f"container record version {version} is not known to this rctrd")
    fields = {f.name for f in dataclasses.fields(Record)}
    values = {k: v for k, v in data.items() if k in fields}
    values["state"] = State(**{**data["state"], "status": Status(data["state"]["status"])})
    values["networks"] = {n: Endpoint(**e) for n, e in (data.get("networks") or {}).items()}
    return Record(**values)


def _from_legacy(d: JSON) -> Record:
    """A record as rctrd wrote it before ``version``: the inspect shape plus ``_rctr``."""
    private, state = d.get("_rctr") or {}, d.get("State") or {}
    return Record(
        id=d["Id"], name=str(d.get("Name") or "").lstrip("/"), created=d.get("Created", ""),
        path=d.get("Path", ""), args=list(d.get("Args") or []), image=d.get("Image", ""),
        image_ref=private.get("image_ref", ""), driver=d.get("Driver", ""),
        runtime=private.get("runtime", ""), config=d.get("Config") or {},
        host_config=d.get("HostConfig") or {}, mounts=list(d.get("Mounts") or []),
        network_settings=d.get("NetworkSettings") or {}, graph_driver=d.get("GraphDriver") or {},
        resolv_conf_path=d.get("ResolvConfPath", ""), hostname_path=d.get("HostnamePath", ""),
        hosts_path=d.get("HostsPath", ""), log_path=d.get("LogPath", ""),
        state=_legacy_state(state, private), restart_count=int(d.get("RestartCount") or 0),
        rw_mount=private.get("rw_mount") or {}, anonymous=list(private.get("anonymous") or []),
        manually_stopped=bool(private.get("manually_stopped")),
        networks={n: _legacy_endpoint(e) for n, e in (private.get("networks") or {}).items()},
        cgroup=private.get("cgroup") or "", placeholder=bool(private.get("placeholder")))


def _legacy_state(s: JSON, private: JSON) -> State:
    return State(
        status=Status(s.get("Status") or "created"), pid=int(s.get("Pid") or 0),
        exit_code=int(s.get("ExitCode") or 0), error=s.get("Error") or "",
        started_at=s.get("StartedAt") or ZERO_TIME, finished_at=s.get("FinishedAt") or ZERO_TIME,
        health=private.get("health"), health_run=private.get("health_run"))


def _legacy_endpoint(e: JSON) -> Endpoint:
    return Endpoint(network_id=str(e.get("NetworkID") or ""),
                    aliases=[str(a) for a in e.get("Aliases") or []],
                    ipv4_address=e.get("IPv4Address") or "", ifname=e.get("_ifname") or "")
