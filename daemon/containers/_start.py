"""``POST /containers/{id}/start``: a shim for the container, and the container in it.

The record is saved as running only once everything is in place, so a daemon that
dies midway leaves a stopped record with remains beside it, which ``reconcile``
ends.  An attach made before the start is connected before the container runs: a
fast command's output is not lost.
"""

from __future__ import annotations

import os
import signal
import threading

from rctr.core import cgroups
from rctr.core.atomic import write_json_atomic
from rctr.core.errors import Conflict, InvalidArgument, NotFound, RctrError
from rctr.core.securejoin import secure_join

from .. import _container_network, _mounts
from .._container_network import NetPlan
from .._shimctl import Shim
from .._spec import build_spec, resources_of
from .._record import JSON
from . import _supervise, _teardown, _usernets
from ._context import Container, Context, PendingAttach
from ._create import image_config

__all__ = ["enforceable", "expect_attach", "start", "wait_for_shim"]

ATTACH_CONNECT_SECONDS = 30  # how long a start waits for an attach that is connecting


def start(ctx: Context, ref: str) -> Container:
    c = ctx.get(ref)
    with c.lock:
        if c.removed or c.record.placeholder:
            raise NotFound(f"No such container: {ref}")
        if c.running():
            from .._http import NotModified

            raise NotModified()
        if c.starting:
            raise Conflict(f"container {c.id[:12]} is already starting")
        c.starting = True
    try:
        _start(ctx, c)
    except BaseException as exc:
        _failed(ctx, c, exc)
        raise
    finally:
        with c.lock:
            c.starting = False
            c.changed.notify_all()
    return c


def _failed(ctx: Context, c: Container, exc: BaseException) -> None:
    with c.lock:
        # Attaches waiting for this start end now (their shim never came).
        for p in c.pending_attaches:
            p["ready"].set()
        c.pending_attaches = []
        text = str(exc)
        c.state.start_failed(text, 127 if "not found" in text or "No such file" in text else
                             126 if "ermission denied" in text else 128)
        _teardown.after_exit(ctx, c)
        ctx.save(c)
    if c.record.host_config.get("AutoRemove"):
        # Docker's daemon removes an --rm container whose start failed.
        threading.Thread(target=_supervise.auto_remove, args=(ctx, c), daemon=True).start()


def _start(ctx: Context, c: Container) -> None:
    shim = Shim(ctx.paths.shim_dir(c.id))
    _reset_shim_dir(c, shim)
    rootfs = _teardown.mount_rootfs(c)
    links = _usernets.allocate_links(ctx, c)
    try:
        net = _container_network.plan(c.record, shim.dir,
                                      _container_network.running_record(ctx.get), links,
                                      ctx.paths.infra_netns)
        net.peers = _usernets.peers_of(ctx, c, [link["network"] for link in links])
        _container_network.write_files(c.record, net)
        _launch(ctx, c, shim, rootfs, net)
    finally:
        _usernets.release_links(ctx, links)
    _usernets.refresh_hosts(ctx, [link["network"] for link in links])
    ctx.event(c, "start")
    _supervise.monitor(ctx, c, shim)
    ctx.run_hooks(ctx.start_hooks, c)


def _launch(ctx: Context, c: Container, shim: Shim, rootfs: str, net: NetPlan) -> None:
    _copy_up_volumes(ctx, c, rootfs)
    _make_workdir(c, rootfs)
    image = image_config(ctx, ctx.store.images.get(c.record.image))
    cgroups_path, resources, cgroup = _cgroup_of(ctx, c)
    spec = build_spec(c.record, image, rootfs,
                      {"hostname": c.record.hostname_path, "hosts": c.record.hosts_path,
                       "resolv.conf": c.record.resolv_conf_path},
                      _mounts.to_oci(c.record.mounts), ctx.init_path, cgroups_path, resources,
                      net.netns)
    bundle = shim.path("bundle")
    os.makedirs(bundle, mode=0o700, exist_ok=True)
    write_json_atomic(os.path.join(bundle, "config.json"), spec, 0o600, sync=False)
    ctx.runtime.delete(c.id)  # a stale runtime state of an earlier run
    reply = shim.launch(_shim_config(ctx, c, bundle, net), ctx.zygote)
    _connect_attaches(c)
    try:
        ctx.runtime.start(c.id)
    except BaseException:
        try:
            ctx.runtime.kill(c.id, signal.SIGKILL)
        except RctrError:
            pass
        raise
    with c.lock:
        c.state.started(int(reply["pid"]))
        c.record.manually_stopped = False
        c.record.cgroup = cgroup
        c.record.network_settings = _container_network.settings(c.record, net, reply.get("network"))
        ctx.save(c)
        c.changed.notify_all()


def _copy_up_volumes(ctx: Context, c: Container, rootfs: str) -> None:
    """Fill each new volume with what the image has where it is mounted, as Docker does."""
    for m in c.record.mounts:
        if m["Type"] == "volume" and not m.get("NoCopy"):
            try:
                source = secure_join(rootfs, m["Destination"])
            except OSError:
                continue
            ctx.volumes.copy_up(m["Name"], source)


def _shim_config(ctx: Context, c: Container, bundle: str, net: NetPlan) -> JSON:
    """The shim's ``shim.json``."""
    config, host = c.record.config, c.record.host_config
    log_opts = (host.get("LogConfig") or {}).get("Config") or {}
    return {
        "id": c.id, "bundle": bundle, "runtime": ctx.runtime.describe(),
        "tty": bool(config.get("Tty")), "stdin": bool(config.get("OpenStdin")),
        "stdin_once": bool(config.get("StdinOnce")),
        "log": {"path": c.record.log_path, "max_size": _size(log_opts.get("max-size")),
                "max_file": int(log_opts.get("max-file") or 1)},
        "width": 80, "height": 24, "network": net.shim,
    }


def _connect_attaches(c: Container) -> None:
    """Whoever attached before start connects now, so no output is missed."""
    with c.lock:
        pending, c.pending_attaches = c.pending_attaches, []
    for p in pending:
        p["ready"].set()
    for p in pending:
        # The attach only connects to a local socket and always says when it is done
        # (or failed); the bound is for a machine so loaded that its thread waits long
        # to run.  Starting before it connected would lose a fast command's output.
        p["connected"].wait(ATTACH_CONNECT_SECONDS)


def _cgroup_of(ctx: Context, c: Container) -> tuple[str, JSON, str]:
    """(cgroupsPath, the resources it can enforce, its directory) in the delegated
    subtree, or empty ones: without delegation a container shares the shim's cgroup."""
    d = ctx.delegation
    if d is None:
        return "", {}, ""
    path = d.cgroups_path(c.id)
    return path, enforceable(d, c.record.host_config), cgroups.host_path(d.mount, path)


def enforceable(delegation: cgroups.Delegation, host: JSON) -> JSON:
    """The OCI resources of ``host`` that the delegated controllers enforce."""
    return cgroups.restrict(resources_of(host), delegation.controllers)


def _reset_shim_dir(c: Container, shim: Shim) -> None:
    if shim.process() is not None:
        raise Conflict(f"container {c.id[:12]} still has a shim running")
    _teardown.drop_shim_dir(shim.dir)
    os.makedirs(shim.dir, mode=0o700)


def _make_workdir(c: Container, rootfs: str) -> None:
    workdir = c.record.config.get("WorkingDir")
    if workdir and workdir != "/":
        path = secure_join(rootfs, workdir)
        if not os.path.isdir(path):
            os.makedirs(path, mode=0o755, exist_ok=True)


def _size(value: str | None) -> int:
    if not value:
        return 0
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = str(value).strip().lower().rstrip("b")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise InvalidArgument(f"invalid log size {value!r}: use a number with k, m or g") from None


# -- attach before start ------------------------------------------------------------------

def expect_attach(c: Container) -> PendingAttach | None:
    """Make a start of the created container wait for an attach that is being set up.

    Call before answering the attach request: once the client has its answer it
    may send start at once, and a start that came first would run the container
    before anyone listened (a fast command's output would be lost).  None when the
    container runs already.  The caller sets the entry's ``connected`` event once it
    is connected to the shim, or has failed to: only then does the start go on.
    """
    with c.lock:
        if c.running():
            return None
        if c.removed:
            raise NotFound(f"No such container: {c.id}")
        pending = {"ready": threading.Event(), "connected": threading.Event()}
        c.pending_attaches.append(pending)
        return pending


def wait_for_shim(ctx: Context, c: Container, pending: PendingAttach | None) -> Shim:
    """The shim to attach to, once the start that ``pending`` waits for has made it."""
    if pending is not None:
        while not pending["ready"].wait(1):
            if c.removed:
                raise NotFound(f"No such container: {c.id}")
    return Shim(ctx.paths.shim_dir(c.id))
