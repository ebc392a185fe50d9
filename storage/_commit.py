"""``commit``: a new image from a container's RW layer (Docker's ``docker commit``).

The layer is the container's changes as an OCI layer tar:

* overlay, fuse-overlayfs, fusepy: the upper directory, with overlayfs's
  whiteouts turned back into the tar form ``_extract`` reads (the inverse of
  its ``"overlay"`` style): a 0:0 character device is ``.wh.NAME``, a
  directory marked opaque (``user.overlay.opaque``, ``trusted.overlay.opaque``,
  or fuse-overlayfs's ``user.fuseoverlayfs.opaque``) gets ``.wh..wh..opq``.
  fuse-overlayfs may also leave ``.wh.NAME`` files of its own when it cannot
  make devices: those are whiteouts already and go in as they are.
* vfs: the container's full copy against the image's top layer, Docker's
  naive diff (``pkg/archive/changes.go``): a name only in the image is a
  whiteout; a name whose type, mode, owner or device differs, or (not a
  directory) whose size or mtime differs, is changed.

The files are read with the ids they have in the user's user namespace: the
daemon lives there, so those are the container's ids, which is what the tar
must carry.  Every directory is walked by fd with ``O_NOFOLLOW``: a running
container can swap a name for a symlink under us, and must not get a host
file into its image that way.

The layer goes through the blob store as it is made (a thread writes the gzip
into a pipe that ``BlobStore.add`` reads, so the disk sees it once, under
tmp/, until its digest is known); the config and the manifest follow; the
image is indexed last by ``_load._register``, as a load does.  An empty diff
makes no layer, as Docker does: the history entry says ``empty_layer``.
A full disk anywhere leaves no image, no half-written tmp file, and no blob
that no image uses.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import shlex
import stat
import tarfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from rctr.core.errors import InvalidArgument, RctrError, Unavailable

from ._blobs import BlobStore
from ._extract import OPAQUE_MARKER, WHITEOUT_PREFIX
from ._images import ImageIndex, ImageRecord
from ._load import MEDIA_TYPES, ImageConfig, Manifest, Prepare, _register

__all__ = ["commit_image", "parse_changes", "merge_config", "overlay_changes", "vfs_changes",
           "write_layer", "disk_full", "CHANGE_COMMANDS", "Change"]

OPAQUE_XATTRS = ("user.overlay.opaque", "trusted.overlay.opaque", "user.fuseoverlayfs.opaque")
LAYER_TYPE = MEDIA_TYPES["oci_layer_tar"] + "+gzip"
# The fields of a container's Config that an image keeps (the rest is the container's own).
IMAGE_FIELDS = ("User", "ExposedPorts", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Volumes",
                "WorkingDir", "Entrypoint", "OnBuild", "Labels", "StopSignal", "Shell")

# The files rctrd bind-mounts over a container's own: the runtime makes empty ones as
# mount targets when the image has none.  Docker keeps them in its init layer, under the
# RW layer, so its commits never carry them; neither do ours.
MOUNT_TARGETS = frozenset(["etc/hosts", "etc/hostname", "etc/resolv.conf", ".dockerenv"])

# The fields of the parent's image config that a commit keeps as they are.
_PLATFORM_FIELDS = ("architecture", "os", "variant", "os.version")

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


# --------------------------------------------------------------------------
# --change: Dockerfile instructions over an image config
# --------------------------------------------------------------------------

# The instructions ``docker commit --change`` accepts (daemon/commit.go's validCommitCommands).
CHANGE_COMMANDS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL",
                   "USER", "VOLUME", "WORKDIR")


def _bad(line: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid change {line!r}: {why}",
                           hint="changes are Dockerfile instructions: "
                                + ", ".join(CHANGE_COMMANDS))


def _words(line: str, rest: str) -> list[str]:
    try:
        return shlex.split(rest, posix=True)
    except ValueError as exc:
        raise _bad(line, str(exc)) from None


def _json_or_shell(line: str, rest: str, shell_form: bool) -> list[str]:
    """``["a","b"]`` as it is; anything else is a shell command (``/bin/sh -c``) or, for
    VOLUME, words."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", rest] if shell_form else rest.split()


def _pairs(line: str, rest: str, legacy: bool) -> list[tuple[str, str]]:
    """``k=v k2="v 2"`` (and ENV's old ``k v w``) as (key, value) pairs."""
    words = _words(line, rest)
    if not words:
        raise _bad(line, "needs at least one argument")
    if legacy and "=" not in words[0]:
        key, _, value = rest.strip().partition(" ")
        if not value.strip():
            raise _bad(line, "needs a name and a value (KEY=VALUE, or KEY VALUE)")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise _bad(line, f"{word!r} is not KEY=VALUE")
        pairs.append((key, value))
    return pairs


def _ports(line: str, rest: str) -> list[str]:
    ports = []
    for word in rest.split():
        spec, _, proto = word.partition("/")
        proto = proto.lower() or "tcp"
        low, _, high = spec.partition("-")
        if proto not in ("tcp", "udp", "sctp") or not low.isdigit() or \
                (high and not high.isdigit()):
            raise _bad(line, f"invalid port {word!r}")
        first, last = int(low), int(high or low)
        if not 0 < first <= last <= 65535:
            raise _bad(line, f"invalid port {word!r}")
        ports += [f"{p}/{proto}" for p in range(first, last + 1)]
    if not ports:
        raise _bad(line, "needs at least one port")
    return ports


def parse_changes(changes: list[str], config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (an image config's ``config``) with the instructions applied, one per
    line; a copy.  ``$VAR`` is not expanded (Docker's builder would)."""
    config = json.loads(json.dumps(config or {}))
    for line in "\n".join(changes).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        command, _, rest = line.partition(" ")
        command, rest = command.upper(), rest.strip()
        if command not in CHANGE_COMMANDS:
            raise _bad(line, f"{command} is not a valid change command")
        if not rest:
            raise _bad(line, f"{command} needs an argument")
        if command in ("CMD", "ENTRYPOINT"):
            config[command.capitalize() if command == "CMD" else "Entrypoint"] = \
                _json_or_shell(line, rest, True)
        elif command == "ENV":
            env = {e.partition("=")[0]: e for e in config.get("Env") or []}
            for key, value in _pairs(line, rest, legacy=True):
                env[key] = f"{key}={value}"
            config["Env"] = list(env.values())
        elif command == "LABEL":
            config["Labels"] = dict(config.get("Labels") or {}, **dict(_pairs(line, rest, False)))
        elif command == "EXPOSE":
            config["ExposedPorts"] = dict(config.get("ExposedPorts") or {},
                                          **{p: {} for p in _ports(line, rest)})
        elif command == "VOLUME":
            paths = _json_or_shell(line, rest, False)
            if not paths or not all(paths):
                raise _bad(line, "VOLUME needs a path")
            config["Volumes"] = dict(config.get("Volumes") or {}, **{p: {} for p in paths})
        elif command == "WORKDIR":
            config["WorkingDir"] = os.path.normpath(
                os.path.join("/", config.get("WorkingDir") or "/", rest))
        elif command == "USER":
            config["User"] = rest
        elif command == "STOPSIGNAL":
            config["StopSignal"] = rest
        else:  # ONBUILD
            config["OnBuild"] = [*(config.get("OnBuild") or []), rest]
    return config


def merge_config(user: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """Docker's ``merge(userConf, imageConf)`` (daemon/commit.go): what the request and the
    changes set wins, the container's config fills the rest."""
    out = {k: v for k, v in user.items() if k in IMAGE_FIELDS and v not in (None, "", [], {})}
    base = {k: container[k] for k in IMAGE_FIELDS if container.get(k) not in (None, "", [], {})}
    if "Env" in out:
        keys = {e.partition("=")[0] for e in out["Env"]}
        out["Env"] = out["Env"] + [e for e in base.get("Env", []) if e.partition("=")[0] not in keys]
    for key in ("Labels", "ExposedPorts", "Volumes"):
        if key in base or key in out:
            out[key] = {**base.get(key, {}), **out.get(key, {})}
    if "Entrypoint" not in out:
        if "Cmd" not in out and "Cmd" in base:
            out["Cmd"] = base["Cmd"]
        if "Entrypoint" in base:
            out["Entrypoint"] = base["Entrypoint"]
    for key in IMAGE_FIELDS:
        if key not in out and key in base and key not in ("Cmd", "Entrypoint"):
            out[key] = base[key]
    return out


# --------------------------------------------------------------------------
# The diff: what goes into the layer, walked by fd
# --------------------------------------------------------------------------


class Change:
    """One layer entry: ``name`` in the tar, and the file it comes from (``dfd``/``leaf``,
    usable until the walk moves on), or none for a whiteout marker."""

    __slots__ = ("name", "dfd", "leaf", "st")

    def __init__(self, name: str, dfd: int | None = None, leaf: str = "",
                 st: os.stat_result | None = None) -> None:
        self.name, self.dfd, self.leaf, self.st = name, dfd, leaf, st


def _listdir(dfd: int) -> list[str]:
    return sorted(os.listdir(dfd))


def _open_dir(leaf: str, dfd: int) -> int | None:
    try:
        return os.open(leaf, _DIR, dir_fd=dfd)
    except (FileNotFoundError, NotADirectoryError):
        return None  # gone (or swapped for something else) since we listed it
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise


def _lstat(leaf: str, dfd: int) -> os.stat_result | None:
    try:
        return os.stat(leaf, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _is_opaque(fd: int) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(fd, name) == b"y":
                return True
        except OSError:
            continue
    return False


def overlay_changes(upper: str) -> Iterator[Change]:
    """The entries of an overlay upper directory, whiteouts in the tar's form."""
    fd = os.open(upper, _DIR)
    try:
        yield from _upper(fd, "")
    finally:
        os.close(fd)


def _upper(dfd: int, prefix: str) -> Iterator[Change]:
    for leaf in _listdir(dfd):
        if prefix + leaf in MOUNT_TARGETS:
            continue
        st = _lstat(leaf, dfd)
        if st is None:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            yield Change(f"{prefix}{WHITEOUT_PREFIX}{leaf}", st=st)
            continue
        if not stat.S_ISDIR(st.st_mode):
            yield Change(prefix + leaf, dfd, leaf, st)
            continue
        sub = _open_dir(leaf, dfd)
        if sub is None:
            continue
        try:
            names = _listdir(sub)
            opaque = _is_opaque(sub)
            if not opaque and names and all(f"{prefix}{leaf}/{n}" in MOUNT_TARGETS
                                            for n in names):
                continue  # /etc copied up only to hold mount targets: no change of the user's
            yield Change(prefix + leaf, dfd, leaf, st)
            if opaque and OPAQUE_MARKER not in names:
                yield Change(f"{prefix}{leaf}/{OPAQUE_MARKER}", st=st)
            yield from _upper(sub, f"{prefix}{leaf}/")
        finally:
            os.close(sub)


def vfs_changes(rootfs: str, lower: str) -> Iterator[Change]:
    """The entries by which ``rootfs`` differs from ``lower`` (the image's top layer)."""
    new, old = os.open(rootfs, _DIR), os.open(lower, _DIR)
    try:
        yield from _diff(new, old, "")
    finally:
        os.close(new)
        os.close(old)


def _xattr(leaf: str, dfd: int, name: str) -> bytes | None:
    try:
        return os.getxattr(f"/proc/self/fd/{dfd}/{leaf}", name, follow_symlinks=False)
    except OSError:
        return None


def _differs(a: os.stat_result, b: os.stat_result, leaf: str, new: int, old: int) -> bool:
    """changes.go's statDifferent, plus symlink targets and file capabilities."""
    if (a.st_mode, a.st_uid, a.st_gid, a.st_rdev) != (b.st_mode, b.st_uid, b.st_gid, b.st_rdev):
        return True
    if stat.S_ISDIR(a.st_mode):
        return False  # a directory's size and mtime change with its children
    if (a.st_size, a.st_mtime_ns) != (b.st_size, b.st_mtime_ns):
        return True
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(leaf, dir_fd=new) != os.readlink(leaf, dir_fd=old)
    return stat.S_ISREG(a.st_mode) and \
        _xattr(leaf, new, "security.capability") != _xattr(leaf, old, "security.capability")


def _diff(new: int, old: int | None, prefix: str) -> Iterator[Change]:
    names = _listdir(new)
    if old is not None:
        for leaf in sorted(set(_listdir(old)) - set(names)):
            yield Change(f"{prefix}{WHITEOUT_PREFIX}{leaf}")
    for leaf in names:
        if prefix + leaf in MOUNT_TARGETS:
            continue
        st = _lstat(leaf, new)
        if st is None:
            continue
        before = _lstat(leaf, old) if old is not None else None
        if old is None or before is None or _differs(st, before, leaf, new, old):
            yield Change(prefix + leaf, new, leaf, st)
        if not stat.S_ISDIR(st.st_mode):
            continue
        sub = _open_dir(leaf, new)
        if sub is None:
            continue
        sub_old = _open_dir(leaf, old) \
            if old is not None and before is not None and stat.S_ISDIR(before.st_mode) else None
        try:
            yield from _diff(sub, sub_old, f"{prefix}{leaf}/")
        finally:
            os.close(sub)
            if sub_old is not None:
                os.close(sub_old)


# --------------------------------------------------------------------------
# The tar
# --------------------------------------------------------------------------


class _Hashing:
    """Counts and hashes what tarfile writes (the diff id), on its way to gzip."""

    def __init__(self, out: gzip.GzipFile) -> None:
        self.out, self.hasher = out, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        return self.out.write(data)


def _xattr_headers(fd: int) -> dict[str, str]:
    headers = {}
    try:
        names = os.listxattr(fd)
    except OSError:
        return {}
    for name in names:
        if ".overlay." in name or "fuseoverlayfs." in name:
            continue  # overlay's own bookkeeping, never content
        try:
            value = os.getxattr(fd, name)
        except OSError:
            continue
        headers[f"SCHILY.xattr.{name}"] = value.decode("utf-8", "surrogateescape")
    return headers


def _add(tar: tarfile.TarFile, change: Change, links: dict[tuple[int, int], str]) -> None:
    info = tarfile.TarInfo(change.name)
    st = change.st
    info.mtime = int(st.st_mtime) if st is not None else int(time.time())
    if change.dfd is None or st is None:  # a whiteout or an opaque marker: an empty file
        info.mode = 0o600
        tar.addfile(info)
        return
    info.mode, info.uid, info.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    fmt, leaf, dfd = stat.S_IFMT(st.st_mode), change.leaf, change.dfd
    if fmt == stat.S_IFSOCK:
        return  # sockets are not content (Docker leaves them out too)
    if fmt == stat.S_IFLNK:
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(leaf, dir_fd=dfd)
        tar.addfile(info)
        return
    if fmt in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO):
        info.type = {stat.S_IFCHR: tarfile.CHRTYPE, stat.S_IFBLK: tarfile.BLKTYPE,
                     stat.S_IFIFO: tarfile.FIFOTYPE}[fmt]
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        tar.addfile(info)
        return
    if fmt == stat.S_IFREG and st.st_nlink > 1 and (st.st_dev, st.st_ino) in links:
        info.type, info.linkname = tarfile.LNKTYPE, links[(st.st_dev, st.st_ino)]
        tar.addfile(info)
        return
    flags = _DIR if fmt == stat.S_IFDIR else _FILE
    try:
        fd = os.open(leaf, flags, dir_fd=dfd)
    except (FileNotFoundError, NotADirectoryError):
        return  # removed while we walked: a running container is copied as it is
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return  # swapped for a symlink while we walked: not followed
        raise
    try:
        info.pax_headers = _xattr_headers(fd)
        if fmt == stat.S_IFDIR:
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
            return
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode):
            return  # swapped since the walk saw it
        info.size = now.st_size
        with os.fdopen(os.dup(fd), "rb") as f:
            tar.addfile(info, f)
        if st.st_nlink > 1:
            links[(st.st_dev, st.st_ino)] = change.name
    finally:
        os.close(fd)


class _Outcome:
    """What the producer thread leaves: the layer's diff id, or the error that stopped it."""

    __slots__ = ("diff_id", "error")

    def __init__(self) -> None:
        self.diff_id = ""
        self.error: BaseException | None = None


class _PipeReader:
    """The read end of the producer's pipe; at EOF, the producer's error (if any) is
    raised, so a layer cut short never gets renamed into the blob store."""

    def __init__(self, fd: int, thread: threading.Thread, outcome: _Outcome) -> None:
        self.f = os.fdopen(fd, "rb")
        self.thread, self.outcome = thread, outcome

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        if not data:
            self.thread.join()
            if self.outcome.error is not None:
                raise self.outcome.error
        return data


def write_layer(changes: Iterator[Change], blobs: BlobStore) -> tuple[str, int, str]:
    """The changes as a gzip'd tar in the blob store: (digest, size, diff id)."""
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    outcome = _Outcome()

    def produce() -> None:
        try:
            with open(wfd, "wb") as raw:
                with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz:
                    hashed = _Hashing(gz)
                    # typeshed's fileobj must have read, seek, tell and close too
                    with tarfile.open(  # type: ignore[call-overload]  # "w|" calls write() only
                            fileobj=hashed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                        links: dict[tuple[int, int], str] = {}
                        for change in changes:
                            _add(tar, change, links)
            outcome.diff_id = "sha256:" + hashed.hasher.hexdigest()
        except BaseException as exc:  # noqa: BLE001 - raised again by the reader
            outcome.error = exc

    thread = threading.Thread(target=produce, name="commit-layer", daemon=True)
    thread.start()
    reader = _PipeReader(rfd, thread, outcome)
    try:
        digest, size = blobs.add(reader)
    finally:
        reader.f.close()  # a producer still writing gets EPIPE and ends
        thread.join()
    if outcome.error is not None:
        raise outcome.error
    return digest, size, outcome.diff_id


# --------------------------------------------------------------------------
# The image
# --------------------------------------------------------------------------


def disk_full(exc: BaseException) -> bool:
    """ENOSPC or EDQUOT, raised here or (as text) by a helper in the user namespace."""
    cur: BaseException | None = exc
    while cur is not None:
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(cur, RctrError) and any(
                words in cur.message.lower() for words in ("no space left on device",
                                                           "disk quota exceeded")):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _drop_unused(blobs: BlobStore, index: ImageIndex, digests: list[str]) -> None:
    """Remove what this commit stored and no image uses (another may share a blob)."""
    used: set[str | None] = set()
    for image in index.list():
        used |= {image.get("config"), image.get("manifest")}
        used |= {layer.get("digest") for layer in image.get("layers", [])}
    for digest in digests:
        if digest not in used:
            blobs.delete(digest)


def commit_image(blobs: BlobStore, index: ImageIndex, image: ImageRecord,
                 changes: Iterator[Change], *, container_id: str, created_by: str,
                 config: dict[str, Any], name: str | None = None, comment: str = "",
                 author: str = "", prepare: Prepare | None = None,
                 where: str = "") -> ImageRecord:
    """Index a new image: ``image`` + a layer of ``changes``, with ``config`` (the final
    run config) and a history entry.  Returns the image's record."""
    stored: list[str] = []
    try:
        return _commit(blobs, index, image, changes, stored, container_id, created_by, config,
                       name, comment, author, prepare)
    except BaseException as exc:
        _drop_unused(blobs, index, stored)
        if disk_full(exc):
            raise Unavailable(f"no space left on device while committing container "
                              f"{container_id[:12]}",
                              hint=f"free space in {where or os.path.dirname(blobs.layout.root)}"
                                   " (rctr image prune, rctr system prune)") from exc
        raise


def _commit(blobs: BlobStore, index: ImageIndex, image: ImageRecord, changes: Iterator[Change],
            stored: list[str], container_id: str, created_by: str, config: dict[str, Any],
            name: str | None, comment: str, author: str,
            prepare: Prepare | None) -> ImageRecord:
    parent: ImageConfig = json.loads(blobs.read(image["config"]))  # both checked on the way in
    parent_manifest: Manifest = json.loads(blobs.read(image["manifest"]))
    layers = list(parent_manifest.get("layers") or [])
    diff_ids = list(parent["rootfs"]["diff_ids"])
    first = next(changes, None)
    history: dict[str, str | bool] = {"created": _now(), "created_by": created_by}
    if first is None:
        history["empty_layer"] = True  # Docker's commit of an unchanged container
    else:
        def chained() -> Iterator[Change]:
            yield first
            yield from changes

        digest, size, diff_id = write_layer(chained(), blobs)
        stored.append(digest)
        layers.append({"mediaType": LAYER_TYPE, "digest": digest, "size": size})
        diff_ids.append(diff_id)
    history.update({k: v for k, v in (("author", author), ("comment", comment)) if v})
    new: dict[str, object] = {k: v for k, v in parent.items() if k in _PLATFORM_FIELDS}
    new.update({"created": history["created"], "config": config, "container": container_id,
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [*(parent.get("history") or []), history]})
    if author:
        new["author"] = author
    if comment:
        new["comment"] = comment
    raw = json.dumps(new, separators=(",", ":")).encode()
    config_digest = blobs.put_bytes(raw)
    stored.append(config_digest)
    manifest: Manifest = {"schemaVersion": 2, "mediaType": MEDIA_TYPES["oci_manifest"],
                "config": {"mediaType": MEDIA_TYPES["oci_config"], "digest": config_digest,
                           "size": len(raw)},
                "layers": layers}
    manifest_digest = blobs.put_bytes(json.dumps(manifest, separators=(",", ":")).encode())
    stored.append(manifest_digest)
    return _register(blobs, index, manifest_digest, manifest, [name] if name else [], prepare)
