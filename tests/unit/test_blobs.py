"""The blob store: verified on arrival, never half-visible."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from rctr.core.errors import InvalidArgument, NotFound
from rctr.storage._blobs import BlobStore, DigestMismatch
from rctr.storage._layout import StoreLayout


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_put_and_read_back(tmp_path: Path) -> None:
    store = BlobStore(StoreLayout(str(tmp_path / "s")))
    data = b"hello" * 1000
    digest = store.put_bytes(data)
    assert digest == _digest(data) and store.has(digest) and store.read(digest) == data
    assert store.put(io.BytesIO(b"ignored: already there"), digest) == store.path(digest)


def test_mismatch_and_wrong_size_leave_nothing(tmp_path: Path) -> None:
    layout = StoreLayout(str(tmp_path / "s"))
    store = BlobStore(layout)
    good = _digest(b"good")
    with pytest.raises(DigestMismatch):
        store.put(io.BytesIO(b"evil"), good)
    with pytest.raises(DigestMismatch):
        store.put(io.BytesIO(b"good"), good, size=3)
    with pytest.raises(DigestMismatch):
        store.put(io.BytesIO(b"good"), good, size=5)
    assert not store.has(good)
    assert list(Path(layout.tmp).iterdir()) == []
    with pytest.raises(NotFound):
        store.path(good)


@pytest.mark.parametrize("bad", ["sha256:abc", "md5:" + "0" * 64, "sha256:../../etc/passwd" + "0" * 40,
                                 "sha256:" + "A" * 64])
def test_digests_are_checked_before_touching_disk(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidArgument):
        BlobStore(StoreLayout(str(tmp_path))).has(bad)


def test_add_hashes_on_the_way_in(tmp_path: Path) -> None:
    layout = StoreLayout(str(tmp_path / "s"))
    store = BlobStore(layout)
    data = b"local file" * 100
    assert store.add(io.BytesIO(data)) == (_digest(data), len(data))
    assert store.add(io.BytesIO(data)) == (_digest(data), len(data))  # already there
    assert store.read(_digest(data)) == data
    assert list(Path(layout.tmp).iterdir()) == []
