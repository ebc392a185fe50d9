"""The ``/volumes`` endpoints, over ``Volumes``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._http import HTTPError, Request

if TYPE_CHECKING:
    from ._main import Daemon

__all__ = ["volume_list", "volume_create", "volume_inspect", "volume_delete", "volume_prune"]


def volume_list(daemon: Daemon, req: Request) -> None:
    filters = req.filters()
    items = daemon.volumes.list()
    names = filters.get("name")
    if names:
        items = [v for v in items if any(n in v["Name"] for n in names)]
    if "dangling" in filters:
        wanted = "true" in filters["dangling"]
        items = [v for v in items if (not _users(daemon, v["Name"])) == wanted]
    req.send_json({"Volumes": items, "Warnings": []})


def volume_create(daemon: Daemon, req: Request) -> None:
    body = req.json({})
    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    req.send_json(daemon.volumes.create(body.get("Name") or None, body.get("Labels") or {},
                                        body.get("Driver") or "local",
                                        body.get("DriverOpts") or {}), 201)


def volume_inspect(daemon: Daemon, req: Request) -> None:
    req.send_json(daemon.volumes.inspect(req.params["name"]))


def volume_delete(daemon: Daemon, req: Request) -> None:
    name = req.params["name"]
    daemon.volumes.remove(name, _users(daemon, name), force=False)
    req.no_content()


def volume_prune(daemon: Daemon, req: Request) -> None:
    everything = "true" in [v.lower() for v in req.filters().get("all", [])]
    in_use = {m.get("Name") for c in daemon.containers.all() for m in c.record.mounts}
    removed, space = daemon.volumes.prune({n for n in in_use if n}, everything)
    req.send_json({"VolumesDeleted": removed, "SpaceReclaimed": space})


def _users(daemon: Daemon, name: str) -> list[str]:
    """The ids of the containers that mount volume ``name``."""
    return [c.id for c in daemon.containers.all()
            if any(m.get("Name") == name for m in c.record.mounts)]
