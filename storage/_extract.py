"""Apply one image layer (a tar stream) onto a directory, safely.

A layer comes from a registry, so every name in it is hostile until checked.
The caller runs this inside the user's user namespace (chown to mapped ids
works there) and pipes the download straight through it: the tar is read as a
stream, never seeked, and the compression is told by its magic bytes.

Why it is written the way it is:

* Nothing may be written outside ``dest``.  Names are split into components
  (absolute names and ``..`` refused) and every parent directory is reached by
  ``openat``-style walking from an ``O_PATH`` handle on ``dest`` with
  ``O_NOFOLLOW``: a symlink met on the way, made by an earlier entry of this
  layer or by a lower layer, is refused, never followed.  Leaves are created
  with ``O_EXCL``/``mkdirat``/``symlinkat``, after removing whatever was there,
  so a planted symlink is replaced, not written through.
* Symlink entries are data, but one whose relative target climbs above
  ``dest`` is refused too: nothing a real image needs, and a trap for any tool
  that later follows it from the host.  Absolute targets are fine (they name
  paths inside the container's root).
* Whiteouts come in two forms.  ``"delete"`` (the vfs driver, ``dest`` holds
  the lower layers) applies them at once; since the stream cannot be read
  twice, the entries this layer made are remembered so a whiteout or an
  opaque marker only ever removes lower content.  ``"overlay"`` (an empty
  per-layer directory for overlayfs mounted with ``userxattr``, or
  fuse-overlayfs) records them the way overlayfs reads them: a 0:0 character
  device for ``.wh.NAME``, the xattr ``user.overlay.opaque=y`` for
  ``.wh..wh..opq``.  Overlay's own xattrs in a layer are dropped: a layer may
  not forge redirects or opaque markers.
* Device nodes cannot be made in a user namespace; they are skipped and
  counted.  Owners outside the user's mapped range become ``overflow_id``
  and are reported once by the caller.
* ``chown`` clears setuid/setgid (and file capabilities), so the order per
  entry is chown, xattrs, chmod; directory mtimes are set after the whole
  layer, once their children stop changing them.
"""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from typing import IO

from rctr.core.errors import InvalidArgument, Unsupported

__all__ = ["WHITEOUT_STYLES", "LayerStats", "apply_layer", "diff_digest", "layer_limit"]

WHITEOUT_STYLES = ("overlay", "delete")

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "user.overlay.opaque"

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20
_PROGRESS_STEP = 1 << 20
# How far a layer may inflate: gzip's deflate tops out near 1032:1 and zstd's RLE blocks go
# far beyond, while real layers stay under ~20:1.  A layer of mostly zeros (the classic
# sparse /var/log/lastlog) passes up to the floor.
_MAX_RATIO = 200
_MIN_LIMIT = 1 << 30

_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LIST_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

IdOk = Callable[[int, int], bool]
Progress = Callable[[int], None]
Parts = tuple[str, ...]


class LayerStats:
    """What one layer did: entries made, regular-file bytes, owners that overflowed.

    ``devices_skipped`` counts the character and block devices left out
    (mknod is refused in a user namespace).
    """

    __slots__ = ("files", "bytes", "overflow_owners", "devices_skipped")

    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0
        self.overflow_owners: list[str] = []
        self.devices_skipped = 0

    def __repr__(self) -> str:
        return (f"LayerStats(files={self.files}, bytes={self.bytes}, "
                f"overflow_owners={len(self.overflow_owners)}, "
                f"devices_skipped={self.devices_skipped})")


# --------------------------------------------------------------------------
# The byte stream: progress, decompression, size limit
# --------------------------------------------------------------------------


class _Input:
    """The compressed input: counts bytes and reports progress every ~1 MiB."""

    def __init__(self, fileobj: IO[bytes], on_progress: Progress | None) -> None:
        self._f = fileobj
        self._on_progress = on_progress
        self._pending = b""
        self.done = 0
        self._next_report = _PROGRESS_STEP

    def peek(self, n: int) -> bytes:
        while len(self._pending) < n:
            more = self._f.read(n - len(self._pending))
            if not more:
                break
            self._pending += more
        return self._pending[:n]

    def read(self, n: int = -1) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            if n is not None and 0 <= n < len(data):
                data, self._pending = data[:n], data[n:]
        else:
            data = self._f.read(n)
        self.done += len(data)
        if self._on_progress is not None and self.done >= self._next_report:
            self._on_progress(self.done)
            self._next_report = (self.done // _PROGRESS_STEP + 1) * _PROGRESS_STEP
        return data

    def finish(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.done)


class _Limited:
    """The decompressed tar stream: caps its size and turns codec errors into ours."""

    def __init__(self, read: Callable[[int], bytes], max_bytes: int | None) -> None:
        self._read = read
        self._max = max_bytes
        self.total = 0

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._read(n)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise InvalidArgument(f"truncated layer: {exc}",
                                  hint="the download was cut short or the blob is corrupt"
                                  ) from exc
        except Exception as exc:
            if type(exc).__name__ == "ZstdError":
                raise InvalidArgument(f"truncated layer: {exc}",
                                      hint="the download was cut short or the blob is corrupt"
                                      ) from exc
            raise
        self.total += len(data)
        if self._max is not None and self.total > self._max:
            raise _too_large(self._max)
        return data


def _too_large(max_bytes: int) -> InvalidArgument:
    return InvalidArgument(f"layer larger than {max_bytes} bytes",
                           hint="refusing a possible decompression bomb; raise the size limit "
                                "if the image is genuine")


def layer_limit(compressed_size: int) -> int:
    """The most a layer blob of ``compressed_size`` bytes may decompress to."""
    return max(_MIN_LIMIT, compressed_size * _MAX_RATIO)


def diff_digest(fileobj: IO[bytes], max_bytes: int | None) -> str:
    """The sha256 of the tar inside a layer blob (its diff id), reading no more than
    ``max_bytes`` of it: a decompression bomb is refused without a byte written."""
    import hashlib

    stream = _Limited(_decompressed(_Input(fileobj, None)), max_bytes)
    hasher = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def _decompressed(raw: _Input) -> Callable[[int], bytes]:
    """The reader of the tar inside ``raw``: plain, gzip or zstd, told by magic."""
    magic = raw.peek(4)
    if magic.startswith(_GZIP_MAGIC):
        # typeshed's fileobj must have seek() too, which GzipFile calls only to rewind
        gz: gzip.GzipFile = gzip.GzipFile(  # type: ignore[call-overload]  # read() suffices
            fileobj=raw, mode="rb")
        return gz.read
    if magic == _ZSTD_MAGIC:
        try:
            import zstandard
        except ImportError:
            raise Unsupported("zstd-compressed layer, and the zstandard module is missing",
                              hint="pip install zstandard") from None
        reader = zstandard.ZstdDecompressor().stream_reader(
            raw,  # type: ignore[arg-type]  # it calls read() only; its stub says IO[bytes]
            read_across_frames=True)
        return reader.read
    return raw.read


# --------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------


def _split(name: str, entry: str, what: str = "name") -> Parts:
    """Components of an archive path; absolute paths and ``..`` are refused."""
    if name.startswith("/"):
        raise InvalidArgument(f"layer entry {entry!r}: absolute {what}",
                              hint="the layer is malformed or hostile")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise InvalidArgument(f"layer entry {entry!r}: '..' in {what}",
                              hint="the layer is malformed or hostile")
    return parts


def _check_symlink_target(parent: Parts, target: str, entry: str) -> None:
    """Refuse a relative symlink that climbs above the root from where it sits."""
    if target.startswith("/"):
        return
    depth = len(parent)
    for comp in target.split("/"):
        if comp in ("", "."):
            continue
        depth = depth - 1 if comp == ".." else depth + 1
        if depth < 0:
            raise InvalidArgument(f"layer entry {entry!r}: symlink target {target!r} "
                                  "leaves the root", hint="the layer is malformed or hostile")


def _mtime_ns(member: tarfile.TarInfo) -> int:
    text = member.pax_headers.get("mtime")
    if text is not None:
        try:
            return int(Decimal(text) * 1_000_000_000)
        except InvalidOperation:
            pass
    return int(member.mtime) * 1_000_000_000


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(name: str, dir_fd: int) -> None:
    st = _lstat(name, dir_fd)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


# --------------------------------------------------------------------------
# The applier
# --------------------------------------------------------------------------


class _Applier:
    def __init__(self, dest: str, whiteouts: str, max_bytes: int | None, id_ok: IdOk | None,
                 overflow_id: int) -> None:
        self.root = os.open(dest, _PATH_DIR)
        self.overlay = whiteouts == "overlay"
        self.max_bytes = max_bytes
        self.id_ok = id_ok
        self.overflow_id = overflow_id
        self.stats = LayerStats()
        self.mine: set[Parts] = set()        # entries this layer made
        self.ancestors: set[Parts] = set()   # their parent directories
        self.devices: set[Parts] = set()     # skipped device nodes (hardlinks to them skip too)
        self.wh_nodes: set[Parts] = set()    # overlay whiteout devices this layer made
        self.dirs: list[tuple[Parts, int, str]] = []

    def close(self) -> None:
        os.close(self.root)

    # -- walking ----------------------------------------------------------

    def open_dir(self, parts: Parts, entry: str, *, create: bool) -> int | None:
        """An O_PATH fd on directory ``parts``; None when missing and not ``create``.

        A symlink (or a non-directory) on the way is refused, never followed;
        missing directories are made 0755 when ``create``.
        """
        fd = os.dup(self.root)
        try:
            for comp in parts:
                st = _lstat(comp, fd)
                if st is None:
                    if not create:
                        os.close(fd)
                        return None
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    os.chmod(comp, 0o755, dir_fd=fd)  # just made, not a symlink; no umask
                elif stat.S_ISLNK(st.st_mode):
                    raise InvalidArgument(
                        f"layer entry {entry!r}: path component {comp!r} is a symlink",
                        hint="the layer writes through a symlink; refusing to follow it")
                elif not stat.S_ISDIR(st.st_mode):
                    if not create:
                        os.close(fd)
                        return None
                    raise InvalidArgument(
                        f"layer entry {entry!r}: path component {comp!r} is not a directory",
                        hint="the layer is malformed")
                nfd = os.open(comp, _PATH_DIR, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _made(self, parts: Parts) -> None:
        self.mine.add(parts)
        for i in range(1, len(parts)):
            self.ancestors.add(parts[:i])

    # -- owners, modes, xattrs, times ---------------------------------------

    def chown(self, leaf: str, pfd: int, member: tarfile.TarInfo, name: str) -> None:
        uid, gid = member.uid, member.gid
        if self.id_ok is None or self.id_ok(uid, gid):
            try:
                os.chown(leaf, uid, gid, dir_fd=pfd, follow_symlinks=False)
                return
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.EPERM):
                    raise
        self.stats.overflow_owners.append(f"{name} (uid {uid}, gid {gid})")
        try:
            os.chown(leaf, self.overflow_id, self.overflow_id, dir_fd=pfd,
                     follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EPERM):
                raise

    @staticmethod
    def xattrs(fd: int, member: tarfile.TarInfo) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            attr = key[len("SCHILY.xattr."):]
            if ".overlay." in attr:
                continue  # overlay's own metadata: never taken from a layer
            data = value.encode("utf-8", "surrogateescape")
            try:
                os.setxattr(fd, attr, data)
            except OSError as exc:
                if attr.startswith(("security.", "trusted.")):
                    continue
                if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                    continue
                raise

    def xattrs_by_name(self, leaf: str, pfd: int, member: tarfile.TarInfo,
                       flags: int) -> None:
        if not any(k.startswith("SCHILY.xattr.") for k in member.pax_headers):
            return
        fd = os.open(leaf, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            self.xattrs(fd, member)
        finally:
            os.close(fd)

    @staticmethod
    def utime(leaf: str, pfd: int, ns: int) -> None:
        os.utime(leaf, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)

    # -- whiteouts --------------------------------------------------------

    def prune(self, parts: Parts, dfd: int) -> None:
        """Remove from directory ``parts`` everything this layer did not make."""
        lfd = os.open(".", _LIST_DIR, dir_fd=dfd)
        try:
            names = os.listdir(lfd)
        finally:
            os.close(lfd)
        for child in names:
            path = parts + (child,)
            st = _lstat(child, dfd)
            if st is None:
                continue
            if stat.S_ISDIR(st.st_mode) and (path in self.mine or path in self.ancestors):
                cfd = os.open(child, _PATH_DIR, dir_fd=dfd)
                try:
                    self.prune(path, cfd)
                finally:
                    os.close(cfd)
            elif path not in self.mine:
                _remove(child, dfd)

    def set_opaque(self, leaf: str, pfd: int) -> None:
        fd = os.open(leaf, _LIST_DIR, dir_fd=pfd)
        try:
            os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
        finally:
            os.close(fd)

    def whiteout(self, parts: Parts, name: str) -> None:
        leaf = parts[-1]
        if leaf == OPAQUE_MARKER:
            self.opaque(parts[:-1], name)
            return
        if leaf.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # aufs metadata (.wh..wh.plnk and the like): not content
        victim = leaf[len(WHITEOUT_PREFIX):]
        if victim in ("", ".", ".."):
            raise InvalidArgument(f"layer entry {name!r}: invalid whiteout",
                                  hint="the layer is malformed or hostile")
        path = parts[:-1] + (victim,)
        pfd = self.open_dir(parts[:-1], name, create=self.overlay)
        if pfd is None:
            return
        try:
            st = _lstat(victim, pfd)
            ours = path in self.mine or path in self.ancestors
            if st is not None and ours:
                # Same-layer content under the whited-out name: the whiteout
                # hides only lower content, so the directory becomes opaque.
                if stat.S_ISDIR(st.st_mode):
                    if self.overlay:
                        self.set_opaque(victim, pfd)
                    else:
                        cfd = os.open(victim, _PATH_DIR, dir_fd=pfd)
                        try:
                            self.prune(path, cfd)
                        finally:
                            os.close(cfd)
                return
            if st is not None:
                _remove(victim, pfd)
            if self.overlay:
                os.mknod(victim, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
                self.wh_nodes.add(path)
        finally:
            os.close(pfd)

    def opaque(self, dir_parts: Parts, name: str) -> None:
        if self.overlay:
            if not dir_parts:
                fd = os.open(".", _LIST_DIR, dir_fd=self.root)
                try:
                    os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
                finally:
                    os.close(fd)
                return
            pfd = self.open_dir(dir_parts[:-1], name, create=True)
            assert pfd is not None
            try:
                leaf = dir_parts[-1]
                st = _lstat(leaf, pfd)
                if st is not None and not stat.S_ISDIR(st.st_mode):
                    raise InvalidArgument(
                        f"layer entry {name!r}: opaque marker in a non-directory",
                        hint="the layer is malformed or hostile")
                if st is None:
                    os.mkdir(leaf, 0o755, dir_fd=pfd)
                    os.chmod(leaf, 0o755, dir_fd=pfd)
                self.set_opaque(leaf, pfd)
            finally:
                os.close(pfd)
            return
        dfd = self.open_dir(dir_parts, name, create=False)
        if dfd is None:
            return
        try:
            self.prune(dir_parts, dfd)
        finally:
            os.close(dfd)

    # -- entries ------------------------------------------------------------

    def entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = member.name
        parts = _split(name, name)
        if parts and parts[-1].startswith(WHITEOUT_PREFIX):
            self.whiteout(parts, name)
            return
        if member.ischr() or member.isblk():
            self.devices.add(parts)
            self.stats.devices_skipped += 1
            return
        if not parts:
            if member.isdir():
                self.root_dir(member, name)
            return
        if member.islnk():
            target = _split(member.linkname, name, "hardlink target")
            if target in self.devices:
                self.devices.add(parts)
                self.stats.devices_skipped += 1
                return
        elif member.issym():
            _check_symlink_target(parts[:-1], member.linkname, name)
        elif not (member.isdir() or member.isreg() or member.isfifo()):
            return  # unknown type: nothing sensible to make
        if member.isreg():
            if self.max_bytes is not None and self.stats.bytes + member.size > self.max_bytes:
                raise _too_large(self.max_bytes)
        pfd = self.open_dir(parts[:-1], name, create=True)
        assert pfd is not None
        try:
            self.make(tar, member, parts, pfd)
        finally:
            os.close(pfd)

    def make(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parts: Parts,
             pfd: int) -> None:
        name, leaf = member.name, parts[-1]
        mode = member.mode & 0o7777
        if member.islnk():
            self.hardlink(member, parts, pfd)
            return
        old = _lstat(leaf, pfd)
        if member.isdir():
            if old is not None and not stat.S_ISDIR(old.st_mode):
                _remove(leaf, pfd)
                old = None
            if old is None:
                os.mkdir(leaf, 0o700, dir_fd=pfd)
            self.chown(leaf, pfd, member, name)
            self.xattrs_by_name(leaf, pfd, member, os.O_RDONLY | os.O_DIRECTORY)
            os.chmod(leaf, mode, dir_fd=pfd)  # a directory, checked above: no symlink
            if self.overlay and parts in self.wh_nodes:
                self.set_opaque(leaf, pfd)  # replaces a whiteout: hide the lower dir
            self.dirs.append((parts, _mtime_ns(member), name))
        else:
            if old is not None:
                _remove(leaf, pfd)
            if member.isreg():
                self.regular(tar, member, leaf, pfd)
            elif member.issym():
                os.symlink(member.linkname, leaf, dir_fd=pfd)
                self.chown(leaf, pfd, member, name)
            else:  # fifo
                os.mkfifo(leaf, 0o600, dir_fd=pfd)
                self.chown(leaf, pfd, member, name)
                self.xattrs_by_name(leaf, pfd, member, os.O_RDONLY | os.O_NONBLOCK)
                os.chmod(leaf, mode, dir_fd=pfd)  # just made: a fifo, not a symlink
            self.utime(leaf, pfd, _mtime_ns(member))
        self.wh_nodes.discard(parts)
        self.stats.files += 1
        self._made(parts)

    def regular(self, tar: tarfile.TarFile, member: tarfile.TarInfo, leaf: str,
                pfd: int) -> None:
        fd = os.open(leaf, _NEW_FILE, 0o600, dir_fd=pfd)
        try:
            src = tar.extractfile(member)
            if src is not None:
                with src:
                    while chunk := src.read(_CHUNK):
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view):]
            self.stats.bytes += member.size
            self.chown(leaf, pfd, member, member.name)  # before chmod: chown clears setuid
            self.xattrs(fd, member)
            os.fchmod(fd, member.mode & 0o7777)
        finally:
            os.close(fd)

    def hardlink(self, member: tarfile.TarInfo, parts: Parts, pfd: int) -> None:
        name, leaf = member.name, parts[-1]
        target = _split(member.linkname, name, "hardlink target")
        if not target:
            raise InvalidArgument(f"layer entry {name!r}: empty hardlink target",
                                  hint="the layer is malformed")
        tfd = self.open_dir(target[:-1], name, create=False)
        if tfd is None:
            raise InvalidArgument(
                f"layer entry {name!r}: hardlink target {member.linkname!r} is missing",
                hint="the layer is malformed or hostile")
        try:
            tst = _lstat(target[-1], tfd)
            if tst is None or stat.S_ISDIR(tst.st_mode):
                what = "is missing" if tst is None else "is a directory"
                raise InvalidArgument(
                    f"layer entry {name!r}: hardlink target {member.linkname!r} {what}",
                    hint="the layer is malformed or hostile")
            old = _lstat(leaf, pfd)
            if old is not None and os.path.samestat(old, tst):
                return  # already that inode
            if old is not None:
                _remove(leaf, pfd)
            os.link(target[-1], leaf, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)
        self.wh_nodes.discard(parts)
        self.stats.files += 1
        self._made(parts)

    def root_dir(self, member: tarfile.TarInfo, name: str) -> None:
        """The layer's ``./`` entry: owner and mode of ``dest`` itself."""
        self.chown(".", self.root, member, name)
        os.chmod(".", member.mode & 0o7777, dir_fd=self.root)
        self.dirs.append(((), _mtime_ns(member), name))

    def finish_dirs(self) -> None:
        """Directory mtimes, deepest first, once the layer stopped changing them."""
        for parts, ns, name in reversed(self.dirs):
            if not parts:
                self.utime(".", self.root, ns)
                continue
            try:
                pfd = self.open_dir(parts[:-1], name, create=False)
            except InvalidArgument:
                continue  # replaced later in the layer by something else
            if pfd is None:
                continue
            try:
                st = _lstat(parts[-1], pfd)
                if st is not None and stat.S_ISDIR(st.st_mode):
                    self.utime(parts[-1], pfd, ns)
            finally:
                os.close(pfd)


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members, then a check that the archive ended where a header could be read.

    tarfile ends quietly at a header cut short; a cut download must not pass
    for a complete layer.
    """
    while True:
        member = tar.next()
        if member is None:
            break
        yield member
    if tar.fileobj.tell() < tar.offset + tarfile.BLOCKSIZE:  # a stream's tell() is its pos
        raise InvalidArgument("truncated layer: the archive ends inside a header",
                              hint="the download was cut short or the blob is corrupt")


def apply_layer(
    fileobj: IO[bytes],
    dest: str,
    *,
    whiteouts: str,
    max_bytes: int | None = None,
    id_ok: IdOk | None = None,
    overflow_id: int = 65534,
    on_progress: Progress | None = None,
) -> LayerStats:
    """Apply the layer read from ``fileobj`` (tar, tar+gzip or tar+zstd) onto ``dest``.

    ``whiteouts`` is ``"delete"`` (``dest`` holds the lower layers: whiteouts
    remove) or ``"overlay"`` (``dest`` is this layer's own directory:
    whiteouts become overlayfs's char devices and opaque xattrs).
    ``max_bytes`` caps the decompressed tar stream, which bounds the file
    contents too (a regular file that would pass it is refused from its header,
    before a byte is written).  ``id_ok(uid, gid)`` says whether the owner is
    inside the user's mapped range; when it is not (or chown refuses it) the
    entry is given ``overflow_id`` and named in ``overflow_owners``.
    ``on_progress(bytes_done)`` is called every ~1 MiB of input.

    Hostile or broken input raises InvalidArgument naming the entry; what was
    applied before stays (the caller discards the directory).
    """
    if whiteouts not in WHITEOUT_STYLES:
        raise InvalidArgument(f"whiteouts must be one of {WHITEOUT_STYLES}, not {whiteouts!r}")
    raw = _Input(fileobj, on_progress)
    stream = _Limited(_decompressed(raw), max_bytes)
    applier = _Applier(dest, whiteouts, max_bytes, id_ok, overflow_id)
    try:
        try:
            with tarfile.open(  # type: ignore[call-overload]  # "r|" calls read() only, no seek()
                    fileobj=stream, mode="r|") as tar:
                for member in _members(tar):
                    applier.entry(tar, member)
            while stream.read(_CHUNK):
                pass  # the rest (zero blocks, gzip trailer): checks the CRC, counts progress
        except tarfile.TarError as exc:
            raise InvalidArgument(f"truncated layer: {exc}",
                                  hint="the download was cut short or the blob is corrupt"
                                  ) from exc
        applier.finish_dirs()
    finally:
        applier.close()
    raw.finish()
    return applier.stats
