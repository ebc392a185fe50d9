"""Content-addressed blobs: a blob is renamed into place only after its digest checks.

A crash mid-download leaves a file under tmp/ that no one trusts; the next
start removes it.  Readers open blobs by digest and never see partial content.
"""

from __future__ import annotations

import hashlib
import os

from rctr.core.atomic import fsync_dir
from rctr.core.errors import NO_SPACE_HINT, InvalidArgument, NoSpace, NotFound

from ._layout import StoreLayout, check_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, Callable, Protocol

    class Readable(Protocol):
        """What the store copies a blob from: a file, an HTTP response, a pipe."""

        def read(self, n: int = ..., /) -> bytes: ...

__all__ = ["BlobStore", "DigestMismatch"]

_CHUNK = 1 << 20
# Left free when a blob announces its size: a pull must not fill the disk to the last
# byte.  At most this much, and at most 5% of the filesystem (a small one stays usable).
_RESERVE = 256 << 20


class DigestMismatch(InvalidArgument):
    """The content does not hash to the digest it was announced with."""


class BlobStore:
    def __init__(self, layout: StoreLayout) -> None:
        self.layout = layout

    def has(self, digest: str) -> bool:
        return os.path.exists(self.layout.blob(digest))

    def path(self, digest: str) -> str:
        path = self.layout.blob(digest)
        if not os.path.exists(path):
            raise NotFound(f"blob {digest} is not in the store")
        return path

    def open(self, digest: str) -> BinaryIO:
        return open(self.path(digest), "rb")

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def put(self, source: Readable, digest: str, size: int | None = None,
            on_progress: Callable[[int], None] | None = None) -> str:
        """Copy ``source`` in, checking size and digest; return the blob's path."""
        check_digest(digest)
        target = self.layout.blob(digest)
        if not os.path.exists(target):
            if size is not None:
                self.check_space(digest, size)
            self._store(source, digest, size, on_progress)
        elif size is not None:
            self.check_held(digest, size)
        return target

    def check_held(self, digest: str, size: int | None) -> None:
        """A blob we hold must have the size a descriptor gives it: a manifest that
        lies about it is refused even when nothing is downloaded."""
        held = os.path.getsize(self.path(digest))
        if size is not None and held != size:
            raise DigestMismatch(f"blob {digest} is {held} bytes, not the {size} its "
                                 "descriptor says")

    def check_space(self, digest: str, size: int) -> None:
        """Refuse, before a byte is written, a blob the store's filesystem cannot hold."""
        self.layout.ensure()
        st = os.statvfs(self.layout.tmp)
        free = st.f_bavail * st.f_frsize
        if size > free - min(_RESERVE, st.f_blocks * st.f_frsize // 20):
            raise NoSpace(f"no space left on device for blob {digest} ({size} bytes): the "
                          f"store's filesystem has {max(0, free)} bytes free",
                          hint=f"{NO_SPACE_HINT}; or the manifest lies about the size")

    def add(self, source: Readable) -> tuple[str, int]:
        """Store a stream whose digest is not known yet (a local file), hashing it on
        the way in, in one pass; returns (digest, size)."""
        return self._store(source, None, None, None)

    def _store(self, source: Readable, digest: str | None, size: int | None,
               on_progress: Callable[[int], None] | None) -> tuple[str, int]:
        self.layout.ensure()
        import threading

        # pid last (garbage collection reads it); the thread keeps concurrent pulls apart.
        label = digest[7:19] if digest else "new"
        tmp = os.path.join(self.layout.tmp,
                           f"blob-{label}-{threading.get_ident()}-{os.getpid()}")
        hasher = hashlib.sha256()
        done = 0
        try:
            with open(tmp, "wb") as out:
                while chunk := source.read(_CHUNK):
                    done += len(chunk)
                    if size is not None and done > size:
                        raise DigestMismatch(f"blob {digest} is larger than its {size} bytes")
                    hasher.update(chunk)
                    out.write(chunk)
                    if on_progress:
                        on_progress(done)
                out.flush()
                os.fsync(out.fileno())
            if size is not None and done != size:
                raise DigestMismatch(f"blob {digest}: got {done} bytes, expected {size}")
            actual = "sha256:" + hasher.hexdigest()
            if digest is not None and actual != digest:
                raise DigestMismatch(f"blob content hashes to {actual}, not {digest}")
            target = self.layout.blob(actual)
            if os.path.exists(target):  # add() of content we hold already
                os.unlink(tmp)
            else:
                os.chmod(tmp, 0o600)
                os.rename(tmp, target)
                fsync_dir(self.layout.blobs)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return actual, done

    def put_bytes(self, data: bytes, digest: str | None = None) -> str:
        """Store ``data``; with no digest given, its own digest. Returns the digest."""
        import io

        if digest is None:
            return self.add(io.BytesIO(data))[0]
        self.put(io.BytesIO(data), digest, len(data))
        return digest

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.layout.blob(digest))
        except FileNotFoundError:
            pass
