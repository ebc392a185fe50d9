"""Bringing images into the store from files: OCI layouts and docker-archive tarballs.

Every blob is copied through the blob store, so its digest is checked on the
way in; the index entry is written last.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO, NotRequired, TypedDict, TypeGuard, cast

from rctr.core.arch import go_arch
from rctr.core.errors import InvalidArgument, RctrError, Unsupported

from ._blobs import BlobStore, DigestMismatch
from ._extract import diff_digest, layer_limit
from ._images import ImageIndex, ImageRecord, LayerRef, chain_ids
from ._layout import _DIGEST_RE
from ._reference import parse_reference

__all__ = ["load_oci_layout", "load_oci_archive", "is_oci_archive", "load_docker_archive",
           "import_rootfs", "host_platform", "MEDIA_TYPES", "LAYER_TYPES", "MAX_JSON",
           "descriptor", "parse_manifest", "parse_index", "parse_config", "choose_manifest",
           "verify_layers", "Descriptor", "Manifest", "IndexDocument", "ImageConfig", "Prepare"]

MEDIA_TYPES = {
    "oci_index": "application/vnd.oci.image.index.v1+json",
    "oci_manifest": "application/vnd.oci.image.manifest.v1+json",
    "docker_list": "application/vnd.docker.distribution.manifest.list.v2+json",
    "docker_manifest": "application/vnd.docker.distribution.manifest.v2+json",
    "oci_config": "application/vnd.oci.image.config.v1+json",
    "oci_layer_tar": "application/vnd.oci.image.layer.v1.tar",
}
_INDEX_TYPES = (MEDIA_TYPES["oci_index"], MEDIA_TYPES["docker_list"])
_MANIFEST_TYPES = (MEDIA_TYPES["oci_manifest"], MEDIA_TYPES["docker_manifest"])
# The layer forms rctr can extract: OCI's (and their non-distributable twins) and Docker's.
LAYER_TYPES = frozenset(
    [f"application/vnd.oci.image.layer.{kind}.tar{comp}"
     for kind in ("v1", "nondistributable.v1") for comp in ("", "+gzip", "+zstd")]
    + ["application/vnd.docker.image.rootfs.diff.tar.gzip",
       "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"])
# Manifests, indexes and configs are read whole into memory: distribution refuses
# manifests over 4 MiB, and no real config comes near it.
MAX_JSON = 4 << 20

Prepare = Callable[[ImageRecord], None]


class Descriptor(TypedDict):
    """An OCI content descriptor, as ``descriptor`` checks it (unknown fields pass through)."""

    mediaType: NotRequired[str]
    digest: str
    size: int
    platform: NotRequired[dict[str, object]]  # in an index: os, architecture, variant are str
    annotations: NotRequired[dict[str, str]]  # as save writes them; a load checks them


class Manifest(TypedDict):
    """An image manifest, as ``parse_manifest`` checks it."""

    schemaVersion: int
    mediaType: NotRequired[str]
    config: Descriptor
    layers: list[Descriptor]


class IndexDocument(TypedDict):
    """An image index (or a Docker manifest list), as ``parse_index`` checks it."""

    schemaVersion: int
    mediaType: NotRequired[str]
    manifests: list[Descriptor]


class RootFS(TypedDict):
    diff_ids: list[str]


class ImageConfig(TypedDict):
    """An image config, as ``parse_config`` checks it (other fields pass through)."""

    rootfs: RootFS
    os: NotRequired[str]
    architecture: NotRequired[str]
    variant: NotRequired[str]
    created: NotRequired[str]
    author: NotRequired[str]
    comment: NotRequired[str]
    history: NotRequired[list[dict[str, object]]]
    config: NotRequired[dict[str, object] | None]  # the run config: Env, Cmd, Labels...


def host_platform() -> str:
    return f"linux/{go_arch()}"


def _json(data: bytes, what: str) -> dict[str, object]:
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        detail = exc if isinstance(exc, ValueError) else "nested too deeply"
        raise InvalidArgument(f"{what} is not valid JSON: {detail}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return obj


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def descriptor(desc: object, what: str, types: Iterable[str] | None = None) -> tuple[str, int]:
    """(digest, size) of an OCI descriptor, both checked; ``types``, if given, are the
    media types it may announce."""
    if not isinstance(desc, dict):
        raise InvalidArgument(f"{what}: descriptor is not a JSON object")
    digest = desc.get("digest")
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise InvalidArgument(f"{what}: invalid digest {digest!r}: expected sha256:<64 hex digits>")
    size = desc.get("size")
    if not _is_int(size) or size < 0:
        raise InvalidArgument(f"{what}: bad or missing size {size!r}")
    media_type = desc.get("mediaType")
    if media_type is not None and not isinstance(media_type, str):
        raise InvalidArgument(f"{what}: mediaType is not a string")
    if types is not None and media_type is not None and media_type not in types:
        raise Unsupported(f"{what}: unsupported media type {media_type!r}")
    return digest, size


def _check_document(obj: dict[str, object], what: str, kinds: tuple[str, ...],
                    other: tuple[str, ...], other_name: str) -> None:
    version = obj.get("schemaVersion")
    if version != 2 or not _is_int(version):
        raise InvalidArgument(f"{what}: schemaVersion is {version!r}, not 2")
    media_type = obj.get("mediaType")
    if media_type is None or media_type in kinds:
        return
    if media_type in other:
        raise InvalidArgument(f"{what} is {other_name} (mediaType {media_type!r})")
    raise Unsupported(f"{what}: unsupported media type {media_type!r}")


def parse_manifest(raw: bytes, what: str) -> Manifest:
    """An image manifest, its config and layer descriptors checked."""
    manifest = _json(raw, what)
    _check_document(manifest, what, _MANIFEST_TYPES, _INDEX_TYPES, "an image index, not a manifest")
    _, config_size = descriptor(manifest.get("config"), f"{what} config")
    if config_size > MAX_JSON:
        raise InvalidArgument(f"{what}: its config would be {config_size} bytes, "
                              f"more than the {MAX_JSON} rctr reads")
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise InvalidArgument(f"{what}: layers is missing or not a list")
    for i, layer in enumerate(layers):
        descriptor(layer, f"{what} layer {i}", LAYER_TYPES)
    return cast(Manifest, manifest)  # checked above


def parse_index(raw: bytes, what: str) -> IndexDocument:
    """An image index (or Docker manifest list), its descriptors checked."""
    index = _json(raw, what)
    _check_document(index, what, _INDEX_TYPES, _MANIFEST_TYPES, "a manifest, not an image index")
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise InvalidArgument(f"{what}: manifests is missing or not a list")
    for i, desc in enumerate(manifests):
        descriptor(desc, f"{what} manifest {i}")
        platform = desc.get("platform")
        if platform is not None and (not isinstance(platform, dict) or not all(
                isinstance(platform.get(k, ""), str) for k in ("os", "architecture", "variant"))):
            raise InvalidArgument(f"{what} manifest {i}: bad platform {platform!r}")
    return cast(IndexDocument, index)  # checked above


_CONFIG_TYPES = {"Env": list, "Cmd": list, "Entrypoint": list, "Labels": dict, "User": str,
                 "WorkingDir": str, "StopSignal": str, "ExposedPorts": dict, "Volumes": dict,
                 "Shell": list, "OnBuild": list}


def parse_config(raw: bytes, what: str, layers: int) -> ImageConfig:
    """An image config whose diff ids fit ``layers`` layers, and whose fields the daemon
    reads have the types it expects (one bad image must not break ``images``)."""
    config = _json(raw, what)
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        raise InvalidArgument(f"{what}: rootfs.diff_ids is missing or not a list")
    for diff_id in diff_ids:
        if not isinstance(diff_id, str) or not _DIGEST_RE.match(diff_id):
            raise InvalidArgument(f"{what}: invalid diff id {diff_id!r}")
    if len(diff_ids) != layers:
        raise InvalidArgument(f"{what} lists {len(diff_ids)} diff ids for {layers} layers")
    for key in ("os", "architecture", "variant", "created", "author", "comment"):
        if not isinstance(config.get(key, ""), str):
            raise InvalidArgument(f"{what}: {key} is not a string")
    history = config.get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise InvalidArgument(f"{what}: history is not a list of objects")
    run = config.get("config")
    if run is not None:
        _check_run_config(run, what)
    return cast(ImageConfig, config)  # checked above


def _check_run_config(run: object, what: str) -> None:
    """The fields of an image's run config that the daemon reads have the types it expects."""
    if not isinstance(run, dict):
        raise InvalidArgument(f"{what}: config is not a JSON object")
    for key, kind in _CONFIG_TYPES.items():
        value = run.get(key)
        if value is not None and not isinstance(value, kind):
            raise InvalidArgument(f"{what}: config.{key} is not a {kind.__name__}")
        if kind is list and value is not None and key != "OnBuild" and \
                not all(isinstance(v, str) for v in value):
            raise InvalidArgument(f"{what}: config.{key} is not a list of strings")
    labels = run.get("Labels") or {}
    if not all(isinstance(v, str) for v in labels.values()):
        raise InvalidArgument(f"{what}: config.Labels values are not all strings")


def choose_manifest(index: IndexDocument, platform: str | None) -> Descriptor:
    """The manifest descriptor of an index matching ``platform`` (default: this host's)."""
    want = platform or host_platform()
    want_os, _, want_arch = want.partition("/")
    want_arch, _, want_variant = want_arch.partition("/")
    candidates = [d for d in index.get("manifests") or [] if isinstance(d, dict)]
    for desc in candidates:
        p = desc.get("platform") or {}
        if p.get("os") == want_os and p.get("architecture") == want_arch and \
                (not want_variant or p.get("variant") == want_variant):
            return desc
    offered = ", ".join(f"{(d.get('platform') or {}).get('os')}/"
                        f"{(d.get('platform') or {}).get('architecture')}" for d in candidates)
    raise InvalidArgument(f"no image for platform {want} (the index offers: {offered or 'none'})",
                          hint="pick one with --platform")


def verify_layers(blobs: BlobStore, layers: list[Descriptor], diff_ids: list[str]) -> None:
    """Each layer must decompress to the diff id its config lists, within a bound.

    Layers are shared by chain id, which is made of diff ids: an image lying about them
    would put its content under another image's name.  The check reads the layer as a
    stream, so a decompression bomb is refused before anything is written.
    """
    for layer, diff_id in zip(layers, diff_ids, strict=True):
        digest = layer["digest"]
        with blobs.open(digest) as f:
            size = os.fstat(f.fileno()).st_size
            if digest == diff_id and f.read(4)[:2] not in (b"\x1f\x8b", b"\x28\xb5"):
                continue  # an uncompressed layer is its own diff, and its digest was checked
            f.seek(0)
            try:
                actual = diff_digest(f, layer_limit(size))
            except RctrError as exc:
                raise type(exc)(f"layer {digest}: {exc.message}", hint=exc.hint) from None
        if actual != diff_id:
            raise DigestMismatch(f"layer {digest} decompresses to {actual}, not the diff id "
                                 f"{diff_id} its image config lists")


def _register(blobs: BlobStore, index: ImageIndex, manifest_digest: str, manifest: Manifest,
              names: list[str], prepare: Prepare | None = None) -> ImageRecord:
    """Check the image whole, let ``prepare`` see it (the daemon extracts its layers),
    and only then index it: an image that fails anywhere never appears."""
    return _add_all(index, [_checked(blobs, manifest_digest, manifest, names, prepare)])[0]


def _add_all(index: ImageIndex,
             checked: list[tuple[ImageRecord, list[str]]]) -> list[ImageRecord]:
    for record, names in checked:
        index.add(record, names)
    return [record for record, _ in checked]


def _checked(blobs: BlobStore, manifest_digest: str, manifest: Manifest, names: list[str],
             prepare: Prepare | None) -> tuple[ImageRecord, list[str]]:
    """The image's record and names once everything about it checks out."""
    config_digest, _ = descriptor(manifest.get("config"), f"manifest {manifest_digest} config")
    layers = manifest.get("layers") or []
    config = parse_config(blobs.read(config_digest), f"image config {config_digest}", len(layers))
    diff_ids = config["rootfs"]["diff_ids"]
    verify_layers(blobs, layers, diff_ids)
    record: ImageRecord = {
        "id": config_digest, "manifest": manifest_digest, "config": config_digest,
        "layers": [LayerRef(digest=d["digest"], mediaType=d.get("mediaType", ""),
                            size=d.get("size", 0)) for d in layers],
        "diff_ids": diff_ids, "chain_ids": chain_ids(diff_ids),
        "platform": f"{config.get('os', 'linux')}/{config.get('architecture', '')}",
        "created": config.get("created", ""),
    }
    names = [str(parse_reference(n)) for n in names]
    if prepare is not None:
        prepare(ImageRecord(**record, names=names))
    return record, names


def _read_json_file(path: str, what: str) -> dict[str, object]:
    with open(path, "rb") as f:
        raw = f.read(MAX_JSON + 1)
    if len(raw) > MAX_JSON:
        raise InvalidArgument(f"{what} is larger than {MAX_JSON} bytes")
    return _json(raw, what)


def load_oci_layout(path: str, blobs: BlobStore, index: ImageIndex, *,
                    name: str | None = None, platform: str | None = None,
                    prepare: Prepare | None = None) -> list[ImageRecord]:
    """Load every image an OCI image layout directory names (or the one, as ``name``).

    Everything is checked before the first image is indexed, so a bad layout adds none.
    """
    def copy(desc: object, what: str, document: bool = False) -> bytes:
        digest, size = descriptor(desc, what)
        if document and size > MAX_JSON:
            raise InvalidArgument(f"{what} {digest} is {size} bytes, more than the "
                                  f"{MAX_JSON} rctr reads")
        source = os.path.join(path, "blobs", *digest.split(":", 1))
        try:
            with open(source, "rb") as f:
                blobs.put(f, digest, size)
        except (FileNotFoundError, IsADirectoryError):
            raise InvalidArgument(f"{what}: blob {digest} is missing from the layout") from None
        return blobs.read(digest) if document else b""

    try:
        top = _read_json_file(os.path.join(path, "index.json"), "index.json")
    except FileNotFoundError:
        raise InvalidArgument(f"{path} is not an OCI image layout (no index.json)") from None
    manifests = top.get("manifests")
    if not isinstance(manifests, list) or not manifests:
        raise InvalidArgument("index.json lists no manifests")
    found: list[tuple[str, Manifest, list[str]]] = []
    for i, desc in enumerate(manifests):
        descriptor(desc, f"index.json manifest {i}", _INDEX_TYPES + _MANIFEST_TYPES)
        ref = (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name", "") \
            if isinstance(desc.get("annotations"), dict) else ""
        if desc.get("mediaType") in _INDEX_TYPES:
            nested = parse_index(copy(desc, "image index", True), f"image index {desc['digest']}")
            desc = choose_manifest(nested, platform)
            if desc.get("mediaType") in _INDEX_TYPES:
                raise Unsupported(f"image index {desc['digest']} points to another index")
        manifest = parse_manifest(copy(desc, "manifest", True), f"manifest {desc['digest']}")
        copy(manifest["config"], f"manifest {desc['digest']} config")
        for j, layer in enumerate(manifest["layers"]):
            copy(layer, f"manifest {desc['digest']} layer {j}")
        names = [name] if name else ([ref] if isinstance(ref, str) and (":" in ref or "/" in ref)
                                     else [])
        found.append((desc["digest"], manifest, names))
    return _add_all(index, [_checked(blobs, d, m, n, prepare) for d, m, n in found])


def load_oci_archive(tar_path: str, tmp: str, blobs: BlobStore, index: ImageIndex, *,
                     name: str | None = None, prepare: Prepare | None = None) -> list[ImageRecord]:
    """Load an oci-archive: its layout's own files unpacked under ``tmp``, then loaded."""
    import tempfile

    with tempfile.TemporaryDirectory(dir=tmp, prefix=f"load-{os.getpid()}-") as unpacked:
        _unpack_oci_archive(tar_path, unpacked, layer_limit(os.path.getsize(tar_path)))
        return load_oci_layout(unpacked, blobs, index, name=name, prepare=prepare)


def _unpack_oci_archive(path: str, dest: str, max_bytes: int) -> None:
    """Take only the layout's own files out of the tar: no other name is trusted, and no
    more than ``max_bytes`` in all (a compressed archive could inflate without end)."""
    import re
    import shutil

    allowed = re.compile(r"^(oci-layout|index\.json|blobs/sha256/[0-9a-f]{64})$")
    os.makedirs(os.path.join(dest, "blobs", "sha256"), exist_ok=True)
    total = 0
    with _open_tar(path) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if not member.isfile() or not allowed.match(name):
                continue
            total += member.size
            if total > max_bytes:
                raise InvalidArgument(f"{path}: the archive unpacks to more than {max_bytes} "
                                      "bytes", hint="refusing a possible decompression bomb")
            src = tar.extractfile(member)
            if src is None:
                continue
            with src, open(os.path.join(dest, name), "wb") as out:
                shutil.copyfileobj(src, out)


@contextlib.contextmanager
def _open_tar(path: str) -> Iterator[tarfile.TarFile]:
    """``tarfile.open``, its errors (a cut or corrupt archive) as one clear one."""
    try:
        with tarfile.open(path) as tar:
            yield tar
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile):
            raise
        detail = (str(exc).splitlines() or [""])[0].rstrip(":")  # tarfile lists every codec it tried
        raise InvalidArgument(f"{path} is not a readable tar archive: {detail}") from None


def is_oci_archive(path: str) -> bool:
    try:
        with _open_tar(path) as tar:
            # `tar -C layout -cf x.tar .` names it ./oci-layout
            return any(n.removeprefix("./") == "oci-layout" for n in tar.getnames())
    except InvalidArgument:
        return False


def load_docker_archive(tar_path: str, blobs: BlobStore, index: ImageIndex, *,
                        prepare: Prepare | None = None) -> list[ImageRecord]:
    """Load a ``docker save`` tarball: its layers are stored as the tar blobs they are.

    Everything is checked before the first image is indexed, so a bad archive adds none.
    """
    with _open_tar(tar_path) as tar:
        def member(name: object, what: str) -> IO[bytes]:
            if not isinstance(name, str):
                raise InvalidArgument(f"{tar_path}: manifest.json names {what} {name!r}, "
                                      "not a file name")
            try:
                info = tar.getmember(name)
                f = tar.extractfile(info)
            except (KeyError, tarfile.TarError):
                f = None
            if f is None:
                raise InvalidArgument(f"{tar_path}: {what} {name!r} is missing or not a file")
            return f

        def document(name: object, what: str) -> bytes:
            with member(name, what) as f:
                raw = f.read(MAX_JSON + 1)
            if len(raw) > MAX_JSON:
                raise InvalidArgument(f"{tar_path}: {what} is larger than {MAX_JSON} bytes")
            return raw

        try:
            manifest_list = json.loads(document("manifest.json", "manifest.json"))
        except (ValueError, RecursionError):
            raise InvalidArgument(f"{tar_path}: manifest.json is not valid JSON") from None
        if not isinstance(manifest_list, list) or not manifest_list or \
                not all(isinstance(e, dict) for e in manifest_list):
            raise InvalidArgument(f"{tar_path}: manifest.json is not a list of images")
        found: list[tuple[str, Manifest, list[str]]] = []
        for entry in manifest_list:
            tags, layer_names = entry.get("RepoTags") or [], entry.get("Layers")
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise InvalidArgument(f"{tar_path}: manifest.json RepoTags is not a list of names")
            if not isinstance(layer_names, list):
                raise InvalidArgument(f"{tar_path}: manifest.json Layers is not a list")
            config_raw = document(entry.get("Config"), "config")
            parse_config(config_raw, f"{tar_path}: config {entry.get('Config')}", len(layer_names))
            config_digest = blobs.put_bytes(config_raw)
            layers: list[Descriptor] = []
            for layer_name in layer_names:
                with member(layer_name, "layer") as f:
                    digest, size = blobs.add(f)
                layers.append({"mediaType": MEDIA_TYPES["oci_layer_tar"], "digest": digest,
                               "size": size})
            manifest: Manifest = {"schemaVersion": 2, "mediaType": MEDIA_TYPES["oci_manifest"],
                        "config": {"mediaType": MEDIA_TYPES["oci_config"],
                                   "digest": config_digest, "size": len(config_raw)},
                        "layers": layers}
            manifest_digest = blobs.put_bytes(json.dumps(manifest, separators=(",", ":")).encode())
            found.append((manifest_digest, manifest, tags))
        return _add_all(index, [_checked(blobs, d, m, n, prepare) for d, m, n in found])


def import_rootfs(tar_path: str, blobs: BlobStore, index: ImageIndex, name: str | None = None,
                  *, cmd: list[str] | None = None) -> ImageRecord:
    """``rctr import``: one layer made of a rootfs tarball (plain or gzip), as Docker does it.

    The layer is stored as it came; its diff id is the digest of the uncompressed tar.
    """
    import gzip
    import time

    with open(tar_path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    with open(tar_path, "rb") as f:  # streamed: a rootfs tarball may be large
        layer_digest, size = blobs.add(f)
    if gzipped:
        diff = hashlib.sha256()
        with gzip.open(tar_path, "rb") as f:
            while chunk := f.read(1 << 20):
                diff.update(chunk)
        diff_id = "sha256:" + diff.hexdigest()
    else:
        diff_id = layer_digest  # an uncompressed layer is its own diff
    architecture = host_platform().split("/", 1)[1]
    config = {"architecture": architecture, "os": "linux",
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                         **({"Cmd": cmd} if cmd else {})},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]},
              "history": [{"created_by": f"rctr import {os.path.basename(tar_path)}"}]}
    config_raw = json.dumps(config, separators=(",", ":")).encode()
    config_digest = blobs.put_bytes(config_raw)
    layer_type = MEDIA_TYPES["oci_layer_tar"] + ("+gzip" if gzipped else "")
    manifest: Manifest = {"schemaVersion": 2, "mediaType": MEDIA_TYPES["oci_manifest"],
                "config": {"mediaType": MEDIA_TYPES["oci_config"], "digest": config_digest,
                           "size": len(config_raw)},
                "layers": [{"mediaType": layer_type, "digest": layer_digest, "size": size}]}
    manifest_digest = blobs.put_bytes(json.dumps(manifest, separators=(",", ":")).encode())
    return _register(blobs, index, manifest_digest, manifest, [name] if name else [])
