"""``docker update`` and ``docker rename``: the parts of a container that change in place."""

from __future__ import annotations

from typing import Any

from rctr.core import cgroups
from rctr.core.errors import Conflict, InvalidArgument

from .._names import check_name
from .._record import JSON
from ._context import Context
from ._create import check_host_config
from ._start import enforceable

__all__ = ["rename", "update"]

# Docker's update body: the restart policy and the resources (Docker's field names).
UPDATABLE = ("RestartPolicy", "Memory", "MemorySwap", "MemoryReservation", "NanoCpus",
             "CpuShares", "CpuPeriod", "CpuQuota", "CpusetCpus", "CpusetMems", "PidsLimit",
             "BlkioWeight")


def update(ctx: Context, ref: str, body: Any) -> list[str]:
    """Change the restart policy and resource settings; the warnings."""
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    c = ctx.get(ref)
    changes = _changes(body)
    with c.lock:
        host = dict(c.record.host_config)
        _check_policy(changes.get("RestartPolicy"), host)
        # Zero means "leave as is" in Docker's update body.
        host.update({k: v for k, v in changes.items() if v})
        warnings = check_host_config(
            {k: v for k, v in host.items() if k in changes or k == "RestartPolicy"},
            ctx.delegation)
        if c.running() and c.record.cgroup and ctx.delegation is not None:
            try:
                cgroups.apply(c.record.cgroup, enforceable(ctx.delegation, host))
            except OSError as exc:
                raise InvalidArgument(f"cannot update container {c.name}: {exc}") from None
        c.record.host_config = host
        ctx.save(c)
    ctx.event(c, "update")
    return warnings


def _changes(body: JSON) -> JSON:
    changes = {k: v for k, v in body.items() if k in UPDATABLE and v is not None}
    if isinstance(changes.get("RestartPolicy"), dict) and not changes["RestartPolicy"].get("Name"):
        del changes["RestartPolicy"]  # docker sends an empty policy when --restart is not given
    return changes


def _check_policy(policy: Any, host: JSON) -> None:
    if policy is None:
        return
    if not isinstance(policy, dict):
        raise InvalidArgument("RestartPolicy must be an object")
    if (policy.get("Name") or "no") != "no" and host.get("AutoRemove"):
        raise InvalidArgument("Restart policy cannot be updated because AutoRemove "
                              "is enabled for the container")


def rename(ctx: Context, ref: str, new: str) -> None:
    c = ctx.get(ref)
    new = check_name(new)
    with ctx.lock:
        if new in ctx.names() and c.name != new:
            raise Conflict(f'Conflict. The container name "/{new}" is already in use')
        old = c.name
        with c.lock:
            c.record.name = new
            ctx.save(c)
    ctx.event(c, "rename", oldName="/" + old)
