"""The store as the unprivileged user: load, then extract with the vfs driver in a user namespace."""

from __future__ import annotations

import os
import sys

import pytest
from harness import UserShell

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap")]

_SCRIPT = """
import sys
from rctr.storage import Store
store = Store(sys.argv[1])
[image] = store.load(sys.argv[2], name="rctr-test/busybox:latest")
print(store.vfs.prepare(store.images.get("rctr-test/busybox")))
"""


def test_vfs_layers_apply_whiteouts_and_map_owners(user: UserShell, test_image: str) -> None:
    root = user.base / "store"
    r = user.run([sys.executable, "-c", _SCRIPT, str(root), test_image], timeout=120)
    assert r.returncode == 0, r.stderr
    top = r.stdout.strip()
    assert top.startswith(str(root))
    assert not os.path.lexists(f"{top}/deleted-later")
    assert sorted(os.listdir(f"{top}/opaque")) == ["upper-c"]
    with open(f"{top}/etc/motd") as f:
        assert f.read() == "layer 2\n"
    assert os.stat(f"{top}/etc/layer3").st_ino == os.stat(f"{top}/etc/layer3-link").st_ino
    assert os.stat(f"{top}/home/user/owned-by-1000").st_uid == user.host_uid(1000)
    assert os.stat(f"{top}/var/owned-by-65534").st_uid == user.host_uid(65534)
    assert os.stat(f"{top}/bin/busybox").st_uid == user.uid
    assert os.stat(f"{top}/bin/setuid-marker").st_mode & 0o4000
    # A second prepare extracts nothing: the layers are shared by chain id.
    before = {p: os.stat(os.path.join(root, "layers", "vfs", p)).st_ino
              for p in os.listdir(os.path.join(root, "layers", "vfs"))}
    r = user.run([sys.executable, "-c", _SCRIPT, str(root), test_image], timeout=120)
    assert r.returncode == 0, r.stderr
    after = {p: os.stat(os.path.join(root, "layers", "vfs", p)).st_ino
             for p in os.listdir(os.path.join(root, "layers", "vfs"))}
    assert before == after and len(after) == 3


_GC_SCRIPT = """
import os, sys
from rctr.storage import Store
store = Store(sys.argv[1])
store.load(sys.argv[2], name="rctr-test/busybox:latest")
store.load(sys.argv[2], name="other/name:1")
top = store.vfs.prepare(store.images.get("rctr-test/busybox"))
# a crashed extraction: subuid-owned files under tmp/ with a dead pid
os.rename(top, os.path.join(store.layout.tmp, ".layer-crashed-999999"))
open(os.path.join(store.layout.tmp, "blob-partial-999998"), "w").close()
print(sorted(store.collect_garbage()))
print(store.remove_image("rctr-test/busybox"))
print(store.remove_image("other/name:1"))
print(store.prune())
print(sorted(os.listdir(store.layout.blobs)), os.listdir(os.path.join(store.layout.layers, "vfs")))
"""


def test_garbage_rmi_and_prune_leave_an_empty_store(user: UserShell, test_image: str) -> None:
    root = user.base / "store"
    r = user.run([sys.executable, "-c", _GC_SCRIPT, str(root), test_image], timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "['.layer-crashed-999999', 'blob-partial-999998']"
    assert lines[1] == "['Untagged: docker.io/rctr-test/busybox:latest']"
    assert lines[2].startswith("['Untagged: docker.io/other/name:1', 'Deleted: sha256:")
    assert lines[3] == "{'blobs': 5, 'layers': 2}"  # manifest, config, 3 layers; 2 layers left
    assert lines[4] == "[] []"
    assert os.listdir(root / "tmp") == []


_IMPORT = """
import gzip, io, os, sys, tarfile
from rctr.storage import Store
store = Store(sys.argv[1])
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as tar:
    data = b"imported\\n"
    info = tarfile.TarInfo("etc/imported")
    info.size = len(data)
    info.uid = info.gid = 1000
    tar.addfile(info, io.BytesIO(data))
path = os.path.join(sys.argv[1] + "-rootfs.tar.gz")
with gzip.open(path, "wb") as f:
    f.write(buf.getvalue())
image = store.import_rootfs(path, "imported/rootfs:1", cmd=["sh"])
print(store.vfs.prepare(store.images.get("imported/rootfs:1")))
"""


def test_import_a_rootfs_tarball(user: UserShell) -> None:
    r = user.run([sys.executable, "-c", _IMPORT, str(user.base / "store")], timeout=120)
    assert r.returncode == 0, r.stderr
    top = r.stdout.strip()
    with open(f"{top}/etc/imported") as f:
        assert f.read() == "imported\n"
    assert os.stat(f"{top}/etc/imported").st_uid == user.host_uid(1000)
