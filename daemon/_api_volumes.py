"""The ``/volumes`` endpoints."""

from __future__ import annotations

from typing import Any

from ._http import HTTPError, Request, Router

__all__ = ["register"]


def register(router: Router, daemon: Any) -> None:
    volumes = daemon.volumes

    def users(name: str) -> list[str]:
        return [c.id for c in daemon.containers.all()
                if any(m.get("Name") == name for m in c.record.mounts)]

    @router.route("GET", "/volumes")
    def list_volumes(req: Request) -> None:
        filters = req.filters()
        items = volumes.list()
        names = filters.get("name")
        if names:
            items = [v for v in items if any(n in v["Name"] for n in names)]
        if "dangling" in filters:
            wanted = "true" in filters["dangling"]
            items = [v for v in items if (not users(v["Name"])) == wanted]
        req.send_json({"Volumes": items, "Warnings": []})

    @router.route("POST", "/volumes/create")
    def create(req: Request) -> None:
        body = req.json({})
        if not isinstance(body, dict):
            raise HTTPError(400, "the request body must be a JSON object")
        req.send_json(volumes.create(body.get("Name") or None, body.get("Labels") or {},
                                     body.get("Driver") or "local", body.get("DriverOpts") or {}), 201)

    @router.route("GET", "/volumes/{name}")
    def inspect(req: Request) -> None:
        req.send_json(volumes.inspect(req.params["name"]))

    @router.route("DELETE", "/volumes/{name}")
    def remove(req: Request) -> None:
        name = req.params["name"]
        volumes.remove(name, users(name), force=False)
        req.no_content()

    @router.route("POST", "/volumes/prune")
    def prune(req: Request) -> None:
        everything = "true" in [v.lower() for v in req.filters().get("all", [])]
        in_use = {m.get("Name") for c in daemon.containers.all() for m in c.record.mounts}
        removed, space = volumes.prune({n for n in in_use if n}, everything)
        req.send_json({"VolumesDeleted": removed, "SpaceReclaimed": space})
