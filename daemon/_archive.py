"""Copying files in and out of a container (``docker cp``), without trusting the container.

The container owns its rootfs: any name in it may be a symlink, and a running
container may swap a directory for one at any moment (CVE-2018-15664).  So no
path into the rootfs is ever handed to a path-walking call.  ``Tree`` walks
from an ``O_PATH`` handle on the root one component at a time with
``O_NOFOLLOW``; a symlink met on the way is read and resolved as if the root
were ``/`` (``..`` stops at the root), like runc's securejoin, but on handles,
so what was checked is what is used.  Volumes and binds are taken by
container path from the record's ``Mounts`` (the running container's own
mounts live in its mount namespace, out of the daemon's sight).

Reading (``write_tar``) walks directories by handle and never follows a
symlink: a link is archived as a link.  Nothing is loaded from the container
(no user or group names: CVE-2019-14271 was a library loaded from it).

Writing (``prepare_upload`` then ``extract``) goes through the store's
``apply_layer``, which refuses ``..``, and symlinks on the way to an entry,
and replaces rather than writes through a planted symlink.  Before it, the
upload is read once and rewritten: names checked, device nodes dropped
(mknod is refused in a user namespace), owners set to the container's root
unless ``copyUIDGID``, and entries that fall under a volume inside the
destination split off to that volume.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, cast

from rctr.core.errors import InvalidArgument, NotFound

__all__ = ["Mount", "Tree", "Entry", "Upload", "go_mode", "path_stat", "encode_stat",
           "split_request_path", "write_tar", "prepare_upload", "extract", "mapped_ids"]

_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINKS = 255
_CHUNK = 1 << 20

# Go's os.FileMode bits (the stat header is a Go struct marshalled by dockerd).
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHARDEV = 1 << 21
_GO_STICKY = 1 << 20


Parts = tuple[str, ...]


def _parts(path: str) -> Parts:
    return tuple(p for p in path.split("/") if p not in ("", "."))


def _container_path(parts: Parts) -> str:
    return "/" + "/".join(parts)


@dataclass(frozen=True)
class Mount:
    """A volume, bind or per-container file, by its place in the container."""

    destination: Parts
    source: str
    rw: bool = True

    @classmethod
    def at(cls, destination: str, source: str, rw: bool = True) -> Mount:
        return cls(_parts(destination), source, rw)


@dataclass
class Entry:
    """A resolved path: an ``O_PATH`` handle on the thing itself (a symlink stays one)."""

    fd: int
    parts: Parts
    mount: Mount | None
    st: os.stat_result = field(init=False)

    def __post_init__(self) -> None:
        self.st = os.fstat(self.fd)

    @property
    def path(self) -> str:
        return _container_path(self.parts)

    def close(self) -> None:
        os.close(self.fd)


# --------------------------------------------------------------------------
# The stat header
# --------------------------------------------------------------------------


def go_mode(mode: int) -> int:
    """A ``st_mode`` as Go's ``os.FileMode``: type bits high, permissions low."""
    out = mode & 0o777
    kind = stat.S_IFMT(mode)
    out |= {stat.S_IFDIR: _GO_DIR, stat.S_IFLNK: _GO_SYMLINK, stat.S_IFIFO: _GO_PIPE,
            stat.S_IFSOCK: _GO_SOCKET, stat.S_IFBLK: _GO_DEVICE,
            stat.S_IFCHR: _GO_DEVICE | _GO_CHARDEV}.get(kind, 0)
    if mode & stat.S_ISUID:
        out |= _GO_SETUID
    if mode & stat.S_ISGID:
        out |= _GO_SETGID
    if mode & stat.S_ISVTX:
        out |= _GO_STICKY
    return out


def _rfc3339(ns: int) -> str:
    """Go's RFC3339Nano in UTC: trailing zeros of the fraction dropped."""
    seconds, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def path_stat(name: str, st: os.stat_result, link_target: str = "") -> dict[str, object]:
    return {"name": name, "size": st.st_size, "mode": go_mode(st.st_mode),
            "mtime": _rfc3339(st.st_mtime_ns), "linkTarget": link_target}


def encode_stat(info: dict[str, object]) -> str:
    """The ``X-Docker-Container-Path-Stat`` header: standard base64 of the JSON."""
    return base64.b64encode(json.dumps(info).encode()).decode()


def split_request_path(path: str) -> tuple[str, str, bool]:
    """(clean container path, archive name, follow the last symlink) for a request's ``path``.

    As dockerd: the path is cleaned lexically; a trailing ``/`` or ``/.``
    means the directory itself (its last symlink followed); the name is Go's
    ``filepath.Base`` of the path as asked ("/" for the root, "." for ``dir/.``).
    """
    if not path:
        raise InvalidArgument("the path parameter is required")
    clean = os.path.normpath("/" + path)
    if clean.startswith("//"):
        clean = clean[1:]
    contents = path.endswith("/.") or path == "."
    follow = path.endswith("/") or contents
    if contents:
        name = "."
    elif clean == "/":
        name = "/"
    else:
        name = clean.rsplit("/", 1)[1]
    return clean, name, follow


# --------------------------------------------------------------------------
# Walking the container's tree by handle
# --------------------------------------------------------------------------


class _Walk:
    """Where a resolve is: a handle on the current directory, and on each one above it
    that it came through (``..`` goes back to those, never above the root)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.cur, self.parts = os.dup(root), cast(Parts, ())
        self.parents: list[tuple[int, Parts]] = []

    def down(self, fd: int, comp: str) -> None:
        self.parents.append((self.cur, self.parts))
        self.cur, self.parts = fd, self.parts + (comp,)

    def up(self) -> None:
        if self.parents:
            os.close(self.cur)
            self.cur, self.parts = self.parents.pop()

    def restart(self) -> None:
        """Back at the root, for an absolute symlink."""
        self.drop_parents()
        os.close(self.cur)
        self.cur, self.parts = os.dup(self.root), cast(Parts, ())

    def drop_parents(self) -> None:
        for fd, _ in self.parents:
            os.close(fd)
        self.parents.clear()

    def close(self) -> None:
        os.close(self.cur)
        self.drop_parents()


def _read_link(fd: int, links: int, path: str) -> str:
    """The text of the symlink ``fd`` (closed), the ``links``-th met resolving ``path``."""
    try:
        target = os.readlink("", dir_fd=fd)
    finally:
        os.close(fd)
    if links > _MAX_LINKS:
        raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
    return target


class Tree:
    """The container's filesystem as the container sees it: rootfs plus mounts."""

    def __init__(self, rootfs: str, mounts: list[Mount]) -> None:
        self.root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.mounts = {m.destination: m for m in mounts}

    def close(self) -> None:
        os.close(self.root)

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def mount_of(self, parts: Parts) -> Mount | None:
        """The innermost mount holding ``parts`` (longest destination first, as dockerd)."""
        for i in range(len(parts), 0, -1):
            m = self.mounts.get(parts[:i])
            if m is not None:
                return m
        return None

    def open_child(self, dir_fd: int, parent: Parts, name: str) -> int:
        """An O_PATH handle on ``name`` in ``dir_fd``, or on a mount's source at that place."""
        m = self.mounts.get(parent + (name,))
        if m is not None:
            # The source is the user's (a volume's _data, a bind): a trusted host path.
            return os.open(m.source, os.O_PATH | os.O_CLOEXEC)
        return os.open(name, _PATH, dir_fd=dir_fd)

    def resolve(self, path: str, follow: bool = False) -> Entry:
        """The entry at container ``path``; symlinks on the way resolve inside the root.

        The last component is followed only when ``follow``.  Raises NotFound
        (or NotADirectoryError through a file); the caller closes the entry.
        """
        pending = list(reversed(_parts(path)))
        walk = _Walk(self.root)
        links = 0
        try:
            while pending:
                comp = pending.pop()
                if comp == "..":
                    walk.up()
                    continue
                try:
                    fd = self.open_child(walk.cur, walk.parts, comp)
                except FileNotFoundError:
                    raise NotFound("no such file or directory: "
                                   f"{_container_path(walk.parts + (comp,))}") from None
                st = os.fstat(fd)
                if stat.S_ISLNK(st.st_mode) and (pending or follow):
                    links += 1
                    target = _read_link(fd, links, path)
                    if target.startswith("/"):
                        walk.restart()
                    pending.extend(reversed(_parts(target)))
                    continue
                if pending and not stat.S_ISDIR(st.st_mode):
                    os.close(fd)
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory",
                                             _container_path(walk.parts + (comp,)))
                walk.down(fd, comp)
        except BaseException:
            walk.close()
            raise
        walk.drop_parents()
        return Entry(walk.cur, walk.parts, self.mount_of(walk.parts))

    def link_target(self, entry: Entry) -> str:
        """For a symlink entry, the container path it leads to (dockerd's ``linkTarget``)."""
        try:
            target = self.resolve(entry.path, follow=True)
        except (NotFound, OSError):
            # A dangling link: its text, made absolute against its directory.
            text = os.readlink("", dir_fd=entry.fd)
            return os.path.normpath(os.path.join(_container_path(entry.parts[:-1]), text))
        try:
            return target.path
        finally:
            target.close()


# --------------------------------------------------------------------------
# Reading: a tar stream of one entry
# --------------------------------------------------------------------------


class _Padded:
    """Exactly ``size`` bytes of an open file: a file that shrank is padded with zeros."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.left = fd, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = os.read(self.fd, n) if n else b""
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self.left -= len(data)
        return data


def _info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""  # no name lookups, ever: nothing is loaded for them
    info.mtime = st.st_mtime
    return info


class _TarWriter:
    def __init__(self, tree: Tree, tar: tarfile.TarFile) -> None:
        self.tree, self.tar = tree, tar
        self.inodes: dict[tuple[int, int], str] = {}

    def add(self, fd: int, parts: Parts, name: str, st: os.stat_result) -> None:
        kind = stat.S_IFMT(st.st_mode)
        info = _info(name, st)
        if kind != stat.S_IFDIR and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self.inodes.get(key)
            if first is not None:
                info.type, info.linkname = tarfile.LNKTYPE, first
                self.tar.addfile(info)
                return
            self.inodes[key] = name
        if kind == stat.S_IFREG:
            self.regular(fd, info)
        elif kind == stat.S_IFDIR:
            info.type = tarfile.DIRTYPE
            self.tar.addfile(info)
            self.children(fd, parts, name)
        elif kind == stat.S_IFLNK:
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink("", dir_fd=fd)
            self.tar.addfile(info)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO):
            info.type = {stat.S_IFCHR: tarfile.CHRTYPE, stat.S_IFBLK: tarfile.BLKTYPE,
                         stat.S_IFIFO: tarfile.FIFOTYPE}[kind]
            if kind != stat.S_IFIFO:
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.tar.addfile(info)
        # sockets are left out, as dockerd does

    def regular(self, fd: int, info: tarfile.TarInfo) -> None:
        # Reopened through the handle: the inode that was checked, not a name.
        rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(rfd)
            if not stat.S_ISREG(st.st_mode):
                return
            info.size = st.st_size
            self.tar.addfile(info, _Padded(rfd, st.st_size))
        finally:
            os.close(rfd)

    def children(self, fd: int, parts: Parts, name: str) -> None:
        lfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
        try:
            names = sorted(os.listdir(lfd))
        finally:
            os.close(lfd)
        prefix = name.rstrip("/") + "/"
        for child in names:
            try:
                cfd = self.tree.open_child(fd, parts, child)
            except FileNotFoundError:
                continue  # removed meanwhile
            try:
                self.add(cfd, parts + (child,), prefix + child, os.fstat(cfd))
            finally:
                os.close(cfd)


def write_tar(tree: Tree, entry: Entry, name: str, out: IO[bytes]) -> None:
    """Write ``entry`` (recursively, symlinks as links) to ``out`` as a tar named ``name``."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _TarWriter(tree, tar).add(entry.fd, entry.parts, name, entry.st)


# --------------------------------------------------------------------------
# Writing: an uploaded tar, checked and split, then extracted
# --------------------------------------------------------------------------


def mapped_ids(map_path: str) -> list[tuple[int, int]]:
    """The [start, end) ranges of ids valid in this user namespace (``/proc/self/uid_map``)."""
    ranges = []
    with open(map_path) as f:
        for line in f:
            fields = line.split()
            if len(fields) == 3:
                start, size = int(fields[0]), int(fields[2])
                ranges.append((start, start + size))
    return ranges


@dataclass
class Part:
    """The entries that go into one directory: the destination, or a volume under it."""

    parts: Parts            # container path of the directory
    mount: Mount | None
    fd: int                 # O_PATH handle on the directory
    spool: IO[bytes]
    tar: tarfile.TarFile


class Upload:
    """An uploaded tar, checked and rewritten into one spool per target directory.

    Owns the handles and spools: use it as a context manager.
    """

    def __init__(self, dest: Entry, mounts: list[Mount], tmpdir: str | None = None) -> None:
        self.dest = dest.parts
        self.tmpdir = tmpdir
        self.targets: dict[Parts, Part] = {}
        self.devices_skipped = 0
        self._add(dest.parts, dest.mount, os.dup(dest.fd))
        # Directory volumes below the destination take the entries under them.
        self.under = sorted((m for m in mounts if len(m.destination) > len(dest.parts)
                             and m.destination[:len(dest.parts)] == dest.parts
                             and os.path.isdir(m.source)),
                            key=lambda m: -len(m.destination))

    def _add(self, parts: Parts, mount: Mount | None, fd: int) -> Part:
        spool = tempfile.TemporaryFile(dir=self.tmpdir)
        tar = tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT)
        part = self.targets[parts] = Part(parts, mount, fd, spool, tar)
        return part

    def route(self, rel: Parts) -> tuple[Part, Parts]:
        """Which directory an entry lands in, and its name there."""
        full = self.dest + rel
        for m in self.under:
            n = len(m.destination)
            if full[:n] == m.destination:
                part = self.targets.get(m.destination)
                if part is None:
                    fd = os.open(m.source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                    part = self._add(m.destination, m, fd)
                return part, full[n:]
        return self.targets[self.dest], rel

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc: object) -> None:
        for part in self.targets.values():
            os.close(part.fd)
            part.spool.close()


def _name(raw: str, what: str) -> Parts:
    """An archive name as components; ``..`` is refused, a leading ``/`` ignored (as dockerd)."""
    parts = _parts(raw)
    if ".." in parts:
        raise InvalidArgument(f"refusing archive entry {raw!r}: its {what} leaves the "
                              "destination ('..')")
    if parts and parts[-1].startswith(".wh."):
        raise InvalidArgument(f"refusing archive entry {raw!r}: names starting with .wh. are "
                              "whiteouts in image layers and are not copied")
    return parts


def _is_dir(dir_fd: int, name: Parts) -> bool | None:
    """Whether ``name`` below ``dir_fd`` is a directory; None when missing or behind a symlink."""
    fd = os.dup(dir_fd)
    try:
        for comp in name[:-1]:
            try:
                nfd = os.open(comp, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=fd)
            except OSError:
                return None
            os.close(fd)
            fd = nfd
        try:
            st = os.stat(name[-1], dir_fd=fd, follow_symlinks=False)
        except OSError:
            return None
        return stat.S_ISDIR(st.st_mode)
    finally:
        os.close(fd)


def _check_overwrite(part: Part, name: Parts, member: tarfile.TarInfo) -> None:
    existing = _is_dir(part.fd, name)
    path = _container_path(part.parts + name)
    if existing is True and not member.isdir():
        raise InvalidArgument(f"cannot overwrite directory {path!r} with non-directory "
                              f"{member.name!r}")
    if existing is False and member.isdir():
        raise InvalidArgument(f"cannot overwrite non-directory {path!r} with directory "
                              f"{member.name!r}")


def prepare_upload(stream: IO[bytes], upload: Upload, *, copy_ids: bool,
                   no_overwrite_dir_non_dir: bool) -> None:
    """Read the uploaded tar once into ``upload``'s spools, checking every entry.

    Nothing is written to the container here: a bad entry anywhere refuses
    the whole upload.
    """
    links: set[tuple[Parts, Parts]] = set()  # symlinks this archive makes
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                rel = _name(member.name, "name")
                if not _copied(member, upload):
                    continue
                part, name = _place(upload, member, rel, links)
                if no_overwrite_dir_non_dir and name:
                    _check_overwrite(part, name, member)
                member.name = "/".join(name) or "."
                _scrub(member, copy_ids)
                src = tar.extractfile(member) if member.isreg() else None
                part.tar.addfile(member, src)
    except tarfile.TarError as exc:
        raise InvalidArgument(f"the uploaded archive is not a valid tar: {exc}") from None
    for part in upload.targets.values():
        part.tar.close()
        part.spool.seek(0)


def _copied(member: tarfile.TarInfo, upload: Upload) -> bool:
    """Whether an entry of this kind is copied; device nodes are counted and dropped."""
    if member.ischr() or member.isblk():
        upload.devices_skipped += 1
        return False
    return (member.isreg() or member.isdir() or member.issym() or member.islnk()
            or member.isfifo())


def _place(upload: Upload, member: tarfile.TarInfo, rel: Parts,
           links: set[tuple[Parts, Parts]]) -> tuple[Part, Parts]:
    """The directory the entry lands in and its name there (a hardlink's target renamed
    alike); refused when a hardlink crosses a mount or the entry goes through a symlink
    made earlier in the archive.  ``links`` keeps those symlinks up to date."""
    part, name = upload.route(rel)
    if member.islnk():
        lpart, lname = upload.route(_name(member.linkname, "hardlink target"))
        if lpart is not part:
            raise InvalidArgument(f"refusing archive entry {member.name!r}: a "
                                  "hardlink across a mount point")
        member.linkname = "/".join(lname)
    through = next((name[:i] for i in range(1, len(name))
                    if (part.parts, name[:i]) in links), None)
    if through is not None:
        raise InvalidArgument(f"refusing archive entry {member.name!r}: it goes "
                              f"through the symlink {'/'.join(through)!r} of the "
                              "same archive")
    if member.issym():
        links.add((part.parts, name))
    else:
        links.discard((part.parts, name))
    return part, name


def _scrub(member: tarfile.TarInfo, copy_ids: bool) -> None:
    """Owners to the container's root unless ``copy_ids``; no names; only user xattrs."""
    if not copy_ids:
        member.uid = member.gid = 0
    member.uname = member.gname = ""
    member.pax_headers = {k: v for k, v in member.pax_headers.items()
                          if k.startswith("SCHILY.xattr.user.")}


def extract(upload: Upload, id_ok: Callable[[int, int], bool]) -> int:
    """Apply each spool onto its directory; returns the number of entries written.

    The directory is named through its handle (``/proc/self/fd/N/.``), so a
    symlink swapped in for it since it was resolved is never followed.
    """
    from rctr.storage import apply_layer

    files = 0
    for part in upload.targets.values():
        stats = apply_layer(part.spool, f"/proc/self/fd/{part.fd}/.", whiteouts="delete",
                            id_ok=id_ok)
        files += stats.files
    return files
