"""The supervisor: a monitor thread per running container, and what follows an exit.

The monitor waits on the shim's exit FIFO (and, for a FUSE root, on its process:
a container whose root is gone is stopped, with the reason).  An exit is recorded,
what the run held is released, and then the restart policy or ``--rm`` applies.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time

from rctr.core.errors import NotFound, RctrError

from .._logs import format_time
from .._shimctl import Shim
from .._record import JSON
from . import _remove, _start, _teardown
from ._context import Container, Context

__all__ = ["apply_policy", "auto_remove", "monitor", "on_exit"]

MAX_RESTART_DELAY = 60.0


def monitor(ctx: Context, c: Container, shim: Shim) -> None:
    c.monitor_stop = threading.Event()
    threading.Thread(target=_watch, args=(ctx, c, shim), name=f"monitor-{c.id[:12]}",
                     daemon=True).start()


def _watch(ctx: Context, c: Container, shim: Shim) -> None:
    reason = None
    while True:
        status = shim.wait_exit(c.monitor_stop, None if reason else lambda: _root_gone(c))
        if "broken" not in status:
            break
        # The container cannot go on without its root: stop it, and say why.
        reason = status["broken"]
        try:
            ctx.runtime.kill(c.id, signal.SIGKILL, all_processes=True)
        except RctrError:
            pass
    if status.get("interrupted"):
        return
    if reason and not status.get("error"):
        status["error"] = reason
    on_exit(ctx, c, status)


def on_exit(ctx: Context, c: Container, status: JSON) -> None:
    """Record the exit the shim reported (``exit_code``, ``finished_at``, ``error``)."""
    with c.lock:
        if c.removed:
            return
        code = int(status.get("exit_code", 255))
        c.state.exited(code, status.get("finished_at") or format_time(), status.get("error") or "")
        _teardown.after_exit(ctx, c)
        ctx.save(c)
        c.exits += 1
        c.changed.notify_all()
    ctx.event(c, "die", exitCode=str(code))
    ctx.run_hooks(ctx.exit_hooks, c)
    apply_policy(ctx, c, code)


def apply_policy(ctx: Context, c: Container, code: int) -> None:
    """``--rm`` or the restart policy, after an exit with ``code``."""
    host = c.record.host_config
    if host.get("AutoRemove"):
        threading.Thread(target=auto_remove, args=(ctx, c), daemon=True).start()
        return
    if not _restarts(c, code):
        return
    delay = min(0.1 * (2 ** min(c.record.restart_count, 10)), MAX_RESTART_DELAY)
    threading.Thread(target=_restart, args=(ctx, c, delay), name=f"restart-{c.id[:12]}",
                     daemon=True).start()


def _restarts(c: Container, code: int) -> bool:
    policy = c.record.host_config.get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    if c.record.manually_stopped or name == "no":
        return False
    if name == "on-failure":
        limit = int(policy.get("MaximumRetryCount") or 0)
        return code != 0 and not (limit and c.record.restart_count >= limit)
    return True


def _restart(ctx: Context, c: Container, delay: float) -> None:
    time.sleep(delay)
    with c.lock:
        if c.removed or c.running() or c.record.manually_stopped:
            return
        c.record.restart_count += 1
        c.state.restarting()
        ctx.save(c)
    try:
        _start.start(ctx, c.id)
        ctx.event(c, "restart")
    except Exception as exc:  # noqa: BLE001 - recorded; the policy tries again
        with c.lock:
            c.state.restart_failed(str(exc))
            ctx.save(c)
        apply_policy(ctx, c, 128)


def auto_remove(ctx: Context, c: Container) -> None:
    try:
        _remove.remove(ctx, c.id, force=True, volumes=True)
    except NotFound:
        pass


def _root_gone(c: Container) -> str | None:
    """Why the running container's root filesystem is unusable, if it is.

    A FUSE driver's root lives as long as its process: once that dies, every access
    fails with ENOTCONN, and the container with it.  A kernel mount cannot go so.
    """
    mount = c.record.rw_mount
    if mount.get("type") not in ("fuse-overlayfs", "fusepy"):
        return None
    try:
        os.statvfs(mount["destination"])  # a stat may be answered from cached attributes
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            return (f"the container's root filesystem is gone: its {mount['type']} process "
                    "died, so the container was stopped")
    return None
