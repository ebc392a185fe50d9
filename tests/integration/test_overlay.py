"""The overlay drivers as the unprivileged user: real mounts in a user namespace.

One conformance test, run against every driver that mounts layers (overlay and
fuse-overlayfs share the layer form).
"""

from __future__ import annotations

import json
import os
import sys

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
driver = getattr(store, sys.argv[4])
diffs = driver.prepare(store.images.get("rctr-test/busybox"))
base = sys.argv[3]
upper, work, merged = (os.path.join(base, d) for d in ("upper", "work", "merged"))
for d in (upper, work, merged):
    os.makedirs(d, exist_ok=True)
m = driver.mount_for(diffs, upper, work, merged)

def read(path):
    with open(os.path.join(merged, path)) as f:
        return f.read()

def look():
    perform_mount(m)
    try:
        with open(os.path.join(merged, "written-in-container"), "w") as f:
            f.write("rw")
        return {"opaque": sorted(os.listdir(os.path.join(merged, "opaque"))),
                "deleted": os.path.lexists(os.path.join(merged, "deleted-later")),
                "motd": read("etc/motd"), "layer3": read("etc/layer3")}
    finally:
        linux.umount(merged, linux.MNT_DETACH)

print(json.dumps({"view": run_in_userns(look), "diffs": diffs}))
"""


@pytest.mark.parametrize("driver", ["overlay", "fuse_overlayfs"])
def test_view_and_writes_go_to_upper(user: UserShell, test_image: str, driver: str) -> None:
    if driver == "fuse_overlayfs" and not __import__("caps").has("fuse"):
        pytest.fail(f"fuse-overlayfs cannot run here: {__import__('caps').why_missing('fuse')}")
    root, base = user.base / "store", user.base / "ctr"
    r = user.run([sys.executable, "-c", _SCRIPT, str(root), test_image, str(base), driver],
                 timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    view = out["view"]
    assert view == {"opaque": ["upper-c"], "deleted": False, "motd": "layer 2\n", "layer3": "3\n"}
    # the write landed in the upper directory only, never in a shared layer
    assert (base / "upper" / "written-in-container").read_text() == "rw"
    assert not any(os.path.exists(os.path.join(d, "written-in-container")) for d in out["diffs"])
    # the layer kept overlayfs's own whiteout form
    whiteout = os.stat(os.path.join(out["diffs"][1], "deleted-later"))
    assert (whiteout.st_mode & 0o170000) == 0o020000 and whiteout.st_rdev == 0
    assert os.getxattr(os.path.join(out["diffs"][1], "opaque"), "user.overlay.opaque") == b"y"
