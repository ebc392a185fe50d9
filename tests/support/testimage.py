"""Build the deterministic busybox test image that rctr's tests share.

The image is made from the host's static busybox (``/bin/busybox``, Debian's
``busybox-static``) so the tests need no network and no registry.  Every build
on the same host yields byte-identical blobs (fixed mtimes, sorted entries,
explicit owners and names, gzip with mtime 0), so digests can be asserted.

Each layer exercises something a later test checks:

* Layer 1 (base): ``/bin/busybox`` plus one symlink per applet
  (``busybox --list-full``, e.g. ``bin/sh``, ``usr/bin/env``), the usual
  directories (``/root`` 0700, ``/tmp`` 1777, ``/home/user`` owned by 1000),
  ``/etc/passwd`` and ``/etc/group`` (root, user 1000, nobody 65534), files
  owned by 1000 and 65534 (id mapping), ``/opaque/lower-a`` and
  ``/opaque/lower-b`` (opaque whiteout), ``/deleted-later`` (plain whiteout),
  ``/www/index.html`` (a file to serve), ``/etc/motd`` saying "layer 1".
* Layer 2: whiteout ``/.wh.deleted-later``; opaque marker
  ``/opaque/.wh..wh..opq`` plus ``/opaque/upper-c``; ``/etc/motd`` replaced
  ("layer 2"); ``/bin/setuid-marker`` with mode 04755 (setuid bits survive
  only where the image says so).
* Layer 3: ``/etc/layer3`` and a hardlink ``/etc/layer3-link`` to it.

The config carries Env, Cmd ``["sh"]``, WorkingDir, ExposedPorts ``80/tcp``,
a label, the diff_ids and one history entry per layer.

The module writes the image as an OCI image layout (:func:`build_oci_layout`)
or a ``docker save`` archive (:func:`build_docker_archive`), and, as root,
unpacks it into a rootfs for an unprivileged user with owners shifted through
uid/gid maps (:func:`unpack_rootfs`, :func:`make_bundle`, :func:`subid_map`).
The unpacker applies OCI whiteouts and refuses entries that would escape the
destination (absolute or ``..`` names, paths through symlinks).

Standard library only; it also runs as a script::

    python3 tests/support/testimage.py oci OUT_DIR
    python3 tests/support/testimage.py docker-archive OUT.tar
    python3 tests/support/testimage.py bundle LAYOUT_DIR BUNDLE_DIR --user NAME
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import pwd
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "IMAGE_NAME",
    "IMAGE_TAG",
    "build_oci_layout",
    "build_docker_archive",
    "unpack_rootfs",
    "make_bundle",
    "subid_map",
]

IMAGE_NAME = "rctr-test/busybox"
IMAGE_TAG = "latest"

IdMap = Sequence[tuple[int, int, int]]

BUSYBOX = "/bin/busybox"
MTIME = 1767225600  # 2026-01-01T00:00:00Z
CREATED = "2026-01-01T00:00:00Z"

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

_NAMES = {0: ("root", "root"), 1000: ("user", "user"), 65534: ("nobody", "nogroup")}
_ARCHES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "user:x:1000:1000::/home/user:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n"


# --------------------------------------------------------------------------
# Image content
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One tar member of a layer, described independently of tarfile."""

    path: str
    kind: str  # "dir", "file", "symlink", "hardlink"
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    target: str = ""


def _dir(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, "dir", mode, uid, gid)


def _file(path: str, data: bytes | str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    raw = data.encode() if isinstance(data, str) else data
    return Entry(path, "file", mode, uid, gid, raw)


def _busybox_applets(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True)
    return sorted({line.strip().lstrip("/") for line in out.stdout.splitlines() if line.strip()})


_BASE_DIRS = {
    "bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755,
    "etc": 0o755, "root": 0o700, "tmp": 0o1777, "var": 0o755, "run": 0o755,
    "proc": 0o755, "sys": 0o755, "dev": 0o755, "home": 0o755, "www": 0o755,
    "opaque": 0o755,
}


def _layer1(busybox: str) -> list[Entry]:
    entries = [_dir(path, mode) for path, mode in _BASE_DIRS.items()]
    entries.append(_dir("home/user", 0o755, 1000, 1000))
    with open(busybox, "rb") as f:
        entries.append(_file("bin/busybox", f.read(), 0o755))
    known = {e.path for e in entries}
    for applet in _busybox_applets(busybox):
        if applet in known:
            continue
        parent = os.path.dirname(applet)
        if parent and parent not in known:
            entries.append(_dir(parent))
            known.add(parent)
        entries.append(Entry(applet, "symlink", 0o777, target="/bin/busybox"))
        known.add(applet)
    entries += [
        _file("etc/passwd", PASSWD),
        _file("etc/group", GROUP),
        _file("etc/motd", "layer 1\n"),
        _file("home/user/owned-by-1000", "1000\n", 0o644, 1000, 1000),
        _file("var/owned-by-65534", "65534\n", 0o644, 65534, 65534),
        _file("opaque/lower-a", "a\n"),
        _file("opaque/lower-b", "b\n"),
        _file("deleted-later", "deleted by layer 2\n"),
        _file("www/index.html", "<h1>hello from rctr</h1>\n"),
    ]
    return entries


def _layer2() -> list[Entry]:
    return [
        _dir("bin"),
        _dir("etc"),
        _dir("opaque"),
        _file(WHITEOUT_PREFIX + "deleted-later", b""),
        _file("opaque/" + OPAQUE_MARKER, b""),
        _file("opaque/upper-c", "c\n"),
        _file("etc/motd", "layer 2\n"),
        _file("bin/setuid-marker", "setuid marker\n", 0o4755),
    ]


def _layer3() -> list[Entry]:
    return [
        _dir("etc"),
        _file("etc/layer3", "3\n"),
        Entry("etc/layer3-link", "hardlink", 0o644, target="etc/layer3"),
    ]


_HISTORY = [
    "rctr testimage: layer 1: busybox, applet symlinks, passwd/group, owned files",
    "rctr testimage: layer 2: whiteout, opaque dir, motd, setuid marker",
    "rctr testimage: layer 3: file and hardlink",
]


def _layers(busybox: str) -> list[list[Entry]]:
    return [_layer1(busybox), _layer2(), _layer3()]


# --------------------------------------------------------------------------
# Deterministic serialisation
# --------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _tarinfo(
    name: str, *, size: int = 0, mode: int = 0o644, uid: int = 0, gid: int = 0
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = MTIME
    info.uid, info.gid = uid, gid
    info.uname = _NAMES.get(uid, ("", ""))[0]
    info.gname = _NAMES.get(gid, ("", ""))[1]
    return info


_TAR_TYPES = {
    "dir": tarfile.DIRTYPE,
    "file": tarfile.REGTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
}


def _layer_tar(entries: Iterable[Entry]) -> bytes:
    """An uncompressed tar of ``entries`` in path order (parents first)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in sorted(entries, key=lambda e: e.path):
            info = _tarinfo(e.path, size=len(e.data), mode=e.mode, uid=e.uid, gid=e.gid)
            info.type = _TAR_TYPES[e.kind]
            info.linkname = e.target
            tar.addfile(info, io.BytesIO(e.data) if e.kind == "file" else None)
    return buf.getvalue()


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def _host_arch() -> str:
    machine = platform.machine()
    return _ARCHES.get(machine, machine)


def _config(diff_ids: list[str]) -> dict:
    return {
        "created": CREATED,
        "architecture": _host_arch(),
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
            "WorkingDir": "/",
            "ExposedPorts": {"80/tcp": {}},
            "Labels": {"org.rctr.test": "busybox"},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": CREATED, "created_by": text} for text in _HISTORY],
    }


@dataclass(frozen=True)
class _Image:
    tars: list[bytes]  # uncompressed layer tars
    diff_ids: list[str]
    config: bytes


def _build_image(busybox: str = BUSYBOX) -> _Image:
    tars = [_layer_tar(entries) for entries in _layers(busybox)]
    diff_ids = [_sha256(t) for t in tars]
    return _Image(tars, diff_ids, _json_bytes(_config(diff_ids)))


# --------------------------------------------------------------------------
# OCI layout and docker archive
# --------------------------------------------------------------------------


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)


def _write_blob(out_dir: str, data: bytes) -> str:
    digest = _sha256(data)
    _write_file(os.path.join(out_dir, "blobs", "sha256", digest.split(":", 1)[1]), data)
    return digest


def _descriptor(media_type: str, data: bytes) -> dict:
    return {"mediaType": media_type, "digest": _sha256(data), "size": len(data)}


def build_oci_layout(out_dir: str) -> dict:
    """Write the image as an OCI image layout in ``out_dir`` (created if needed).

    Returns ``{"manifest_digest", "config_digest", "layers", "diff_ids"}``;
    ``layers`` are the digests of the gzipped layer blobs.
    """
    image = _build_image()
    blob_dir = os.path.join(out_dir, "blobs", "sha256")
    os.makedirs(blob_dir, exist_ok=True)
    for d in (out_dir, os.path.join(out_dir, "blobs"), blob_dir):
        os.chmod(d, 0o755)
    blobs = [_gzip(t) for t in image.tars]
    layers = [_write_blob(out_dir, b) for b in blobs]
    config_digest = _write_blob(out_dir, image.config)
    manifest = _json_bytes({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": _descriptor(MT_CONFIG, image.config),
        "layers": [_descriptor(MT_LAYER_GZIP, b) for b in blobs],
    })
    manifest_digest = _write_blob(out_dir, manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{
            **_descriptor(MT_MANIFEST, manifest),
            "annotations": {REF_NAME: IMAGE_TAG},
            "platform": {"architecture": _host_arch(), "os": "linux"},
        }],
    }
    _write_file(os.path.join(out_dir, "index.json"), _json_bytes(index))
    _write_file(os.path.join(out_dir, "oci-layout"), _json_bytes({"imageLayoutVersion": "1.0.0"}))
    return {
        "manifest_digest": manifest_digest,
        "config_digest": config_digest,
        "layers": layers,
        "diff_ids": image.diff_ids,
    }


def _add_member(tar: tarfile.TarFile, name: str, data: bytes | None) -> None:
    if data is None:
        info = _tarinfo(name, mode=0o755)
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        tar.addfile(_tarinfo(name, size=len(data)), io.BytesIO(data))


def _docker_members(image: _Image) -> tuple[dict[str, bytes | None], dict]:
    """The ``docker save`` members (``<id>/{VERSION,json,layer.tar}``, config,
    ``manifest.json``, ``repositories``; None marks a directory) and the manifest entry."""
    members: dict[str, bytes | None] = {}
    layer_paths: list[str] = []
    parent = ""
    for tar, diff_id in zip(image.tars, image.diff_ids, strict=True):
        layer_id = hashlib.sha256(_json_bytes({"diff_id": diff_id, "parent": parent})).hexdigest()
        v1 = {"id": layer_id, "created": CREATED, **({"parent": parent} if parent else {})}
        members[layer_id] = None
        members[f"{layer_id}/VERSION"] = b"1.0"
        members[f"{layer_id}/json"] = _json_bytes(v1)
        members[f"{layer_id}/layer.tar"] = tar
        layer_paths.append(f"{layer_id}/layer.tar")
        parent = layer_id
    config_name = _sha256(image.config).split(":", 1)[1] + ".json"
    members[config_name] = image.config
    repo_tag = f"{IMAGE_NAME}:{IMAGE_TAG}"
    entry = {"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_paths}
    members["manifest.json"] = _json_bytes([entry])
    members["repositories"] = _json_bytes({IMAGE_NAME: {IMAGE_TAG: parent}})
    return members, entry


def build_docker_archive(out_tar: str) -> dict:
    """Write the same image as a ``docker save`` tarball at ``out_tar``.

    Returns ``{"config_digest", "diff_ids", "layers", "repo_tags"}``;
    ``layers`` are the member paths of the uncompressed layer tars.
    """
    image = _build_image()
    members, entry = _docker_members(image)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            _add_member(tar, name, members[name])
    _write_file(out_tar, buf.getvalue())
    return {
        "config_digest": _sha256(image.config),
        "diff_ids": image.diff_ids,
        "layers": entry["Layers"],
        "repo_tags": entry["RepoTags"],
    }


# --------------------------------------------------------------------------
# Id maps
# --------------------------------------------------------------------------


def _subid_keys(user: str, uid: int, kind: str) -> set[str]:
    """The first-field values of a sub-id line that belong to ``user``.

    Both files are keyed by user name or numeric *uid*, so for ``kind="gid"``
    the numeric key is looked up rather than taken from the gid argument.
    """
    keys = {user}
    if kind == "uid":
        keys.add(str(uid))
    else:
        try:
            keys.add(str(pwd.getpwnam(user).pw_uid))
        except KeyError:
            pass
    return keys


def subid_map(
    user: str, uid: int, kind: str = "uid", *, path: str | None = None
) -> list[tuple[int, int, int]]:
    """The map a rootless runtime would use for ``user``: own id as 0, sub-ids from 1.

    ``uid`` is the host id mapped to container 0 (the user's gid for
    ``kind="gid"``).  Reads ``/etc/subuid`` or ``/etc/subgid`` (``path``
    overrides); returns ``[(0, uid, 1), (1, start, min(count, 65536))]`` for
    the user's first range, or ``[(0, uid, 1)]`` when there is none.
    """
    if kind not in ("uid", "gid"):
        raise ValueError(f"kind must be 'uid' or 'gid', not {kind!r}")
    mapping = [(0, uid, 1)]
    try:
        with open(path or f"/etc/sub{kind}", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return mapping
    keys = _subid_keys(user, uid, kind)
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in keys:
            continue
        try:
            start, count = int(fields[1]), int(fields[2])
        except ValueError:
            continue
        if count > 0:
            return mapping + [(1, start, min(count, 65536))]
    return mapping


def _map_id(cid: int, idmap: IdMap) -> int | None:
    for cstart, hstart, size in idmap:
        if cstart <= cid < cstart + size:
            return hstart + cid - cstart
    return None


def _host_id(cid: int, idmap: IdMap) -> int:
    """Container id -> host id; unmapped ids fall back to 65534, then to 0."""
    for candidate in (cid, 65534, 0):
        host = _map_id(candidate, idmap)
        if host is not None:
            return host
    raise ValueError(f"id map {list(idmap)!r} maps neither {cid}, 65534 nor 0")


# --------------------------------------------------------------------------
# Safe layer application
# --------------------------------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _split(name: str, what: str = "entry") -> list[str]:
    """Path components of a tar name; refuses absolute paths and ``..``."""
    if name.startswith("/"):
        raise ValueError(f"{what} {name!r}: absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{what} {name!r}: '..' in path")
    return parts


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


class _Root:
    """The destination directory, walked component by component without following symlinks."""

    def __init__(self, dest: str, uid_map: IdMap, gid_map: IdMap) -> None:
        self.fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.uid_map, self.gid_map = uid_map, gid_map

    def close(self) -> None:
        os.close(self.fd)

    def owner(self, uid: int, gid: int) -> tuple[int, int]:
        return _host_id(uid, self.uid_map), _host_id(gid, self.gid_map)

    def open_dir(self, parts: Sequence[str], entry: str, *, create: bool) -> int | None:
        """An fd for the directory ``parts``; None if missing and not ``create``.

        Missing directories are created (0755, container root) when ``create``;
        a symlink anywhere on the way is refused.
        """
        fd = os.dup(self.fd)
        try:
            for comp in parts:
                st = _lstat(comp, fd)
                if st is None:
                    if not create:
                        os.close(fd)
                        return None
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    os.chown(comp, *self.owner(0, 0), dir_fd=fd, follow_symlinks=False)
                elif stat.S_ISLNK(st.st_mode):
                    raise ValueError(f"entry {entry!r}: path component {comp!r} is a symlink")
                elif not stat.S_ISDIR(st.st_mode):
                    if not create:
                        os.close(fd)
                        return None
                    raise ValueError(f"entry {entry!r}: path component {comp!r} is not a directory")
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd


def _remove(name: str, dir_fd: int) -> None:
    st = _lstat(name, dir_fd)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _apply_whiteout(root: _Root, parts: list[str], entry: str) -> None:
    """``.wh.NAME`` removes NAME; ``.wh..wh..opq`` empties its directory."""
    leaf = parts[-1]
    if leaf == OPAQUE_MARKER:
        fd = root.open_dir(parts[:-1], entry, create=False)
        if fd is not None:
            try:
                for child in os.listdir(fd):
                    _remove(child, fd)
            finally:
                os.close(fd)
        return
    victim = leaf[len(WHITEOUT_PREFIX):]
    if victim in ("", ".", ".."):
        raise ValueError(f"entry {entry!r}: invalid whiteout")
    fd = root.open_dir(parts[:-1], entry, create=False)
    if fd is not None:
        try:
            _remove(victim, fd)
        finally:
            os.close(fd)


def _write_regular(
    tar: tarfile.TarFile, member: tarfile.TarInfo, leaf: str, pfd: int, owner: tuple[int, int]
) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(leaf, flags, 0o600, dir_fd=pfd)
    try:
        src = tar.extractfile(member)
        if src is not None:
            with src:
                while chunk := src.read(1 << 20):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
        os.fchown(fd, *owner)  # before chmod: chown clears setuid/setgid
        os.fchmod(fd, member.mode & 0o7777)
    finally:
        os.close(fd)


def _make_dir(member: tarfile.TarInfo, leaf: str, pfd: int, owner: tuple[int, int]) -> None:
    if _lstat(leaf, pfd) is None:
        os.mkdir(leaf, 0o700, dir_fd=pfd)
    fd = os.open(leaf, _DIR_FLAGS, dir_fd=pfd)
    try:
        os.fchown(fd, *owner)
        os.fchmod(fd, member.mode & 0o7777)
    finally:
        os.close(fd)


def _make_hardlink(root: _Root, member: tarfile.TarInfo, leaf: str, pfd: int) -> None:
    target = _split(member.linkname, "hardlink target of")
    if not target:
        raise ValueError(f"entry {member.name!r}: empty hardlink target")
    tfd = root.open_dir(target[:-1], member.name, create=False)
    if tfd is None:
        raise ValueError(f"entry {member.name!r}: hardlink target {member.linkname!r} missing")
    try:
        os.link(target[-1], leaf, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
    finally:
        os.close(tfd)


def _clear(leaf: str, pfd: int, keep_dir: bool) -> None:
    """Make way for a new entry: keep an existing directory for a directory entry."""
    st = _lstat(leaf, pfd)
    if st is None or (keep_dir and stat.S_ISDIR(st.st_mode)):
        return
    _remove(leaf, pfd)


def _extract(root: _Root, tar: tarfile.TarFile, member: tarfile.TarInfo, parts: list[str]) -> bool:
    """Create one entry; returns whether it was created (special files are skipped)."""
    if member.ischr() or member.isblk():
        return False
    pfd = root.open_dir(parts[:-1], member.name, create=True)
    assert pfd is not None
    leaf = parts[-1]
    owner = root.owner(member.uid, member.gid)
    try:
        _clear(leaf, pfd, keep_dir=member.isdir())
        if member.isdir():
            _make_dir(member, leaf, pfd, owner)
            return True  # mtime set after the layer, once children exist
        if member.islnk():
            _make_hardlink(root, member, leaf, pfd)
            return True  # shares the target's inode and metadata
        if member.isreg():
            _write_regular(tar, member, leaf, pfd, owner)  # chowns, then chmods
        elif member.issym():
            os.symlink(member.linkname, leaf, dir_fd=pfd)
            os.chown(leaf, *owner, dir_fd=pfd, follow_symlinks=False)  # lchown
        elif member.isfifo():
            os.mkfifo(leaf, 0o600, dir_fd=pfd)
            os.chown(leaf, *owner, dir_fd=pfd, follow_symlinks=False)
            os.chmod(leaf, member.mode & 0o7777, dir_fd=pfd)  # just made: not a symlink
        else:
            return False
        os.utime(leaf, (member.mtime, member.mtime), dir_fd=pfd, follow_symlinks=False)
        return True
    finally:
        os.close(pfd)


def _set_dir_mtime(root: _Root, parts: list[str], mtime: int, entry: str) -> None:
    if not parts:
        return
    pfd = root.open_dir(parts[:-1], entry, create=False)
    if pfd is None:
        return
    try:
        if _lstat(parts[-1], pfd) is not None:
            os.utime(parts[-1], (mtime, mtime), dir_fd=pfd, follow_symlinks=False)
    finally:
        os.close(pfd)


def _is_whiteout(parts: list[str]) -> bool:
    return bool(parts) and parts[-1].startswith(WHITEOUT_PREFIX)


def _apply_layer(tar: tarfile.TarFile, dest: str, uid_map: IdMap, gid_map: IdMap) -> None:
    """Apply one layer tar on top of ``dest`` (as root).

    All names are checked before anything is written; whiteouts are applied
    before the layer's own entries, so they only ever remove lower content.
    """
    members = tar.getmembers()
    named = [(m, _split(m.name)) for m in members]
    for m, _ in named:
        if m.islnk():
            _split(m.linkname, "hardlink target of")
    root = _Root(dest, uid_map, gid_map)
    try:
        for m, parts in named:
            if _is_whiteout(parts):
                _apply_whiteout(root, parts, m.name)
        dirs: list[tuple[list[str], int, str]] = []
        for m, parts in named:
            if not parts or _is_whiteout(parts):
                continue
            if _extract(root, tar, m, parts) and m.isdir():
                dirs.append((parts, int(m.mtime), m.name))
        for parts, mtime, name in reversed(dirs):
            _set_dir_mtime(root, parts, mtime, name)
    finally:
        root.close()


# --------------------------------------------------------------------------
# Layout reading, unpacking and bundles
# --------------------------------------------------------------------------


def _blob_path(layout_dir: str, digest: str) -> str:
    algo, _, hexdigest = digest.partition(":")
    if algo != "sha256" or len(hexdigest) != 64 or set(hexdigest) - set("0123456789abcdef"):
        raise ValueError(f"unsupported digest {digest!r}")
    return os.path.join(layout_dir, "blobs", "sha256", hexdigest)


def _read_blob(layout_dir: str, digest: str) -> bytes:
    with open(_blob_path(layout_dir, digest), "rb") as f:
        data = f.read()
    if _sha256(data) != digest:
        raise ValueError(f"blob {digest} does not match its digest")
    return data


def _read_manifest(layout_dir: str) -> dict:
    with open(os.path.join(layout_dir, "index.json"), encoding="utf-8") as f:
        index = json.load(f)
    manifests = index.get("manifests") or []
    if not manifests:
        raise ValueError(f"{layout_dir}: index.json lists no manifests")
    tagged = [m for m in manifests if m.get("annotations", {}).get(REF_NAME) == IMAGE_TAG]
    desc = (tagged or manifests)[0]
    return json.loads(_read_blob(layout_dir, desc["digest"]))


def unpack_rootfs(layout_dir: str, dest: str, uid_map: IdMap, gid_map: IdMap) -> None:
    """Apply the layout's layers in order into ``dest``, owners shifted by the maps.

    Must run as root (it chowns to arbitrary host ids).  ``dest`` is created
    if missing and owned by container root.
    """
    manifest = _read_manifest(layout_dir)
    os.makedirs(dest, exist_ok=True)
    os.chown(dest, _host_id(0, uid_map), _host_id(0, gid_map))
    os.chmod(dest, 0o755)
    for layer in manifest["layers"]:
        data = _read_blob(layout_dir, layer["digest"])
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            _apply_layer(tar, dest, uid_map, gid_map)


def make_bundle(
    layout_dir: str,
    bundle_dir: str,
    owner_uid: int,
    owner_gid: int,
    uid_map: IdMap,
    gid_map: IdMap,
) -> str:
    """Create ``bundle_dir`` (owned by the owner) with the image unpacked in ``rootfs``.

    Returns the rootfs path.  Must run as root.
    """
    os.makedirs(bundle_dir, exist_ok=True)
    os.chown(bundle_dir, owner_uid, owner_gid)
    os.chmod(bundle_dir, 0o755)
    rootfs = os.path.join(bundle_dir, "rootfs")
    unpack_rootfs(layout_dir, rootfs, uid_map, gid_map)
    return rootfs


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="testimage.py", description="Build rctr's busybox test image."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    oci = sub.add_parser("oci", help="write an OCI image layout")
    oci.add_argument("out_dir")
    archive = sub.add_parser("docker-archive", help="write a `docker save` tarball")
    archive.add_argument("out_tar")
    bundle = sub.add_parser("bundle", help="unpack a layout into a bundle for a user (as root)")
    bundle.add_argument("layout_dir")
    bundle.add_argument("bundle_dir")
    bundle.add_argument(
        "--user", required=True, help="owner; id maps come from /etc/subuid and /etc/subgid"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "oci":
        result: object = build_oci_layout(args.out_dir)
    elif args.command == "docker-archive":
        result = build_docker_archive(args.out_tar)
    else:
        pw = pwd.getpwnam(args.user)
        uid_map = subid_map(args.user, pw.pw_uid, "uid")
        gid_map = subid_map(args.user, pw.pw_gid, "gid")
        rootfs = make_bundle(
            args.layout_dir, args.bundle_dir, pw.pw_uid, pw.pw_gid, uid_map, gid_map
        )
        result = {"rootfs": os.path.abspath(rootfs), "uid_map": uid_map, "gid_map": gid_map}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
