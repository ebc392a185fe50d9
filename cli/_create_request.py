"""``run``/``create`` flags to the body of ``POST /containers/create``.

A pure translation, as docker's ``cli/command/container/opts.go`` does it:
Config fields at the top level, ``HostConfig`` and ``NetworkingConfig``
beside them.  Pure so that every flag is tested without a daemon; file reads
(``--env-file``, ``--security-opt seccomp=FILE``) and the environment go
through arguments.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence

from ._context import CLIError
from ._units import parse_bytes, parse_duration

# For the type checker only (start-up imports: see _run_fastpath).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal

    from ._api_types import (ContainerConfig, CreateBody, Empty, EndpointSettings, Healthcheck,
                             HostConfig, Mount, MountBindOptions, MountTmpfsOptions,
                             MountVolumeOptions, PortBinding, Ports, Resources, RestartPolicy,
                             Ulimit, UpdateConfig)

__all__ = [
    "CreateRequest",
    "build_create",
    "parse_env",
    "parse_env_file",
    "parse_mount",
    "parse_ports",
    "parse_restart",
    "parse_volume",
    "resource_settings",
]

PULL_POLICIES = ("missing", "always", "never")
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
_BUILTIN_NETWORKS = ("default", "bridge", "host", "none")


class CreateRequest:
    """What ``create`` sends: the query (name, platform) and the JSON body."""

    __slots__ = ("body", "name", "platform", "pull")

    def __init__(self, body: CreateBody, name: str | None = None, platform: str | None = None,
                 pull: str = "missing") -> None:
        self.body, self.name, self.platform, self.pull = body, name, platform, pull

    @property
    def params(self) -> dict[str, str | None]:
        return {"name": self.name or None, "platform": self.platform or None}


def _kv(items: Sequence[str], what: str, allow_bare: bool = True) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key or (not sep and not allow_bare):
            raise CLIError(f"invalid {what} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def parse_env_file(path: str, environ: Mapping[str, str]) -> list[str]:
    """Docker's env-file: ``KEY=VALUE`` lines, ``#`` comments, bare ``KEY`` from the environment."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise CLIError(f"open {path}: {exc.strerror}") from None
    kept = [ln.lstrip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return parse_env(kept, environ)


def parse_env(items: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    out = []
    for item in items:
        if "=" in item:
            if item.startswith("="):
                raise CLIError(f"invalid environment variable: {item}")
            out.append(item)
        elif item in environ:
            out.append(f"{item}={environ[item]}")
    return out


def _split_port(raw: str) -> tuple[str, str, str]:
    parts = raw.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    ip = ":".join(parts[:-2])
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    return ip, parts[-2], parts[-1]


def _port_range(text: str, what: str, low: int) -> tuple[int, int]:
    start, _, end = text.partition("-")
    try:
        a, b = int(start), int(end or start)
    except ValueError:
        raise CLIError(f"invalid {what}: {text}") from None
    if not (low <= a <= b <= 65535):
        raise CLIError(f"invalid {what}: {text}")
    return a, b


def parse_ports(specs: Sequence[str]) -> Ports:
    """``-p [ip:][hostPort:]containerPort[/proto]`` (ranges too): ExposedPorts, PortBindings."""
    exposed: dict[str, Empty] = {}
    bindings: dict[str, list[PortBinding]] = {}
    for spec in specs:
        raw, _, proto = spec.rpartition("/") if "/" in spec else (spec, "", "tcp")
        proto = proto.lower() or "tcp"
        if proto not in ("tcp", "udp", "sctp"):
            raise CLIError(f"invalid proto: {proto}")
        ip, host, container = _split_port(raw)
        c_lo, c_hi = _port_range(container, "containerPort", 1)
        count = c_hi - c_lo + 1
        hosts: list[str]
        if not host:
            hosts = [""] * count
        else:
            h_lo, h_hi = _port_range(host, "hostPort", 0)
            if count == 1:
                hosts = [host]
            elif h_hi - h_lo + 1 == count:
                hosts = [str(h_lo + i) for i in range(count)]
            else:
                raise CLIError(f"invalid ranges specified for container and host ports: {spec}")
        for i in range(count):
            key = f"{c_lo + i}/{proto}"
            exposed[key] = {}
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": hosts[i]})
    return exposed, bindings


def parse_volume(spec: str, cwd: str) -> tuple[str | None, str | None]:
    """``-v``: (bind for HostConfig.Binds, or None; anonymous volume path, or None)."""
    parts = spec.split(":")
    if len(parts) == 1 or (len(parts) == 2 and parts[1] in ("ro", "rw", "z", "Z")):
        if not parts[0].startswith("/"):
            raise CLIError(f"invalid volume specification: '{spec}': the mount point must be"
                           " an absolute path")
        return None, parts[0]
    if len(parts) > 3 or not parts[0] or not parts[1].startswith("/"):
        raise CLIError(f"invalid volume specification: '{spec}'")
    source = parts[0]
    if source == "." or source.startswith("./") or source.startswith(".."):
        source = os.path.normpath(os.path.join(cwd, source))
    return ":".join([source] + parts[1:]), None


_TRUE = ("", "1", "true")
_FALSE = ("0", "false")


def _flag(key: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise CLIError(f"invalid value for {key}: {value}")


def parse_mount(spec: str) -> Mount:
    """``--mount type=bind,src=…,dst=…,readonly`` to one HostConfig.Mounts entry."""
    import csv  # here: only --mount needs it, and rctr run's start-up should not pay for it

    mount: Mount = {"Type": "volume"}
    bind: MountBindOptions = {}
    volume: MountVolumeOptions = {}
    tmpfs: MountTmpfsOptions = {}
    for item in next(csv.reader([spec]), []):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not _mount_field(key, value, mount, bind, volume, tmpfs):
            raise CLIError(f"unexpected key '{key}' in '{item}'")
        if not sep and key not in ("readonly", "ro", "volume-nocopy", "bind-nonrecursive"):
            raise CLIError(f"invalid field '{item}' must be a key=value pair")
    kind = mount["Type"]
    if kind not in ("bind", "volume", "tmpfs"):
        raise CLIError(f"unsupported mount type {kind!r} (bind, volume or tmpfs)")
    if not mount.get("Target"):
        raise CLIError("target is required")
    if kind == "bind" and not mount.get("Source"):
        raise CLIError("source is required when type is bind")
    if kind == "tmpfs" and mount.get("Source"):
        raise CLIError("source must not be given for tmpfs mounts")
    for own, given in (("bind", bind), ("volume", volume), ("tmpfs", tmpfs)):
        if given and kind != own:
            raise CLIError(f"cannot mix '{own}-*' options with mount type '{kind}'")
    if bind:
        mount["BindOptions"] = bind
    if volume:
        mount["VolumeOptions"] = volume
    if tmpfs:
        mount["TmpfsOptions"] = tmpfs
    return mount


def _mount_field(key: str, value: str, mount: Mount, bind: MountBindOptions,
                 volume: MountVolumeOptions, tmpfs: MountTmpfsOptions) -> bool:
    """Put one ``key=value`` of ``--mount`` where it belongs; False for an unknown key."""
    if key == "type":
        mount["Type"] = value
    elif key in ("source", "src"):
        mount["Source"] = value
    elif key in ("target", "destination", "dst"):
        mount["Target"] = value
    elif key in ("readonly", "ro"):
        mount["ReadOnly"] = _flag(key, value)
    elif key == "consistency":
        mount["Consistency"] = value
    elif key == "bind-propagation":
        bind["Propagation"] = value
    elif key == "bind-nonrecursive":
        bind["NonRecursive"] = _flag(key, value)
    elif key == "volume-nocopy":
        volume["NoCopy"] = _flag(key, value)
    elif key == "volume-label":
        volume.setdefault("Labels", {}).update(_kv([value], "volume-label"))
    elif key == "volume-driver":
        volume.setdefault("DriverConfig", {})["Name"] = value
    elif key == "volume-opt":
        volume.setdefault("DriverConfig", {}).setdefault("Options", {}).update(
            _kv([value], "volume-opt", allow_bare=False))
    elif key == "tmpfs-size":
        tmpfs["SizeBytes"] = _bytes(value, "tmpfs-size")
    elif key == "tmpfs-mode":
        try:
            tmpfs["Mode"] = int(value, 8)
        except ValueError:
            raise CLIError(f"invalid value for tmpfs-mode: {value}") from None
    else:
        return False
    return True


def parse_restart(value: str) -> RestartPolicy:
    name, _, count = value.partition(":")
    if name not in RESTART_POLICIES:
        raise CLIError(f"invalid restart policy {value!r}: use {', '.join(RESTART_POLICIES)}")
    retries = 0
    if count:
        if name != "on-failure":
            raise CLIError(f"maximum retry count cannot be used with restart policy '{name}'")
        try:
            retries = int(count)
        except ValueError:
            raise CLIError(f"maximum retry count must be an integer: {count}") from None
    return {"Name": name, "MaximumRetryCount": retries}


def _bytes(value: str, flag: str) -> int:
    try:
        return parse_bytes(value)
    except ValueError:
        raise CLIError(f"invalid value {value!r} for {flag}") from None


def _nanos(value: str | None, flag: str) -> int:
    if not value:
        return 0
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise CLIError(f"invalid duration {value!r} for {flag}") from None
    if seconds < 0:
        raise CLIError(f"{flag} cannot be negative")
    return int(round(seconds * 1e9))


def _healthcheck(o: Mapping[str, Any]) -> Healthcheck | None:
    interval = _nanos(o.get("health_interval"), "--health-interval")
    timeout = _nanos(o.get("health_timeout"), "--health-timeout")
    start_period = _nanos(o.get("health_start_period"), "--health-start-period")
    retries: int = o.get("health_retries") or 0
    have = bool(o.get("health_cmd")) or bool(interval or timeout or start_period or retries)
    if o.get("no_healthcheck"):
        if have:
            raise CLIError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not have:
        return None
    if retries < 0:
        raise CLIError("--health-retries cannot be negative")
    health: Healthcheck = {}
    if o.get("health_cmd"):
        health["Test"] = ["CMD-SHELL", o["health_cmd"]]
    health.update({"Interval": interval, "Timeout": timeout, "StartPeriod": start_period,
                   "Retries": retries})
    return health


def _security_opts(opts: Sequence[str], read: Callable[[str], str]) -> list[str]:
    """Docker's CLI sends a seccomp profile's content, not its path."""
    out = []
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        if key == "seccomp" and value and value != "unconfined":
            try:
                profile = json.loads(read(value))
            except (OSError, ValueError) as exc:
                raise CLIError(f"opening seccomp profile ({value}) failed: {exc}") from None
            opt = "seccomp=" + json.dumps(profile, separators=(",", ":"))
        out.append(opt)
    return out


def _ulimits(items: Sequence[str]) -> list[Ulimit]:
    out: list[Ulimit] = []
    for item in items:
        name, _, limits = item.partition("=")
        soft, _, hard = limits.partition(":")
        try:
            out.append({"Name": name, "Soft": int(soft), "Hard": int(hard or soft)})
        except ValueError:
            raise CLIError(f"invalid ulimit {item!r}: expected NAME=SOFT[:HARD]") from None
    return out


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def build_create(o: Mapping[str, Any], *, detach: bool | None = None, for_run: bool = True,
                 environ: Mapping[str, str] | None = None, cwd: str | None = None,
                 read: Callable[[str], str] = _read_text) -> CreateRequest:
    """The create request for the options ``o`` (click's parameter names)."""
    environ = os.environ if environ is None else environ
    cwd = os.getcwd() if cwd is None else cwd
    detach = bool(o.get("detach")) if detach is None else detach
    restart = parse_restart(o.get("restart") or "no")
    if o.get("rm") and restart["Name"] != "no":
        raise CLIError("Conflicting options: --restart and --rm")
    pull = o.get("pull") or "missing"
    if pull not in PULL_POLICIES:
        raise CLIError(f"invalid pull option: {pull!r}: must be one of {', '.join(PULL_POLICIES)}")
    env = _environment(o, environ)
    exposed, bindings = _ports(o)
    binds, volumes = _volumes(o, cwd)
    config = _config(o, env, exposed, volumes, attach_out=not (for_run and detach),
                     stdin_once=for_run and not detach)
    host = _host_config(o, restart, binds, bindings, read)
    endpoints = _endpoints(host["NetworkMode"], o.get("network_alias") or ())
    body: CreateBody = {**config, "HostConfig": host, "NetworkingConfig": {"EndpointsConfig": endpoints}}
    return CreateRequest(body, o.get("name"), o.get("platform"), pull)


def _environment(o: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """``--env-file`` first, then ``-e``, as docker's CLI merges them."""
    env: list[str] = []
    for path in o.get("env_file") or ():
        env += parse_env_file(path, environ)
    return env + parse_env(o.get("env") or (), environ)


def _ports(o: Mapping[str, Any]) -> Ports:
    """``-p`` and ``--expose``: ExposedPorts and PortBindings."""
    exposed, bindings = parse_ports(o.get("publish") or ())
    for port in o.get("expose") or ():
        exposed.update(parse_ports([port.split(":")[-1]])[0])
    return exposed, bindings


def _volumes(o: Mapping[str, Any], cwd: str) -> tuple[list[str], dict[str, Empty]]:
    """``-v``: binds (HostConfig.Binds) and anonymous volumes (Config.Volumes)."""
    binds: list[str] = []
    volumes: dict[str, Empty] = {}
    for spec in o.get("volume") or ():
        bind, anon = parse_volume(spec, cwd)
        if bind:
            binds.append(bind)
        elif anon is not None:
            volumes[anon] = {}
    return binds, volumes


def _config(o: Mapping[str, Any], env: list[str], exposed: dict[str, Empty],
            volumes: dict[str, Empty], *, attach_out: bool, stdin_once: bool) -> ContainerConfig:
    """The body's top level (docker's container.Config): the process, its stdio, its image.

    ``attach_out``: create attaches stdout/stderr, as docker's does; only ``run -d`` does not.
    """
    interactive = bool(o.get("interactive"))
    config: ContainerConfig = {
        "Hostname": o.get("hostname") or "",
        "User": o.get("user") or "",
        "AttachStdin": interactive and attach_out,
        "AttachStdout": attach_out,
        "AttachStderr": attach_out,
        "ExposedPorts": exposed,
        "Tty": bool(o.get("tty")),
        "OpenStdin": interactive,
        "StdinOnce": interactive and stdin_once,
        "Env": env,
        "Cmd": list(o["command"]) if o.get("command") else None,
        "Image": o["image"],
        "Volumes": volumes,
        "WorkingDir": o.get("workdir") or "",
        "Entrypoint": None,
        "Labels": _kv(o.get("label") or (), "label"),
    }
    if o.get("entrypoint") is not None:
        config["Entrypoint"] = [o["entrypoint"]] if o["entrypoint"] else []
    health = _healthcheck(o)
    if health is not None:
        config["Healthcheck"] = health
    if o.get("stop_signal"):
        config["StopSignal"] = o["stop_signal"]
    if o.get("stop_timeout") is not None:
        config["StopTimeout"] = int(o["stop_timeout"])
    return config


def _host_config(o: Mapping[str, Any], restart: RestartPolicy, binds: list[str],
                 bindings: dict[str, list[PortBinding]], read: Callable[[str], str]) -> HostConfig:
    """``HostConfig``: what the container may use and how it is connected and kept."""
    host: HostConfig = {
        "Binds": binds,
        "Mounts": [parse_mount(m) for m in o.get("mount") or ()],
        "PortBindings": bindings,
        "PublishAllPorts": bool(o.get("publish_all")),
        "NetworkMode": o.get("network") or "default",
        "AutoRemove": bool(o.get("rm")),
        "RestartPolicy": restart,
        "CapAdd": list(o.get("cap_add") or ()),
        "CapDrop": list(o.get("cap_drop") or ()),
        "Privileged": bool(o.get("privileged")),
        "ReadonlyRootfs": bool(o.get("read_only")),
        "Memory": 0,
        "NanoCpus": 0,
        "LogConfig": {"Type": o.get("log_driver") or "",
                      "Config": _kv(o.get("log_opt") or (), "log-opt", allow_bare=False)},
        "SecurityOpt": _security_opts(o.get("security_opt") or (), read),
        "ExtraHosts": list(o.get("add_host") or ()),
        "Dns": list(o.get("dns") or ()),
        "GroupAdd": list(o.get("group_add") or ()),
        "Sysctls": _kv(o.get("sysctl") or (), "sysctl", allow_bare=False),
        "Ulimits": _ulimits(o.get("ulimit") or ()),
    }
    if o.get("tmpfs"):
        host["Tmpfs"] = _tmpfs(o["tmpfs"])
    if o.get("init"):
        host["Init"] = True
    _add_resources(host, o)
    if o.get("shm_size"):
        host["ShmSize"] = _bytes(o["shm_size"], "--shm-size")
    return host


def _tmpfs(specs: Sequence[str]) -> dict[str, str]:
    """``--tmpfs PATH[:OPTIONS]``, the options as docker passes them (``rw,size=1m``)."""
    out = {}
    for spec in specs:
        path, _, options = spec.partition(":")
        out[path] = options
    return out


def _endpoints(network: str, aliases: Sequence[str]) -> dict[str, EndpointSettings]:
    """NetworkingConfig.EndpointsConfig: an entry for a user network only (its aliases)."""
    mode = network.partition(":")[0]
    if network in _BUILTIN_NETWORKS or mode in ("container", "slirp4netns", "pasta"):
        return {}
    return {network: {"Aliases": list(aliases)}}


def resource_settings(o: Mapping[str, Any]) -> UpdateConfig:
    """The resource flags that ``update`` shares with ``run``, as Docker's HostConfig fields;
    only those given (``update`` adds its restart policy)."""
    out: UpdateConfig = {}
    _add_resources(out, o)
    return out


_MEMORY_FLAGS: tuple[tuple[str, Literal["Memory", "MemorySwap", "MemoryReservation"], str], ...] = (
    ("memory", "Memory", "--memory"),
    ("memory_swap", "MemorySwap", "--memory-swap"),
    ("memory_reservation", "MemoryReservation", "--memory-reservation"),
)


def _add_resources(out: Resources, o: Mapping[str, Any]) -> None:
    for key, field, flag in _MEMORY_FLAGS:
        if o.get(key):
            out[field] = -1 if o[key] == "-1" else _bytes(o[key], flag)
    if o.get("cpus"):
        out["NanoCpus"] = _nano_cpus(o["cpus"])
    if o.get("cpu_shares"):
        out["CpuShares"] = int(o["cpu_shares"])
    if o.get("pids_limit") is not None:
        out["PidsLimit"] = int(o["pids_limit"])


def _nano_cpus(value: str | None) -> int:
    if not value:
        return 0
    try:
        cpus = float(value)
    except ValueError:
        raise CLIError(f"invalid argument {value!r} for --cpus: not a number") from None
    if cpus < 0:
        raise CLIError("--cpus cannot be negative")
    return int(round(cpus * 1e9))
