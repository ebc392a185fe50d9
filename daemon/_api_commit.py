"""``POST /commit``: a new image from a container's changes (``docker commit``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rctr.core.errors import Conflict, InvalidArgument, NotFound
from rctr.storage import merge_config, parse_changes, parse_reference

from ._api_images import _extractor
from ._http import HTTPError, Request

if TYPE_CHECKING:
    from rctr.storage import ImageRecord

    from ._main import Daemon
    from .containers import Container

__all__ = ["image_commit"]


def _name(repo: str | None, tag: str | None) -> str | None:
    if not repo:
        if tag:
            raise InvalidArgument(f"invalid reference: tag {tag!r} without a repository")
        return None
    name = f"{repo}:{tag or 'latest'}"
    if "@" in name or repo.rsplit("/", 1)[-1].count(":"):
        raise InvalidArgument(f"invalid reference format: {repo!r}: give the tag in tag=")
    parse_reference(name)  # InvalidArgument: 400, with what is wrong
    return name


def image_commit(daemon: Daemon, req: Request) -> None:
    ref = req.arg("container")
    if not ref:
        raise HTTPError(400, "container is required")
    c = daemon.containers.get(ref)
    name = _name(req.arg("repo"), req.arg("tag"))
    body = req.json(default={})
    if body is None:
        body = {}  # the docker CLI sends null when there is nothing to override
    if not isinstance(body, dict):
        raise InvalidArgument("the commit body must be a JSON object (a container Config)")
    # Docker joins every `changes` value into one Dockerfile (daemon/commit.go).
    config = parse_changes(req.query.get("changes") or [], body)
    # `pause` (default true) is accepted and ignored: rctr cannot pause yet, so a running
    # container is copied as it is, as `docker commit --pause=false` does.
    comment, author = req.arg("comment") or "", req.arg("author") or ""
    image = _commit(daemon, c, ref, name, config, comment, author)
    daemon.events.emit("container", "commit", c.id,
                       {"comment": comment, "imageID": image["id"],
                        "imageRef": name or "", "name": c.name})
    if name:
        daemon.events.emit("image", "tag", image["id"], {"name": name})
    req.send(201, json.dumps({"Id": image["id"]}).encode() + b"\n")


def _commit(daemon: Daemon, c: Container, ref: str, name: str | None, config: dict[str, Any],
            comment: str, author: str) -> ImageRecord:
    """The store's commit of the container's changes, under its lock."""
    with c.lock:
        if c.removed or c.record.placeholder:
            raise Conflict(f"container {ref} is being created or removed")
        record = c.record
        merged = merge_config(config, record.config)
        created_by = " ".join([record.path, *record.args]).strip()
        try:
            return daemon.store.commit(
                c.id, record.image, record.driver or daemon.driver,
                config=merged, created_by=created_by, name=name,
                comment=comment, author=author, prepare=_extractor(daemon))
        except NotFound as exc:
            raise NotFound(f"cannot commit container {c.id[:12]}: {exc.message}",
                           hint=exc.hint) from exc
