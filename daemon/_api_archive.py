"""``/containers/{id}/archive``: GET a tar of a path, HEAD its stat, PUT a tar into a directory.

A created or stopped container's rootfs is mounted for the copy and
unmounted after, unless the container started meanwhile (or another copy
still uses it).  The container's lock is held only around those decisions:
a start during a long copy is not blocked, and an unmount by an exit only
detaches the tree, which the copy's open handles keep alive.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, cast

from rctr.core.errors import InvalidArgument, NotFound

from ._archive import (Entry, Mount, Tree, Upload, encode_stat, extract, mapped_ids, path_stat,
                       prepare_upload, split_request_path, write_tar)
from ._http import ChunkedWriter, HTTPError, Request
from ._record import ZERO_TIME
from .containers import Container, Containers

if TYPE_CHECKING:
    from ._main import Daemon

__all__ = ["container_archive", "put_container_archive", "Archives"]

STAT_HEADER = "X-Docker-Container-Path-Stat"
_FLUSH = 1 << 18


def container_archive(daemon: Daemon, req: Request) -> None:
    """GET: a tar of the path; HEAD: only its stat, in the header."""
    daemon.archives.get(req, req.params["id"], req.arg("path") or "")


def put_container_archive(daemon: Daemon, req: Request) -> None:
    daemon.archives.put(req, req.params["id"], req.arg("path") or "")


def container_mounts(c: Container) -> list[Mount]:
    """Where the container sees host directories and files: volumes, binds, its /etc files."""
    mounts = [Mount.at(m["Destination"], os.path.realpath(m["Source"]), bool(m.get("RW", True)))
              for m in c.record.mounts
              if m.get("Type") in ("bind", "volume") and m.get("Source")]
    if c.state.started_at != ZERO_TIME:
        taken = {m.destination for m in mounts}
        r = c.record
        for dest, path in (("/etc/hostname", r.hostname_path), ("/etc/hosts", r.hosts_path),
                           ("/etc/resolv.conf", r.resolv_conf_path)):
            m = Mount.at(dest, path)
            if m.source and m.destination not in taken and os.path.isfile(m.source):
                mounts.append(m)
    return mounts


class _Buffered:
    """Chunks of about 256 KiB for the chunked answer (tarfile writes 10 KiB records)."""

    def __init__(self, out: ChunkedWriter) -> None:
        self.out = out
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        if len(self.buf) >= _FLUSH:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.buf:
            self.out.write(bytes(self.buf))
            self.buf.clear()


class _Body:
    """The request body as a file for tarfile."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.pending = b""
        self.broken = False

    def _next(self) -> bytes:
        try:
            return next(self.chunks, b"")
        except BaseException:
            self.broken = True
            raise

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.pending) < n:
            chunk = self._next()
            if not chunk:
                break
            self.pending += chunk
        if n < 0:
            n = len(self.pending)
        data, self.pending = self.pending[:n], self.pending[n:]
        return data

    def drain(self) -> None:
        while self._next():
            pass


class Archives:
    """The copies in and out of containers; which rootfs mounts they hold (the daemon's one)."""

    def __init__(self, containers: Containers, tmpdir: str) -> None:
        self.containers = containers
        self.tmpdir = tmpdir
        self.users: dict[str, int] = {}
        self._ids: tuple[list[tuple[int, int]], list[tuple[int, int]]] | None = None

    @contextmanager
    def tree(self, ref: str) -> Iterator[tuple[Container, Tree]]:
        """The container's tree, its rootfs mounted for as long as the block runs."""
        c = self.containers.get(ref)
        with c.lock:
            if c.removed or c.record.placeholder:
                raise NotFound(f"No such container: {ref}")
            rootfs = self.containers.mount_rootfs(c)
            self.users[c.id] = self.users.get(c.id, 0) + 1
        try:
            with Tree(rootfs, container_mounts(c)) as tree:
                yield c, tree
        finally:
            with c.lock:
                left = self.users.pop(c.id) - 1
                if left:
                    self.users[c.id] = left
                elif not (c.running() or c.starting or c.removed):
                    self.containers.unmount_rootfs(c)

    @staticmethod
    def resolve(tree: Tree, ref: str, raw: str, path: str, follow: bool) -> Entry:
        try:
            return tree.resolve(path, follow)
        except NotFound:
            raise HTTPError(404, f"Could not find the file {raw} in container {ref}") from None
        except OSError as exc:
            raise HTTPError(400, f"cannot resolve {raw} in container {ref}: {exc.strerror}") from None

    def id_ok(self, uid: int, gid: int) -> bool:
        """Whether the tar's owner exists in the user namespace (the user's subordinate ids)."""
        if self._ids is None:
            self._ids = (mapped_ids("/proc/self/uid_map"), mapped_ids("/proc/self/gid_map"))
        uids, gids = self._ids
        return any(a <= uid < b for a, b in uids) and any(a <= gid < b for a, b in gids)

    # -- GET and HEAD -----------------------------------------------------------------------

    def get(self, req: Request, ref: str, raw: str) -> None:
        try:
            path, name, follow = split_request_path(raw)
        except InvalidArgument as exc:
            raise HTTPError(400, str(exc)) from None
        with self.tree(ref) as (_c, tree):
            entry = self.resolve(tree, ref, raw, path, follow)
            try:
                if raw.endswith("/") and not stat.S_ISDIR(entry.st.st_mode):
                    raise HTTPError(400, f"{raw} in container {ref} is not a directory")
                link = tree.link_target(entry) if stat.S_ISLNK(entry.st.st_mode) else ""
                header = encode_stat(path_stat(name, entry.st, link))
                if req.method == "HEAD":
                    req.send(200, b"", content_type="application/x-tar",
                             headers={STAT_HEADER: header})
                    return
                out = req.stream("application/x-tar", {STAT_HEADER: header})
                buffered = _Buffered(out)
                write_tar(tree, entry, name, cast(IO[bytes], buffered))  # tarfile only writes
                buffered.flush()
                out.close()
            finally:
                entry.close()

    # -- PUT ----------------------------------------------------------------------------------

    def put(self, req: Request, ref: str, raw: str) -> None:
        body = _Body(req.body_stream())
        try:
            self._put(req, ref, raw, body)
        finally:
            # Read the rest (the tar may end before the body does, or an error came first),
            # so that the client finishes sending and the connection stays in step.
            try:
                body.drain()
            except Exception:  # noqa: BLE001 - a broken body: the connection cannot be reused
                pass
            if body.broken:
                req.handler.close_connection = True
            req._body = b""  # read to its end: nothing left for the server to drain
        req.send(200, b"", content_type="text/plain")

    def _put(self, req: Request, ref: str, raw: str, body: _Body) -> None:
        try:
            path, _name, _follow = split_request_path(raw)
        except InvalidArgument as exc:
            raise HTTPError(400, str(exc)) from None
        copy_ids = req.flag("copyUIDGID")
        with self.tree(ref) as (c, tree):
            # The destination's last symlink is followed too (inside the root), as dockerd.
            entry = self.resolve(tree, ref, raw, path, True)
            try:
                if not stat.S_ISDIR(entry.st.st_mode):
                    raise HTTPError(400, "extraction point is not a directory")
                with Upload(entry, list(tree.mounts.values()), self.tmpdir) as upload:
                    # tarfile reads the body through read() only
                    prepare_upload(cast(IO[bytes], body), upload, copy_ids=copy_ids,
                                   no_overwrite_dir_non_dir=req.flag("noOverwriteDirNonDir"))
                    for part in upload.targets.values():
                        if part.mount is None and c.record.host_config.get("ReadonlyRootfs"):
                            raise HTTPError(403, "container rootfs is marked read-only")
                        if part.mount is not None and not part.mount.rw:
                            raise HTTPError(403, "mounted volume is marked read-only")
                    extract(upload, self.id_ok if copy_ids else _root_only)
            finally:
                entry.close()


def _root_only(uid: int, gid: int) -> bool:
    return uid == 0 and gid == 0

