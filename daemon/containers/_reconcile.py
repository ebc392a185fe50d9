"""At daemon start: adopt the containers that run, collect what is half-made.

The records on disk are the truth.  A running record whose shim lives is adopted
(a monitor again); one whose shim ended meanwhile gets its exit recorded; a stopped
record with a shim, a mounted root or a network namespace beside it is a start cut
short.  RW layers and shim directories with no record are a create or remove cut
short, and are collected.  A record of a later rctrd (a version this one does not
know) is left alone, with everything it owns.
"""

from __future__ import annotations

import json
import os
import sys

from rctr import netstack

from .._logs import format_time
from .._record import JSON, UnknownVersion, from_disk
from .._shimctl import Shim
from . import _supervise, _teardown
from ._context import Container, Context

__all__ = ["reconcile"]

_LOST = ("the container was lost: its shim is gone, killed or ended with the user namespace "
         "it ran in (the pause process was killed, or the machine restarted)")
_CUT_SHORT = "rctrd stopped while it was starting the container; start it again"


def reconcile(ctx: Context) -> dict[str, int]:
    counts = {"running": 0, "exited_meanwhile": 0, "collected": 0}
    os.makedirs(ctx.paths.containers, mode=0o700, exist_ok=True)
    kept = set()
    for cid in sorted(os.listdir(ctx.paths.containers)):
        try:
            data = _read(ctx, cid)
        except (OSError, ValueError):  # no record, or half of one: a create or rm cut short
            _teardown.collect(ctx, cid, [])
            counts["collected"] += 1
            continue
        try:
            if not isinstance(data, dict):
                raise TypeError(f"a record is a JSON object, not {type(data).__name__}")
            c = Container(from_disk(data))
        except UnknownVersion as exc:
            print(f"rctrd: container {cid}: {exc}; left alone", file=sys.stderr)
            kept.add(cid)
            continue
        except (KeyError, TypeError, ValueError) as exc:
            # Whole JSON of the wrong shape (edited by hand?): its data is not ours to drop.
            print(f"rctrd: container {cid}: its record cannot be read ({exc!r}); left alone",
                  file=sys.stderr)
            kept.add(cid)
            continue
        ctx.by_id[cid] = c
        kind = _adopt(ctx, c)
        if kind is not None:
            counts[kind] += 1
    counts["collected"] += _collect_orphans(ctx, kept | set(ctx.by_id))
    return counts


def _read(ctx: Context, cid: str) -> object:
    with open(os.path.join(ctx.paths.containers, cid, "config.json")) as f:
        data: object = json.load(f)
    return data


def _adopt(ctx: Context, c: Container) -> str | None:
    """Take up the container as its record and its shim say; the count it is in, if any."""
    if not c.running():
        _end_cut_start(ctx, c)
        _restart_at_daemon_start(ctx, c)
        return None
    shim = Shim(ctx.paths.shim_dir(c.id))
    if shim.exit_status() is None and shim.process() is not None:
        _supervise.monitor(ctx, c, shim)
        ctx.run_hooks(ctx.start_hooks, c)
        return "running"
    status: JSON | None = shim.exit_status()
    if status is None:
        ctx.lost_at_start.append(c.name)
        status = {"exit_code": 255, "finished_at": format_time(), "error": _LOST}
    _supervise.on_exit(ctx, c, status)
    return "exited_meanwhile"


def _restart_at_daemon_start(ctx: Context, c: Container) -> None:
    """Docker's rule: an ``always`` container stopped by hand starts again when the
    daemon starts (``unless-stopped`` is the policy that stays stopped)."""
    policy = (c.record.host_config.get("RestartPolicy") or {}).get("Name")
    if policy == "always" and c.record.manually_stopped:
        c.record.manually_stopped = False
        _supervise.apply_policy(ctx, c, c.state.exit_code)


def _end_cut_start(ctx: Context, c: Container) -> None:
    """Undo a start that a dying daemon cut short, if there was one.

    The record of a stopped container is saved as running only once the start has
    done everything, so a shim, a mounted root or a network namespace beside a
    stopped record is the remains of a start whose caller never got an answer.  It
    ends, and the container stays stopped with an error that says why.
    """
    shim = Shim(ctx.paths.shim_dir(c.id))
    ended = _teardown.end_shim(shim)
    mounted = os.path.ismount(c.record.rootfs or "/nonexistent")
    if not ended and not mounted and not netstack.is_netns(shim.path("netns")):
        return
    _teardown.after_exit(ctx, c)
    if ended or shim.exit_status() is not None:
        c.state.error = _CUT_SHORT
        ctx.save(c)


def _collect_orphans(ctx: Context, known: set[str]) -> int:
    """RW layers and shim dirs whose container has no record: a create or rm cut short."""
    collected = 0
    if os.path.isdir(ctx.store.rw.root):
        for cid in os.listdir(ctx.store.rw.root):
            if cid not in known:
                _teardown.collect(ctx, cid, [])
                collected += 1
    shorts = {cid[:32] for cid in known}
    if os.path.isdir(ctx.paths.shims):
        for short in os.listdir(ctx.paths.shims):
            if short not in shorts:
                shim = Shim(os.path.join(ctx.paths.shims, short))
                _teardown.end_shim(shim)
                _teardown.drop_shim_dir(shim.dir)
                collected += 1
    return collected
