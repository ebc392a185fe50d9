"""The fusepy driver: an overlay filesystem in Python, for hosts with nothing better.

Where neither kernel overlayfs in a user namespace nor the fuse-overlayfs
program works (old kernels, clusters where the user can only pip install),
this module serves the overlay driver's layers (``layers/overlay``, the same
on-disk form) through FUSE with fusepy.  It needs libfuse 2 (``libfuse.so.2``,
Debian's ``libfuse2``), which fusepy loads.

The mount is a process: ``perform_mount`` runs

    python -m rctr.storage._fusepy -o lowerdir=TOP:...:BOTTOM,upperdir=U,workdir=W MOUNTPOINT

inside the user's user and mount namespace, as root there.  libfuse mounts
``/dev/fuse`` itself (root of the namespace may), then daemonizes: the command
returns once the mount is up, and the daemon exits when the mount goes away
(``umount2(MNT_DETACH)`` aborts the connection).

The semantics are overlayfs's, with ``userxattr``:

* lookup: the first layer from the top (upper, then the lowers top to bottom)
  that has the name wins; a 0:0 character device (whiteout) at the name in a
  higher layer hides it; a directory marked ``user.overlay.opaque=y`` stops
  the merge below it.  Every component is looked up this way, in each layer
  only under directories that really are directories there, so a symlink in
  one layer is never followed on the host.
* readdir merges the same way.
* writes copy the file (and its parents) up into the upper directory first:
  data, owner, xattrs, mode, times, through a temporary file in the work
  directory renamed into place.  Removing a name that a lower layer still
  shows leaves a whiteout; a directory made over a whiteout is opaque.
* an open file that is unlinked lives on under libfuse's ``.fuse_hidden*``
  name in the upper directory until its last close or the unmount (not listed,
  and removed with its directory); one left by a killed filesystem process stays.
* renaming a directory that lower layers contribute to fails with EXDEV
  (overlayfs without ``redirect_dir`` does the same; ``mv`` copies instead).

The filesystem is mounted with ``default_permissions`` (the kernel checks
modes) and ``allow_other``: without it the kernel lets only processes whose
uids and gids all equal the mounter's (root of the namespace) in, so a
container user other than root could not read its own root filesystem.  The
mount is only reachable inside the user's own namespaces either way.
"""

from __future__ import annotations

import codecs
import errno
import os
import shutil
import stat
import sys
import threading
import time

__all__ = ["OverlayFS", "main"]

OPAQUE_XATTR = "user.overlay.opaque"
PRIVATE_XATTR_PREFIX = "user.overlay."
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
HIDDEN_PREFIX = ".fuse_hidden"  # libfuse's name for an open file that was unlinked
_ENCODING = "rctr-fsname"  # utf-8 with surrogateescape: any byte name round-trips


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _attrs(st: os.stat_result) -> dict[str, int]:
    return {"st_mode": st.st_mode, "st_ino": st.st_ino, "st_nlink": st.st_nlink,
            "st_uid": st.st_uid, "st_gid": st.st_gid, "st_size": st.st_size,
            "st_rdev": st.st_rdev, "st_blocks": st.st_blocks, "st_blksize": st.st_blksize,
            "st_atime": st.st_atime_ns, "st_mtime": st.st_mtime_ns, "st_ctime": st.st_ctime_ns}


Chain = list[tuple[int, os.stat_result]]


class OverlayFS:
    """fusepy operations over ``layers`` (the upper directory first, then the lowers)."""

    use_ns = True  # fusepy: times in nanoseconds
    # libfuse: an open file that was unlinked is renamed to HIDDEN_PREFIX... and removed
    # on its last close, so fstat keeps working on it; readdir leaves those names out
    # (and rmdir removes them: the open file lives on).  utimens sees UTIME_NOW/OMIT.
    flag_nullpath_ok = True
    flag_utime_omit_ok = True

    def __init__(self, upper: str, lowers: list[str], work: str) -> None:
        self.layers = [os.path.abspath(upper)] + [os.path.abspath(d) for d in lowers]
        self.work = os.path.abspath(work)
        self._lock = threading.RLock()  # every change of the upper directory
        self._seq = 0
        self._hidden: set[str] = set()  # libfuse's hidden names, removed at the latest on exit

    # -- fusepy's dispatch ---------------------------------------------------

    def __call__(self, op: str, *args: object) -> object:
        return getattr(self, op)(*args)

    # -- lookup --------------------------------------------------------------

    def _opaque(self, i: int, rel: str) -> bool:
        if i == len(self.layers) - 1:
            return False  # nothing below to hide
        try:
            return os.getxattr(self._p(i, rel), OPAQUE_XATTR, follow_symlinks=False) == b"y"
        except OSError:
            return False

    def _p(self, i: int, rel: str) -> str:
        return os.path.join(self.layers[i], rel) if rel else self.layers[i]

    @staticmethod
    def _rel(path: str) -> str:
        return path.strip("/")

    def _root_chain(self) -> Chain:
        chain: Chain = []
        for i in range(len(self.layers)):
            chain.append((i, os.lstat(self.layers[i])))
            if self._opaque(i, ""):
                break
        return chain

    def _step(self, chain: Chain, rel: str) -> Chain:
        """The layers showing ``rel`` given the chain of its parent directory."""
        found: Chain = []
        for i, _ in chain:
            try:
                st = os.lstat(self._p(i, rel))
            except (FileNotFoundError, NotADirectoryError):
                continue
            if _is_whiteout(st):
                break
            is_dir = stat.S_ISDIR(st.st_mode)
            if found and not is_dir:
                break  # a non-directory below a directory is hidden, and so is all below it
            found.append((i, st))
            if not is_dir or self._opaque(i, rel):
                break
        return found

    def _resolve(self, path: str) -> Chain:
        """The layers that show ``path``, the winner first; more than one only
        for a directory merged from several layers.  Empty if it does not exist."""
        chain = self._root_chain()
        rel = ""
        for name in self._rel(path).split("/"):
            if not name:
                continue
            if not chain or not stat.S_ISDIR(chain[0][1].st_mode):
                return []
            rel = os.path.join(rel, name) if rel else name
            chain = self._step(chain, rel)
        return chain

    def _top(self, path: str) -> tuple[int, os.stat_result, str]:
        chain = self._resolve(path)
        if not chain:
            raise _err(errno.ENOENT)
        i, st = chain[0]
        return i, st, self._p(i, self._rel(path))

    def _names(self, chain: Chain, rel: str) -> list[str]:
        names: list[str] = []
        seen: set[str] = set()
        for i, _ in chain:
            with os.scandir(self._p(i, rel)) as it:
                for e in it:
                    if e.name in seen or e.name.startswith(HIDDEN_PREFIX):
                        continue
                    seen.add(e.name)
                    if not (e.is_dir(follow_symlinks=False) or e.is_file(follow_symlinks=False)
                            or e.is_symlink()) and _is_whiteout(e.stat(follow_symlinks=False)):
                        continue
                    names.append(e.name)
        return names

    # -- copy-up ------------------------------------------------------------

    def _tmp(self) -> str:
        self._seq += 1
        return os.path.join(self.work, f".fusepy-{os.getpid()}-{self._seq}")

    @staticmethod
    def _copy_xattrs(src: str, dst: str) -> None:
        try:
            names = os.listxattr(src, follow_symlinks=False)
        except OSError:
            return
        for name in names:
            if name.startswith(PRIVATE_XATTR_PREFIX):
                continue  # overlay's own markers describe the layer, not the file
            try:
                os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False),
                            follow_symlinks=False)
            except OSError:
                pass

    def _copy_meta(self, src: str, dst: str, st: os.stat_result) -> None:
        # chown clears setuid/setgid and file capabilities: chown, xattrs, chmod, times.
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
        self._copy_xattrs(src, dst)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(dst, stat.S_IMODE(st.st_mode))
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def _copy_up_parents(self, path: str) -> None:
        parts = [p for p in self._rel(path).split("/") if p][:-1]
        rel = ""
        for name in parts:
            rel = os.path.join(rel, name) if rel else name
            try:
                if stat.S_ISDIR(os.lstat(self._p(0, rel)).st_mode):
                    continue
            except FileNotFoundError:
                pass
            self._copy_up(rel)

    def _copy_up(self, path: str) -> str:
        """Make ``path`` exist in the upper directory; return its path there."""
        with self._lock:
            i, st, src = self._top(path)
            rel = self._rel(path)
            dst = self._p(0, rel)
            if i == 0:
                return dst
            self._copy_up_parents(path)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                os.mkdir(dst, 0o700)
                self._copy_meta(src, dst, st)
                return dst
            tmp = self._tmp()
            try:
                if stat.S_ISREG(mode):
                    fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
                    try:
                        fd_out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                        try:
                            left = st.st_size
                            while left > 0:
                                n = os.sendfile(fd_out, fd_in, None, min(left, 1 << 30))
                                if n == 0:
                                    break
                                left -= n
                        finally:
                            os.close(fd_out)
                    finally:
                        os.close(fd_in)
                elif stat.S_ISLNK(mode):
                    os.symlink(os.readlink(src), tmp)
                elif stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                    os.mknod(tmp, mode)
                else:
                    raise _err(errno.EPERM)
                self._copy_meta(src, tmp, st)
                os.rename(tmp, dst)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
            return dst

    def _prepare_new(self, path: str) -> str:
        """The upper path where a new ``path`` is made: parents copied up, a whiteout removed."""
        self._copy_up_parents(path)
        dst = self._p(0, self._rel(path))
        try:
            st = os.lstat(dst)
        except FileNotFoundError:
            return dst
        if not _is_whiteout(st):
            raise _err(errno.EEXIST)
        os.unlink(dst)
        return dst

    def _owner(self, path: str) -> tuple[int, int, bool]:
        from fuse import fuse_get_context

        uid, gid, _ = fuse_get_context()
        parent = self._resolve(os.path.dirname(path.rstrip("/")) or "/")
        if parent and parent[0][1].st_mode & stat.S_ISGID:
            return uid, parent[0][1].st_gid, True
        return uid, gid, False

    def _whiteout_if_shown(self, path: str) -> None:
        """After ``path`` left the upper directory: hide what the lowers still show."""
        if self._resolve(path):
            self._copy_up_parents(path)
            os.mknod(self._p(0, self._rel(path)), stat.S_IFCHR | 0o000, 0)

    def _make_opaque_if_merged(self, path: str, dst: str) -> None:
        if len(self._resolve(path)) > 1:
            os.setxattr(dst, OPAQUE_XATTR, b"y", follow_symlinks=False)

    def destroy(self, path: str) -> None:
        """The mount is gone: no file can be open any more, so no hidden one is needed."""
        for p in self._hidden:
            try:
                os.unlink(p)
            except OSError:
                pass
        self._hidden.clear()

    # -- reading -------------------------------------------------------------

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, int]:
        if path is None:
            if fh is None:
                raise _err(errno.EBADF)
            return _attrs(os.fstat(fh))
        return _attrs(self._top(path)[1])

    def access(self, path: str, amode: int) -> int:
        self._top(path)
        return 0

    def readlink(self, path: str) -> str:
        return os.readlink(self._top(path)[2])

    def opendir(self, path: str) -> int:
        return 0

    def releasedir(self, path: str | None, fh: int) -> int:
        return 0

    def readdir(self, path: str | None, fh: int) -> list[str]:
        chain = self._resolve(path or "/")
        if not chain:
            raise _err(errno.ENOENT)
        if not stat.S_ISDIR(chain[0][1].st_mode):
            raise _err(errno.ENOTDIR)
        return [".", ".."] + self._names(chain, self._rel(path or "/"))

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self.layers[0])
        return {k: getattr(sv, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree",
                                             "f_bavail", "f_files", "f_ffree", "f_favail",
                                             "f_flag", "f_namemax")}

    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        if name.startswith(PRIVATE_XATTR_PREFIX):
            raise _err(errno.ENODATA)
        return os.getxattr(self._top(path)[2], name, follow_symlinks=False)

    def listxattr(self, path: str) -> list[str]:
        names = os.listxattr(self._top(path)[2], follow_symlinks=False)
        return [n for n in names if not n.startswith(PRIVATE_XATTR_PREFIX)]

    # -- files ---------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        flags &= ~(os.O_CREAT | os.O_EXCL | os.O_NOCTTY)
        if (flags & os.O_ACCMODE) != os.O_RDONLY or flags & os.O_TRUNC:
            with self._lock:
                return os.open(self._copy_up(path), flags | os.O_NOFOLLOW)
        return os.open(self._top(path)[2], flags | os.O_NOFOLLOW)

    def create(self, path: str, mode: int, fi: object = None) -> int:  # fi: only with raw_fi
        with self._lock:
            uid, gid, _ = self._owner(path)
            dst = self._prepare_new(path)
            fd = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         stat.S_IMODE(mode))
            try:
                os.fchown(fd, uid, gid)
                os.fchmod(fd, stat.S_IMODE(mode))
            except BaseException:
                os.close(fd)
                os.unlink(dst)
                raise
            return fd

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        return os.pwrite(fh, data, offset)

    def flush(self, path: str | None, fh: int) -> int:
        return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)
        return 0

    def release(self, path: str | None, fh: int) -> int:
        os.close(fh)
        return 0

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        if fh is not None and isinstance(fh, int):
            os.ftruncate(fh, length)
        elif path is not None:
            with self._lock:
                os.truncate(self._copy_up(path), length)
        else:
            raise _err(errno.EBADF)
        return 0

    # -- attributes ------------------------------------------------------------

    def chmod(self, path: str, mode: int) -> int:
        with self._lock:
            os.chmod(self._copy_up(path), stat.S_IMODE(mode), follow_symlinks=False)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        with self._lock:
            os.chown(self._copy_up(path), uid, gid, follow_symlinks=False)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        with self._lock:
            dst = self._copy_up(path)
            if times is None:
                os.utime(dst, follow_symlinks=False)
                return 0
            st = os.lstat(dst)
            now = time.time_ns()
            a, m = times
            a = now if a == UTIME_NOW else st.st_atime_ns if a == UTIME_OMIT else a
            m = now if m == UTIME_NOW else st.st_mtime_ns if m == UTIME_OMIT else m
            os.utime(dst, ns=(a, m), follow_symlinks=False)
        return 0

    def setxattr(self, path: str, name: str, value: bytes, options: int,
                 position: int = 0) -> int:
        if name.startswith(PRIVATE_XATTR_PREFIX):
            raise _err(errno.EPERM)
        with self._lock:
            os.setxattr(self._copy_up(path), name, value, options, follow_symlinks=False)
        return 0

    def removexattr(self, path: str, name: str) -> int:
        if name.startswith(PRIVATE_XATTR_PREFIX):
            raise _err(errno.ENODATA)
        with self._lock:
            os.getxattr(self._top(path)[2], name, follow_symlinks=False)  # ENODATA before copy-up
            os.removexattr(self._copy_up(path), name, follow_symlinks=False)
        return 0

    # -- names -----------------------------------------------------------------

    def mkdir(self, path: str, mode: int) -> int:
        with self._lock:
            uid, gid, sgid = self._owner(path)
            dst = self._prepare_new(path)
            os.mkdir(dst, 0o700)
            os.chown(dst, uid, gid)
            os.chmod(dst, stat.S_IMODE(mode) | (stat.S_ISGID if sgid else 0))
            self._make_opaque_if_merged(path, dst)
        return 0

    def symlink(self, target: str, source: str) -> int:
        """fusepy's order: the link ``target`` pointing at ``source``."""
        with self._lock:
            uid, gid, _ = self._owner(target)
            dst = self._prepare_new(target)
            os.symlink(source, dst)
            os.chown(dst, uid, gid, follow_symlinks=False)
        return 0

    def mknod(self, path: str, mode: int, dev: int) -> int:
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            raise _err(errno.EPERM)  # no devices in a user namespace; a 0:0 one is a whiteout
        with self._lock:
            uid, gid, _ = self._owner(path)
            dst = self._prepare_new(path)
            os.mknod(dst, stat.S_IFMT(mode) | 0o600, dev)
            os.chown(dst, uid, gid)
            os.chmod(dst, stat.S_IMODE(mode))
        return 0

    def link(self, target: str, source: str) -> int:
        """fusepy's order: the new name ``target`` for the existing ``source``."""
        with self._lock:
            src = self._copy_up(source)
            dst = self._prepare_new(target)
            os.link(src, dst, follow_symlinks=False)
        return 0

    def unlink(self, path: str) -> int:
        with self._lock:
            i, st, where = self._top(path)
            if stat.S_ISDIR(st.st_mode):
                raise _err(errno.EISDIR)
            if i == 0:
                os.unlink(where)
                self._hidden.discard(where)
            self._whiteout_if_shown(path)
        return 0

    def rmdir(self, path: str) -> int:
        with self._lock:
            chain = self._resolve(path)
            if not chain:
                raise _err(errno.ENOENT)
            if not stat.S_ISDIR(chain[0][1].st_mode):
                raise _err(errno.ENOTDIR)
            if self._names(chain, self._rel(path)):
                raise _err(errno.ENOTEMPTY)
            if chain[0][0] == 0:
                shutil.rmtree(self._p(0, self._rel(path)))  # at most whiteouts are left in it
            self._whiteout_if_shown(path)
        return 0

    def rename(self, old: str, new: str) -> int:
        with self._lock:
            src = self._resolve(old)
            if not src:
                raise _err(errno.ENOENT)
            if self._rel(old) == self._rel(new):
                return 0
            src_dir = stat.S_ISDIR(src[0][1].st_mode)
            if src_dir and (len(src) > 1 or src[0][0] != 0):
                raise _err(errno.EXDEV)  # lower layers contribute to it: no redirects here
            dst = self._resolve(new)
            if dst:
                dst_dir = stat.S_ISDIR(dst[0][1].st_mode)
                if src_dir and not dst_dir:
                    raise _err(errno.ENOTDIR)
                if dst_dir and not src_dir:
                    raise _err(errno.EISDIR)
                if dst_dir and self._names(dst, self._rel(new)):
                    raise _err(errno.ENOTEMPTY)
            from_path = self._copy_up(old)
            self._copy_up_parents(new)
            to_path = self._p(0, self._rel(new))
            try:
                st = os.lstat(to_path)
            except FileNotFoundError:
                pass
            else:
                if stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(to_path)  # empty in the merged view: whiteouts at most
                elif src_dir:
                    os.unlink(to_path)  # a whiteout; rename(2) puts no directory over a file
            os.rename(from_path, to_path)
            if os.path.basename(to_path).startswith(HIDDEN_PREFIX):
                self._hidden.add(to_path)
            if src_dir:
                self._make_opaque_if_merged(new, to_path)
            self._whiteout_if_shown(old)
        return 0


def _codec(name: str) -> codecs.CodecInfo | None:
    if name != _ENCODING.replace("-", "_") and name != _ENCODING:
        return None
    return codecs.CodecInfo(
        name=_ENCODING,
        encode=lambda s, errors="strict": codecs.utf_8_encode(s, "surrogateescape"),
        decode=lambda b, errors="strict": codecs.utf_8_decode(b, "surrogateescape", True))


def _parse(argv: list[str]) -> tuple[dict[str, str], str, bool, bool]:
    import argparse

    p = argparse.ArgumentParser(prog="python -m rctr.storage._fusepy",
                                description="Mount an overlay of layer directories with FUSE.")
    p.add_argument("-o", dest="options", required=True,
                   help="lowerdir=TOP:...:BOTTOM,upperdir=DIR,workdir=DIR")
    p.add_argument("-f", dest="foreground", action="store_true", help="stay in the foreground")
    p.add_argument("-d", dest="debug", action="store_true", help="libfuse's debug output")
    p.add_argument("mountpoint")
    args = p.parse_args(argv)
    opts = {}
    for item in args.options.split(","):
        key, _, value = item.partition("=")
        opts[key] = value
    for key in ("lowerdir", "upperdir", "workdir"):
        if not opts.get(key):
            p.error(f"-o needs {key}=")
    return opts, args.mountpoint, args.foreground, args.debug


def main(argv: list[str] | None = None) -> int:
    opts, mountpoint, foreground, debug = _parse(sys.argv[1:] if argv is None else argv)
    codecs.register(_codec)
    os.umask(0)
    try:
        from fuse import FUSE
    except (ImportError, OSError) as exc:
        print(f"fusepy cannot load libfuse 2: {exc}", file=sys.stderr)
        return 1
    ops = OverlayFS(opts["upperdir"], [d for d in opts["lowerdir"].split(":") if d],
                    opts["workdir"])
    for d in ops.layers + [ops.work]:
        if not os.path.isdir(d):
            print(f"not a directory: {d}", file=sys.stderr)
            return 1
    try:
        # libfuse mounts, then (unless foreground) forks; the parent returns 0 once mounted.
        FUSE(ops, os.path.abspath(mountpoint), foreground=foreground, debug=debug, nothreads=False,
             encoding=_ENCODING, fsname="fusepy", subtype="rctr", default_permissions=True,
             allow_other=True, suid=True)
    except RuntimeError as exc:
        print(f"fusepy mount failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
