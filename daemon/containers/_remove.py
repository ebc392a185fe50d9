"""``DELETE /containers/{id}``: the record goes first, then what the container owned.

From the moment its record is unlinked the container does not exist; a daemon that
dies before the rest is gone leaves things that ``reconcile`` collects.
"""

from __future__ import annotations

import os
import signal

from rctr.core.errors import Conflict, RctrError

from . import _stop, _teardown
from ._context import Container, Context

__all__ = ["remove"]


def remove(ctx: Context, ref: str, force: bool = False, volumes: bool = False) -> None:
    c = ctx.get(ref)
    if c.record.placeholder:
        raise Conflict(f"container {ref} is being created")
    with c.lock:
        if c.removed:
            return
        exits = c.exits
        if c.running() or c.starting:
            if not force:
                raise Conflict(f"You cannot remove a running container {c.id}. Stop the "
                               "container before attempting removal or force remove")
            c.record.manually_stopped = True
    if force and c.running():
        try:
            ctx.runtime.kill(c.id, signal.SIGKILL, all_processes=True)
        except RctrError:
            pass
        _stop.wait_exit(c, exits, _stop.KILL_WAIT_SECONDS)
    if not _forget(ctx, c):
        return
    with ctx.lock:
        ctx.by_id.pop(c.id, None)
    _teardown.collect(ctx, c.id, c.record.anonymous if volumes else [])
    ctx.event(c, "destroy")


def _forget(ctx: Context, c: Container) -> bool:
    """Mark the container removed and unlink its record; False if another remove did."""
    with c.lock:
        if c.removed:
            return False
        c.removed = True
        c.monitor_stop.set()
        c.state.removing()
        try:
            _teardown.after_exit(ctx, c)
        except Exception:  # noqa: BLE001 - removing anyway; reconcile collects the rest
            pass
        # The record goes first: from here the container does not exist.
        try:
            os.unlink(os.path.join(ctx.paths.container_dir(c.id), "config.json"))
        except FileNotFoundError:
            pass
        c.changed.notify_all()
    return True
