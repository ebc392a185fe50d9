"""The ``/images`` endpoints: pull with Docker's progress JSON, push, load, save, tag, remove.

``POST /commit`` (an image from a container) is in ``_api_commit``.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import threading
from typing import TYPE_CHECKING, Any, Callable

from rctr.core.errors import Conflict, NotFound
from rctr.storage import familiar

from ._http import ChunkedWriter, HTTPError, Request, message_for
from ._logs import parse_time

if TYPE_CHECKING:
    from rctr.storage import ImageRecord, RegistryClient, Store
    from rctr.storage._load import Prepare
    from rctr.storage._push import PushProgress

    from ._main import Daemon
    from .containers import Container

__all__ = ["image_list", "image_create", "image_inspect", "image_history", "image_push",
           "image_tag", "image_delete", "image_prune", "image_get", "image_get_all", "image_load",
           "image_summary"]

PullProgress = Callable[[str, int, int], None]


def _config(daemon: Daemon, image: ImageRecord) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(daemon.store.blobs.read(image["config"]))
    return config


def _size(image: ImageRecord) -> int:
    return sum(int(layer.get("size") or 0) for layer in image.get("layers", []))


def image_summary(daemon: Daemon, image: ImageRecord) -> dict[str, Any]:
    config = _config(daemon, image)
    tags = [familiar(n) for n in image.get("names", []) if "@" not in n]
    digests = [familiar(n.split(":")[0] if "@" not in n else n) for n in image.get("names", []) if "@" in n]
    return {"Id": image["id"], "ParentId": "", "RepoTags": tags or None,
            "RepoDigests": digests, "Created": int(parse_time(image.get("created")) or 0),
            "Size": _size(image), "SharedSize": -1, "VirtualSize": _size(image),
            "Labels": (config.get("config") or {}).get("Labels") or {}, "Containers": -1}


def _inspect(daemon: Daemon, image: ImageRecord) -> dict[str, Any]:
    config = _config(daemon, image)
    summary = image_summary(daemon, image)
    return {
        "Id": image["id"], "RepoTags": summary["RepoTags"] or [], "RepoDigests": summary["RepoDigests"],
        "Parent": "", "Comment": config.get("comment", ""), "Created": image.get("created") or config.get("created", ""),
        "Container": "", "ContainerConfig": {}, "DockerVersion": "", "Author": config.get("author", ""),
        "Config": config.get("config") or {}, "Architecture": config.get("architecture", ""),
        "Variant": config.get("variant"), "Os": config.get("os", "linux"), "Size": summary["Size"],
        "VirtualSize": summary["Size"], "GraphDriver": {"Name": daemon.driver, "Data": {}},
        "RootFS": {"Type": "layers", "Layers": image.get("diff_ids", [])},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }


def _bar(done: int, total: int) -> str:
    """Docker's progress text: a 50-column bar and the byte counts."""
    width = 50
    filled = int(width * done / total) if total else 0
    bar = "[" + "=" * max(0, filled - 1) + (">" if filled else "") + " " * (width - filled) + "]"
    return f"{bar} {_human(done)}/{_human(total)}"


def _progress_writer(out: ChunkedWriter) -> PullProgress:
    lock = threading.Lock()
    started: set[str] = set()

    def progress(digest: str, done: int, total: int) -> None:
        short = digest.removeprefix("sha256:")[:12]
        with lock:
            if short not in started:
                started.add(short)
                out.json({"status": "Pulling fs layer", "progressDetail": {}, "id": short})
            if total and done >= total:
                out.json({"status": "Download complete", "progressDetail": {}, "id": short})
            else:
                out.json({"status": "Downloading", "id": short,
                          "progressDetail": {"current": done, "total": total},
                          "progress": _bar(done, total)})
    return progress


def _push_progress_writer(out: ChunkedWriter) -> PushProgress:
    """Docker's push messages: Pushing with a bar, then Pushed or Layer already exists."""
    last: dict[str, int] = {}

    def progress(digest: str, done: int, total: int, skipped: bool) -> None:
        short = digest.removeprefix("sha256:")[:12]
        if done >= total:
            out.json({"status": "Layer already exists" if skipped else "Pushed",
                      "progressDetail": {}, "id": short})
        elif done - last.get(short, 0) >= 256 * 1024 or short not in last:
            last[short] = done  # a message per 256 KiB at most: the reads are 8 KiB blocks
            out.json({"status": "Pushing", "id": short,
                      "progressDetail": {"current": done, "total": total},
                      "progress": _bar(done, total)})
    return progress


def _human(n: int) -> str:
    if n < 1000:
        return f"{n}B"
    size = float(n)
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000 or unit == "GB":
            break
    return f"{size:.3g}{unit}"


def _error(out: ChunkedWriter, exc: BaseException) -> None:
    message = message_for(exc)
    hint = getattr(exc, "hint", None)
    if hint:
        message += f" (hint: {hint})"
    out.json({"errorDetail": {"message": message}, "error": message})


def _find(daemon: Daemon, name: str) -> ImageRecord:
    try:
        return daemon.store.images.get(name)
    except NotFound:
        raise NotFound(f"No such image: {name}") from None
    except ValueError:
        raise NotFound(f"No such image: {name}") from None


def image_list(daemon: Daemon, req: Request) -> None:
    filters = req.filters()
    refs = filters.get("reference")
    items = []
    for image in daemon.store.images.list():
        summary = image_summary(daemon, image)
        if refs:
            import fnmatch

            names = summary["RepoTags"] or []
            if not any(fnmatch.fnmatch(n, w) or fnmatch.fnmatch(n.split(":")[0], w)
                       for n in names for w in refs):
                continue
        if "dangling" in filters and bool(summary["RepoTags"]) == ("true" in filters["dangling"]):
            continue
        items.append(summary)
    items.sort(key=lambda s: s["Created"], reverse=True)
    req.send_json(items)


def image_create(daemon: Daemon, req: Request) -> None:
    """A pull (``fromImage``), or an import of a root filesystem tarball (``fromSrc=-``)."""
    source = req.arg("fromSrc")
    if source is not None:
        _import(req, daemon, source)
        return
    name = req.arg("fromImage")
    if not name:
        raise HTTPError(400, "fromImage or fromSrc is required")
    tag = req.arg("tag")
    ref = name
    if tag:
        ref = f"{name}@{tag}" if tag.startswith("sha256:") else f"{name}:{tag}"
    elif "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        ref = f"{name}:latest"
    _pull(daemon, req, ref, tag, req.arg("platform") or None)


def _pull(daemon: Daemon, req: Request, ref: str, tag: str | None,
          platform: str | None) -> None:
    out = req.stream()
    try:
        out.json({"status": f"Pulling from {familiar(ref).rsplit(':', 1)[0]}",
                  "id": tag or ref.rsplit(":", 1)[-1]})
        # Extracted before it is indexed: a layer the extractor refuses leaves no image.
        record = daemon.store.pull(ref, platform=platform, progress=_progress_writer(out),
                                   prepare=_extractor(daemon, lambda digest: out.json(
                                       {"status": "Extracting", "progressDetail": {},
                                        "id": digest.removeprefix("sha256:")[:12]})))
        for layer in record.get("layers", []):
            out.json({"status": "Pull complete", "progressDetail": {},
                      "id": layer["digest"].removeprefix("sha256:")[:12]})
        out.json({"status": f"Digest: {record.get('manifest', '')}"})
        out.json({"status": f"Status: Downloaded newer image for {familiar(ref)}"})
        daemon.events.emit("image", "pull", ref, {"name": ref})
    except Exception as exc:  # noqa: BLE001 - reported in the stream, as Docker does
        _error(out, exc)
    finally:
        out.close()


def image_inspect(daemon: Daemon, req: Request) -> None:
    req.send_json(_inspect(daemon, _find(daemon, req.params["name"])))


def image_history(daemon: Daemon, req: Request) -> None:
    image = _find(daemon, req.params["name"])
    config = _config(daemon, image)
    rows = [{"Id": "<missing>", "Created": int(parse_time(h.get("created")) or 0),
             "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": 0,
             "Comment": h.get("comment", "")} for h in reversed(config.get("history") or [])]
    if rows:
        rows[0]["Id"] = image["id"]
    req.send_json(rows)


def image_push(daemon: Daemon, req: Request) -> None:
    name = req.params["name"]
    tag = req.arg("tag")
    ref = f"{name}:{tag}" if tag else name
    out = req.stream()
    try:
        _find(daemon, ref)
        out.json({"status": f"The push refers to repository [{name}]"})
        client = _client_with_auth(req, daemon.store)

        result = daemon.store.push(ref, client=client, progress=_push_progress_writer(out))
        digest = result.get("digest", "") if isinstance(result, dict) else ""
        out.json({"status": f"{tag or 'latest'}: digest: {digest}",
                  "aux": {"Tag": tag or "latest", "Digest": digest}})
        daemon.events.emit("image", "push", ref, {"name": ref})
    except Exception as exc:  # noqa: BLE001
        _error(out, exc)
    finally:
        out.close()


def image_tag(daemon: Daemon, req: Request) -> None:
    repo = req.arg("repo")
    if not repo:
        raise HTTPError(400, "repo is required")
    target = f"{repo}:{req.arg('tag') or 'latest'}"
    daemon.store.tag(_find(daemon, req.params["name"])["id"], target)
    daemon.events.emit("image", "tag", _find(daemon, target)["id"], {"name": target})
    req.send(201, b"", content_type="text/plain")


def image_delete(daemon: Daemon, req: Request) -> None:
    name = req.params["name"]
    image = _find(daemon, name)
    users = [c for c in daemon.containers.all() if c.record.image == image["id"]]
    by_id = name.startswith("sha256:") or image["id"].removeprefix("sha256:").startswith(name)
    # Docker: one name among several is only untagged, -f or not; and no -f deletes the
    # image of a running container.
    untag_only = not by_id and len(image.get("names", [])) > 1
    if not untag_only:
        _check_unused(name, image, users, req.flag("force"))
    done = daemon.store.remove_image(image["id"] if by_id else name,
                                     force=not untag_only and (req.flag("force") or by_id))
    result = []
    for line in done:
        kind, _, what = line.partition(": ")
        result.append({kind: familiar(what) if kind == "Untagged" else what})
        daemon.events.emit("image", "untag" if kind == "Untagged" else "delete", image["id"],
                           {"name": what})
    req.send_json(result)


def _check_unused(name: str, image: ImageRecord, users: list[Container], force: bool) -> None:
    """Conflict when containers use the image: always for a running one, else without -f."""
    running = [c for c in users if c.running()]
    if running:
        raise Conflict(f"conflict: unable to delete {image['id'].removeprefix('sha256:')[:12]} "
                       f"(cannot be forced) - image is being used by running container "
                       f"{running[0].id[:12]}")
    if users and not force:
        raise Conflict(f"conflict: unable to remove repository reference \"{name}\" (must force) - "
                       f"container {users[0].id[:12]} is using its referenced image "
                       f"{image['id'].removeprefix('sha256:')[:12]}")


def image_prune(daemon: Daemon, req: Request) -> None:
    everything = "false" in [v.lower() for v in req.filters().get("dangling", [])]
    used = {c.record.image for c in daemon.containers.all()}
    deleted = []
    for image in daemon.store.images.list():
        tagged = any("@" not in n for n in image.get("names", []))  # digests don't count
        if image["id"] in used or (tagged and not everything):
            continue
        for line in daemon.store.remove_image(image["id"], force=True):
            kind, _, what = line.partition(": ")
            deleted.append({kind: what})
    result = daemon.store.prune()
    req.send_json({"ImagesDeleted": deleted or None,
                   "SpaceReclaimed": int(result.get("bytes", 0)) if isinstance(result, dict)
                   else 0})


def image_get(daemon: Daemon, req: Request) -> None:
    _save(daemon, req, [req.params["name"]])


def image_get_all(daemon: Daemon, req: Request) -> None:
    names = req.query.get("names") or []
    if not names:
        raise HTTPError(400, "names is required")
    _save(daemon, req, names)


def _save(daemon: Daemon, req: Request, names: list[str]) -> None:
    store = daemon.store
    for n in names:
        _find(daemon, n)
    os.makedirs(store.layout.tmp, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store.layout.tmp, prefix="save-") as tmpdir:
        path = os.path.join(tmpdir, "image.tar")
        store.save(names, path)
        out = req.stream("application/x-tar")
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    out.write(chunk)
        finally:
            out.close()


def image_load(daemon: Daemon, req: Request) -> None:
    with req.spooled_body(daemon.store.layout.tmp, "load-") as path:
        out = req.stream()
        try:
            records = daemon.store.load(path, prepare=_extractor(daemon))
            for record in records:
                names = [familiar(n) for n in record.get("names", [])]
                for n in names or [record["id"]]:
                    label = "Loaded image" if names else "Loaded image ID"
                    out.json({"stream": f"{label}: {n}\n"})
                daemon.events.emit("image", "load", record["id"], {"name": ",".join(names)})
        except Exception as exc:  # noqa: BLE001
            _error(out, exc)
        finally:
            out.close()


def _extractor(daemon: Daemon, on_layer: Callable[[str], None] | None = None) -> Prepare:
    """What a pull or a load calls before it indexes an image: its layers extracted for
    the daemon's driver, so that a hostile layer is refused there, not at the first run."""
    def prepare(record: ImageRecord) -> None:
        daemon.store.rw.drivers[daemon.driver].prepare(record, on_layer)
    return prepare


def _client_with_auth(req: Request, store: Store) -> RegistryClient:
    from rctr.storage import AuthStore

    client = store.registry_client(auth=AuthStore())  # rctr.toml's insecure registries
    header = req.header("X-Registry-Auth")
    if header:
        try:
            auth = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
            if auth.get("username") and hasattr(client, "set_credentials"):
                client.set_credentials(auth.get("serveraddress", ""), auth["username"],
                                       auth.get("password", ""))
        except (ValueError, TypeError):
            pass
    return client


def _import(req: Request, daemon: Daemon, source: str) -> None:
    if source != "-":
        raise HTTPError(400, "import from a URL is not supported: give the tarball in the body (fromSrc=-)")
    store = daemon.store
    repo, tag = req.arg("repo"), req.arg("tag")
    name = f"{repo}:{tag or 'latest'}" if repo else None
    with req.spooled_body(store.layout.tmp, "import-") as path:
        out = req.stream()
        try:
            record = store.import_rootfs(path, name)
            out.json({"status": record["id"]})
            daemon.events.emit("image", "import", record["id"], {"name": name or ""})
        except Exception as exc:  # noqa: BLE001
            _error(out, exc)
        finally:
            out.close()
