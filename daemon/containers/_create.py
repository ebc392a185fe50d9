"""``POST /containers/create``: check the request, then make everything, or nothing.

A record exists only once everything create makes exists (the directory, the RW layer,
the volumes): what a failure leaves is undone, and the name, reserved by a placeholder
meanwhile, is free again.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from rctr.core import cgroups
from rctr.core.errors import Conflict, InvalidArgument, NotFound

from .. import _container_network, _mounts
from .._logs import format_time
from .._names import check_name, random_name
from .._record import Endpoint, JSON, Record
from .._spec import DEFAULT_SHM_SIZE, check_config, command_of
from . import _usernets
from ._context import Container, Context

__all__ = ["create", "check_host_config", "image_config", "unenforced_limits"]

_RESTART_POLICIES = ("", "no", "always", "on-failure", "unless-stopped")

# HostConfig field, the flag that sets it, the cgroup v2 controller that enforces it.
_LIMITS = (("Memory", "--memory", "memory"), ("MemoryReservation", "--memory-reservation", "memory"),
           ("NanoCpus", "--cpus", "cpu"), ("CpuQuota", "--cpu-quota", "cpu"),
           ("CpuShares", "--cpu-shares", "cpu"), ("PidsLimit", "--pids-limit", "pids"))


@dataclass(frozen=True)
class _Request:
    """A create request, checked, with what it resolved to."""
    image_ref: str
    image: JSON
    image_config: JSON
    config: JSON
    host: JSON
    path_args: list[str]
    networks: dict[str, Endpoint]


def create(ctx: Context, body: JSON, name: str | None) -> tuple[Container, list[str]]:
    req, warnings = _checked(ctx, body)
    container_id = secrets.token_hex(32)
    name = _reserve_name(ctx, container_id, name)
    if not req.config.get("Hostname"):
        req.config["Hostname"] = container_id[:12]
    try:
        c = _make(ctx, container_id, name, req)
    except BaseException:
        with ctx.lock:
            ctx.by_id.pop(container_id, None)
        raise
    with ctx.lock:
        ctx.by_id[container_id] = c
    ctx.event(c, "create")
    return c, warnings


def _checked(ctx: Context, body: Any) -> tuple[_Request, list[str]]:
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    _container_network.resolve_default(body, ctx.default_network)
    image_ref = body.get("Image")
    if not image_ref or not isinstance(image_ref, str):
        raise InvalidArgument("Config.Image is required: which image should the container run?")
    host = body.get("HostConfig") or {}
    if not isinstance(host, dict):
        raise InvalidArgument("HostConfig must be an object")
    check_shapes(body)
    warnings = check_host_config(host, ctx.delegation)
    if not host.get("ShmSize"):
        host["ShmSize"] = DEFAULT_SHM_SIZE  # inspect shows the size /dev/shm gets, as Docker's
    try:
        image = ctx.store.images.get(image_ref)
    except NotFound:
        raise NotFound(f"No such image: {image_ref}") from None
    image_cfg = image_config(ctx, image)
    config = merged_config(body, image_cfg)
    warnings += _container_network.check(host, config, ctx.networks.exists)
    networks = _usernets.endpoints_of(ctx, host, body.get("NetworkingConfig"))
    check_config(config, host)
    path_args = command_of(image_cfg, config)
    return _Request(image_ref, image, image_cfg, config, host, path_args, networks), warnings


def _reserve_name(ctx: Context, container_id: str, name: str | None) -> str:
    """The container's name, held by a placeholder until the record lands."""
    with ctx.lock:
        taken = ctx.names()
        if name:
            name = check_name(name)
            if name in taken:
                other = next(c for c in ctx.by_id.values() if c.name == name)
                raise Conflict(f'Conflict. The container name "/{name}" is already in use by '
                               f'container "{other.id}". You have to remove (or rename) that '
                               "container to be able to reuse that name.")
        else:
            name = random_name(taken)
        ctx.by_id[container_id] = Container(Record(id=container_id, name=name, placeholder=True))
    return name


def _make(ctx: Context, container_id: str, name: str, req: _Request) -> Container:
    cdir = ctx.paths.container_dir(container_id)
    with ExitStack() as undo:
        os.makedirs(cdir, mode=0o700)
        undo.callback(_quietly, lambda: shutil.rmtree(cdir, ignore_errors=True))
        rw_mount = ctx.store.rw.create(container_id, req.image, ctx.driver)
        undo.callback(_quietly, lambda: ctx.store.rw.remove(container_id))
        mounts, anonymous = _volume_mounts(ctx, req, undo)
        record = _record(ctx, container_id, name, req, mounts, rw_mount)
        record.anonymous = anonymous
        record.network_settings = _container_network.cleared(record)
        c = Container(record)
        for fname in ("hostname", "hosts", "resolv.conf"):
            open(os.path.join(cdir, fname), "a").close()
        ctx.save(c)
        undo.pop_all()
    return c


def _quietly(step: Callable[[], Any]) -> None:
    try:
        step()
    except Exception:  # noqa: BLE001 - undo as much as possible
        pass


def _volume_mounts(ctx: Context, req: _Request,
                   undo: ExitStack) -> tuple[list[JSON], list[str]]:
    """The container's mounts, with the volumes they name made (and their undo on ``undo``);
    and the names of the anonymous ones."""
    mounts = _mounts.plan(req.host, req.image_config.get("Volumes"))
    anonymous = []
    for m in mounts:
        if m["Type"] == "volume":
            if not m["Name"]:
                m["Name"] = ctx.volumes.create(anonymous=True)["Name"]
                anonymous.append(m["Name"])
                undo.callback(_quietly, partial(ctx.volumes.remove, m["Name"]))
            elif not ctx.volumes.exists(m["Name"]):
                ctx.volumes.create(m["Name"])
                undo.callback(_quietly, partial(ctx.volumes.remove, m["Name"]))
            m["Source"] = ctx.volumes.data_path(m["Name"])
            m["Driver"] = "local"
            m["Propagation"] = ""
        elif m["Type"] == "bind":
            _mounts.make_bind_source(m)
    return mounts, anonymous


def check_host_config(host: JSON, delegation: cgroups.Delegation | None) -> list[str]:
    """Refuse what rctr cannot do; the warnings for the limits it cannot enforce."""
    policy = (host.get("RestartPolicy") or {}).get("Name") or ""
    if policy not in _RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy {policy!r}: use no, always, "
                              "on-failure[:N] or unless-stopped")
    if policy not in ("", "no") and host.get("AutoRemove"):
        raise InvalidArgument("conflicting options: cannot specify both --restart and --rm")
    warnings = unenforced_limits(host, delegation)
    log = host.get("LogConfig") or {}
    if log.get("Type") not in (None, "", "json-file", "local"):
        raise InvalidArgument(f"log driver {log.get('Type')!r} is not supported (json-file)")
    return warnings


def unenforced_limits(host: JSON, delegation: cgroups.Delegation | None) -> list[str]:
    """A warning for each limit in ``host`` that no delegated controller can enforce."""
    out = []
    for key, flag, controller in _LIMITS:
        if not host.get(key) or (isinstance(host[key], int) and host[key] < 0):
            continue
        if delegation is None:
            out.append(f"{flag} is not enforced: no cgroup v2 subtree is delegated to this user "
                       "(see `rctr doctor`)")
        elif controller not in delegation.controllers:
            out.append(f"{flag} is not enforced: the {controller} controller is not enabled in "
                       f"the delegated cgroup {delegation.base} (see `rctr doctor`)")
    return out


def image_config(ctx: Context, image: JSON) -> JSON:
    """The ``config`` of ``image``'s configuration blob."""
    raw = json.loads(ctx.store.blobs.read(image["config"]))
    config: JSON = raw.get("config") or {}
    return config


# Config's fields that merged_config combines with the image's, and the JSON type each
# must have (Go's decoding of container.Config refuses another: a 400, not a crash).
_OBJECTS = ("Labels", "ExposedPorts", "Volumes", "Healthcheck")
_STRING_LISTS = ("Env",)


def check_shapes(body: JSON) -> None:
    """InvalidArgument unless the fields merged with the image's have their JSON types."""
    for key in _OBJECTS:
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise InvalidArgument(f"Config.{key} must be a JSON object")
    labels = body.get("Labels") or {}
    if not all(isinstance(v, str) for v in labels.values()):
        raise InvalidArgument("Config.Labels must map names to strings")
    for key in _STRING_LISTS:
        value = body.get(key)
        if value is not None and not (isinstance(value, list)
                                      and all(isinstance(v, str) for v in value)):
            raise InvalidArgument(f"Config.{key} must be a list of strings")


def merged_config(body: JSON, image_config: JSON) -> JSON:
    """The container's ``Config``: the request's, completed from the image's."""
    config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
    env = {}
    for item in (image_config.get("Env") or []) + (config.get("Env") or []):
        env[item.partition("=")[0]] = item
    config["Env"] = list(env.values())
    if config.get("Entrypoint") is None:
        config["Entrypoint"] = image_config.get("Entrypoint")
        if not config.get("Cmd"):
            config["Cmd"] = image_config.get("Cmd")
    for key in ("WorkingDir", "User", "StopSignal"):
        if not config.get(key) and image_config.get(key):
            config[key] = image_config[key]
    config["Labels"] = {**(image_config.get("Labels") or {}), **(config.get("Labels") or {})}
    config["ExposedPorts"] = {**(image_config.get("ExposedPorts") or {}),
                              **(config.get("ExposedPorts") or {})} or None
    config["Volumes"] = {**(image_config.get("Volumes") or {}),
                         **(config.get("Volumes") or {})} or None
    image_check = image_config.get("Healthcheck") or {}
    if image_check:
        # Docker fills what the request leaves out (say, only --health-interval) from the image.
        request_check = config.get("Healthcheck") or {}
        config["Healthcheck"] = {**image_check, **{k: v for k, v in request_check.items() if v}}
    for key, default in (("Tty", False), ("OpenStdin", False), ("StdinOnce", False),
                         ("AttachStdin", False), ("AttachStdout", False),
                         ("AttachStderr", False), ("Domainname", ""), ("User", ""),
                         ("WorkingDir", "")):
        config.setdefault(key, default)
    return config


def _record(ctx: Context, container_id: str, name: str, req: _Request,
            mounts: list[JSON], rw_mount: JSON) -> Record:
    cdir = ctx.paths.container_dir(container_id)
    host = _host_defaults(req.host)
    rw = ctx.store.rw.path(container_id)
    return Record(
        id=container_id, name=name, created=format_time(), path=req.path_args[0],
        args=req.path_args[1:], image=req.image["id"], image_ref=req.image_ref,
        driver=ctx.driver, runtime=ctx.runtime.name, config=req.config, host_config=host,
        mounts=mounts, network_settings=_container_network.empty_settings(host["NetworkMode"]),
        graph_driver={"Name": ctx.driver, "Data": {
            "MergedDir": rw_mount["destination"], "UpperDir": os.path.join(rw, "upper"),
            "WorkDir": os.path.join(rw, "work")}},
        resolv_conf_path=os.path.join(cdir, "resolv.conf"),
        hostname_path=os.path.join(cdir, "hostname"), hosts_path=os.path.join(cdir, "hosts"),
        log_path=os.path.join(cdir, f"{container_id}-json.log"), rw_mount=rw_mount,
        networks=req.networks)


def _host_defaults(request: JSON) -> JSON:
    """``HostConfig`` as inspect shows it: what the request left out, filled as Docker does."""
    host = dict(request)
    host.setdefault("NetworkMode", "default")
    host.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
    host.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
    if not host["LogConfig"].get("Type"):
        host["LogConfig"]["Type"] = "json-file"
    for key, default in (("Binds", None), ("AutoRemove", False), ("Privileged", False),
                         ("ReadonlyRootfs", False)):
        host.setdefault(key, default)
    return host
