"""Hostile images for the fuzz tests: layers, archives and a lying registry, all in memory.

``Image`` is a small valid image (one gzip layer with one file) whose parts a
test bends: the manifest, config or index as JSON (with digests recomputed, so
only the structure is hostile), or the layer bytes.  ``oci_archive`` and
``docker_archive`` wrap an image's blobs the way ``docker load`` takes them.
``FakeRegistry`` is an HTTP server on 127.0.0.1 that answers ``/v2/`` paths
with whatever bytes and headers a test chose: lying Content-Length, wrong
digests and media types, redirect loops, endless bodies.

Standard library only (zstandard when a test asks for zstd).
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import socket
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Image", "Reply", "FakeRegistry", "tar_bytes", "entry", "gz", "zst", "sha256",
           "oci_archive", "docker_archive", "gzip_bomb", "MT"]

MT = {
    "index": "application/vnd.oci.image.index.v1+json",
    "manifest": "application/vnd.oci.image.manifest.v1+json",
    "config": "application/vnd.oci.image.config.v1+json",
    "layer": "application/vnd.oci.image.layer.v1.tar+gzip",
    "docker_manifest": "application/vnd.docker.distribution.manifest.v2+json",
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def entry(name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, linkname: str = "",
          size: int | None = None, mode: int = 0o644, devmajor: int = 0, devminor: int = 0,
          pax: dict[str, str] | None = None) -> tuple[tarfile.TarInfo, bytes]:
    """One tar member: a regular file unless ``kind`` says otherwise; ``size`` may lie."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode if kind != tarfile.DIRTYPE else 0o755
    info.linkname = linkname
    info.size = len(data) if size is None else size
    info.mtime = 1767225600
    info.devmajor, info.devminor = devmajor, devminor
    if pax:
        info.pax_headers = dict(pax)
    return info, data


def tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar of ``entries``, written header by header so a ``size`` lie stays a lie."""
    out = io.BytesIO()
    for info, data in entries:
        out.write(info.tobuf(fmt, "utf-8", "surrogateescape"))
        if info.isreg() or info.type == tarfile.AREGTYPE:
            out.write(data)
            out.write(b"\0" * (-len(data) % tarfile.BLOCKSIZE))
    out.write(b"\0" * (2 * tarfile.BLOCKSIZE))
    return out.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def zst(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)  # type: ignore[no-any-return]


def gzip_bomb(inflated: int, header: bytes = b"") -> bytes:
    """A gzip stream of ``header`` then ``inflated`` zero bytes, made of repeated members
    (gzip allows several), so it costs a few MiB at most to build."""
    chunk = 64 << 20
    member = gzip.compress(b"\0" * chunk, compresslevel=9, mtime=0)
    full, rest = divmod(inflated, chunk)
    return (gz(header) if header else b"") + member * full + (gz(b"\0" * rest) if rest else b"")


@dataclass
class Image:
    """A one-layer image; every part may be replaced before the blobs are taken."""

    layer: bytes = field(default_factory=lambda: gz(tar_bytes([entry("hello.txt", b"hi\n")])))
    diff_ids: list[str] | None = None
    arch: str = "amd64"
    config_obj: dict[str, Any] | None = None
    manifest_obj: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.diff_ids is None:
            raw = self.layer
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            elif raw[:4] == b"\x28\xb5\x2f\xfd":
                import zstandard

                raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
            self.diff_ids = [sha256(raw)]
        if self.config_obj is None:
            self.config_obj = {"architecture": self.arch, "os": "linux",
                               "created": "2026-01-01T00:00:00Z",
                               "config": {"Cmd": ["/hello"], "Env": ["PATH=/bin"]},
                               "rootfs": {"type": "layers", "diff_ids": self.diff_ids}}

    @property
    def config(self) -> bytes:
        return canonical(self.config_obj)

    def manifest_dict(self) -> dict[str, Any]:
        if self.manifest_obj is not None:
            return self.manifest_obj
        return {"schemaVersion": 2, "mediaType": MT["manifest"],
                "config": {"mediaType": MT["config"], "digest": sha256(self.config),
                           "size": len(self.config)},
                "layers": [{"mediaType": MT["layer"], "digest": sha256(self.layer),
                            "size": len(self.layer)}]}

    @property
    def manifest(self) -> bytes:
        return canonical(self.manifest_dict())

    def blobs(self) -> dict[str, bytes]:
        return {sha256(b): b for b in (self.config, self.layer, self.manifest)}

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": MT["manifest"], "digest": sha256(self.manifest),
                "size": len(self.manifest), **extra}


def index_for(images: list[Image]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": MT["index"], "manifests": [
        im.descriptor(platform={"os": "linux", "architecture": im.arch}) for im in images]}


def oci_archive(index: bytes | dict[str, Any], blobs: dict[str, bytes],
                extra: list[tuple[tarfile.TarInfo, bytes]] | None = None) -> bytes:
    """An oci-archive tar: ``oci-layout``, ``index.json`` and the blobs by digest."""
    raw = index if isinstance(index, bytes) else canonical(index)
    members = [entry("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), entry("index.json", raw)]
    members += [entry(f"blobs/sha256/{d[7:]}", b) for d, b in blobs.items()]
    return tar_bytes(members + (extra or []), tarfile.GNU_FORMAT)


def image_archive(image: Image, name: str = "fuzz/img:latest") -> bytes:
    desc = image.descriptor(annotations={"org.opencontainers.image.ref.name": name})
    return oci_archive({"schemaVersion": 2, "mediaType": MT["index"], "manifests": [desc]},
                       image.blobs())


def docker_archive(manifest: bytes | list[Any], files: dict[str, bytes]) -> bytes:
    """A ``docker save`` tar: ``manifest.json`` and the named files."""
    raw = manifest if isinstance(manifest, bytes) else canonical(manifest)
    members = [entry("manifest.json", raw)] + [entry(n, b) for n, b in files.items()]
    return tar_bytes(members, tarfile.GNU_FORMAT)


def image_docker_archive(image: Image, name: str = "fuzz/img:latest") -> bytes:
    layer = image.layer
    if layer[:2] == b"\x1f\x8b":
        layer = gzip.decompress(layer)
    return docker_archive([{"Config": "config.json", "RepoTags": [name],
                            "Layers": ["layer/layer.tar"]}],
                          {"config.json": image.config, "layer/layer.tar": layer})


# --------------------------------------------------------------------------
# A registry that lies
# --------------------------------------------------------------------------


@dataclass
class Reply:
    """What the fake registry answers: ``body`` or an endless ``stream`` of zeros (capped
    at ``stream_cap`` so the thread ends), with ``headers``; ``length`` overrides
    Content-Length (a lie when it differs from the body)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    length: int | None = None
    stream: bool = False
    stream_cap: int = 64 << 20


Route = Reply | Callable[[str], Reply]


class FakeRegistry:
    """``with FakeRegistry() as reg: reg.routes["/v2/x/manifests/t"] = Reply(...)``."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    def serve_image(self, repo: str, tag: str, image: Image, *, manifest: bytes | None = None,
                    content_type: str = MT["manifest"]) -> None:
        """``repo:tag`` and its blobs, as a truthful registry would (``manifest`` may differ)."""
        raw = manifest if manifest is not None else image.manifest
        self.routes[f"/v2/{repo}/manifests/{tag}"] = Reply(
            body=raw, headers={"Content-Type": content_type, "Docker-Content-Digest": sha256(raw)})
        self.routes[f"/v2/{repo}/manifests/{sha256(raw)}"] = self.routes[f"/v2/{repo}/manifests/{tag}"]
        for digest, data in image.blobs().items():
            self.routes[f"/v2/{repo}/blobs/{digest}"] = Reply(body=data)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, head_only: bool) -> None:
                path = self.path.split("?", 1)[0]
                registry.hits.append(path)
                route = registry.routes.get(path)
                if route is None:
                    reply = Reply(404, b'{"errors":[{"code":"NOT_FOUND","message":"unknown"}]}',
                                  {"Content-Type": "application/json"})
                else:
                    reply = route(path) if callable(route) else route
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if reply.length is not None:
                    self.send_header("Content-Length", str(reply.length))
                elif not reply.stream:
                    self.send_header("Content-Length", str(len(reply.body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if head_only:
                    return
                try:
                    if reply.stream:
                        sent, block = 0, b"\0" * (1 << 16)
                        while sent < reply.stream_cap:
                            self.wfile.write(block)
                            sent += len(block)
                    else:
                        self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError, socket.timeout):
                    pass
                self.close_connection = True

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._answer(False)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(True)

        return Handler

    def start(self) -> FakeRegistry:
        self.routes.setdefault("/v2/", Reply(body=b"{}"))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def walk_json(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) in a JSON document, the root included."""
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk_json(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from walk_json(v, path + (i,))


def replace_at(obj: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    """A deep copy of ``obj`` with the value at ``path`` replaced (or deleted)."""
    obj = json.loads(json.dumps(obj))
    if not path:
        return value
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj
