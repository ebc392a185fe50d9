"""One conformance suite for every storage driver, as the unprivileged user.

A container's RW layer over the test image, mounted for real inside the
user's namespaces: layer 2's file shows, the whiteout and the opaque
directory's old content are hidden, owners map back, and a write lands in
the container's own layer only.
"""

from __future__ import annotations

import json
import os
import sys

import caps
import pytest
from harness import UserShell

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap")]

_SCRIPT = """
import json, os, sys
from rctr.core import linux
from rctr.core.userns import run_in_userns
from rctr.storage import Store, perform_mount
store = Store(sys.argv[1])
store.load(sys.argv[2], name="rctr-test/busybox:latest")
image = store.images.get("rctr-test/busybox")
mount = store.rw.create("c1", image, sys.argv[3])
merged = mount["destination"]

def read(path):
    with open(os.path.join(merged, path)) as f:
        return f.read()

def look():
    perform_mount(mount)
    try:
        with open(os.path.join(merged, "written-by-c1"), "w") as f:
            f.write("rw")
        return {"opaque": sorted(os.listdir(os.path.join(merged, "opaque"))),
                "deleted": os.path.lexists(os.path.join(merged, "deleted-later")),
                "motd": read("etc/motd"), "layer3": read("etc/layer3"),
                "owner": os.stat(os.path.join(merged, "home/user/owned-by-1000")).st_uid}
    finally:
        linux.umount(merged, linux.MNT_DETACH)

print(json.dumps(run_in_userns(look)))
"""


@pytest.mark.parametrize("driver", ["vfs", "overlay", "fuse-overlayfs", "fusepy"])
def test_rw_layer_conformance(user: UserShell, test_image: str, driver: str) -> None:
    needs = {"fuse-overlayfs": ["fuse"], "fusepy": ["fuse", "libfuse2"]}.get(driver, [])
    for capability in needs:
        if not caps.has(capability):
            pytest.fail(f"{driver} cannot run here: {caps.why_missing(capability)}")
    root = user.base / "store"
    r = user.run([sys.executable, "-c", _SCRIPT, str(root), test_image, driver], timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"opaque": ["upper-c"], "deleted": False, "motd": "layer 2\n",
                                    "layer3": "3\n", "owner": 1000}
    container = root / "containers" / "c1"
    rw = container / ("rootfs" if driver == "vfs" else "upper")
    assert (rw / "written-by-c1").read_text() == "rw"
    for dirpath, _, files in os.walk(root / "layers"):
        assert "written-by-c1" not in files, dirpath
    r = user.run([sys.executable, "-c",
                  "import sys\nfrom rctr.storage import Store\nStore(sys.argv[1]).rw.remove('c1')",
                  str(root)], timeout=60)
    assert r.returncode == 0, r.stderr
    assert not container.exists()


def test_driver_is_probed_once_and_remembered(user: UserShell) -> None:
    root = user.base / "store"
    script = "import sys\nfrom rctr.storage import Store\nprint(Store(sys.argv[1]).driver())"
    r = user.run([sys.executable, "-c", script, str(root)], timeout=120)
    assert r.returncode == 0, r.stderr
    # this kernel (>= 5.11) mounts overlayfs in a user namespace: the fastest wins
    assert r.stdout.strip() == "overlay"
    assert (root / "driver").read_text() == "overlay\n"
    (root / "driver").write_text("vfs\n")
    assert user.run([sys.executable, "-c", script, str(root)]).stdout.strip() == "vfs"
    r = user.run([sys.executable, "-c", script, str(root)],
                 env=user.env(RCTR_STORAGE_DRIVER="fuse-overlayfs"))
    assert r.stdout.strip() == "fuse-overlayfs"
    r = user.run([sys.executable, "-c", script, str(root)], env=user.env(RCTR_STORAGE_DRIVER="zfs"))
    assert r.returncode != 0 and "unknown storage driver 'zfs'" in r.stderr
    assert os.listdir(root / "tmp") == []
