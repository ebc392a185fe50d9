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
