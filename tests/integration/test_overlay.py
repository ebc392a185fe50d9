"""The overlay driver as the unprivileged user: a real overlayfs mount in a user namespace."""

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
from rctr.rootless._mounts import parse_options
from rctr.storage import Store
store = Store(sys.argv[1])
store.load(sys.argv[2], name="rctr-test/busybox:latest")
diffs = store.overlay.prepare(store.images.get("rctr-test/busybox"))
base = sys.argv[3]
upper, work, merged = (os.path.join(base, d) for d in ("upper", "work", "merged"))
for d in (upper, work, merged):
    os.makedirs(d, exist_ok=True)
m = store.overlay.mount_for(diffs, upper, work, merged)

def look():
    flags, _, data = parse_options(m["options"])
    linux.mount(m["source"], m["destination"], m["type"], flags, data)
    with open(os.path.join(merged, "written-in-container"), "w") as f:
        f.write("rw")
    return {"opaque": sorted(os.listdir(os.path.join(merged, "opaque"))),
            "deleted": os.path.lexists(os.path.join(merged, "deleted-later")),
            "motd": open(os.path.join(merged, "etc/motd")).read(),
            "layer3": open(os.path.join(merged, "etc/layer3")).read()}

print(json.dumps({"view": run_in_userns(look), "diffs": diffs}))
"""


def test_overlay_view_and_writes_go_to_upper(user: UserShell, test_image: str) -> None:
    root, base = user.base / "store", user.base / "ctr"
    r = user.run([sys.executable, "-c", _SCRIPT, str(root), test_image, str(base)], timeout=120)
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
