"""The overlay layer form, as the unprivileged user.

The mounted view of every driver is checked by test_drivers.py; this test
checks what only the overlay-form drivers write: each layer on its own, with
overlayfs's whiteouts (0:0 character devices) and opaque markers
(``user.overlay.opaque``), shared by overlay, fuse-overlayfs and fusepy.
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
import json, sys
from rctr.storage import Store
store = Store(sys.argv[1])
store.load(sys.argv[2], name="rctr-test/busybox:latest")
image = store.images.get("rctr-test/busybox")
print(json.dumps({name: getattr(store, name).prepare(image)
                  for name in ("overlay", "fuse_overlayfs", "fusepy")}))
"""


def test_layers_keep_overlayfs_whiteout_form(user: UserShell, test_image: str) -> None:
    r = user.run([sys.executable, "-c", _SCRIPT, str(user.base / "store"), test_image],
                 timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    diffs = out["overlay"]
    assert out["fuse_overlayfs"] == out["fusepy"] == diffs, "one layer form for all three"
    assert len(diffs) == 3
    whiteout = os.stat(os.path.join(diffs[1], "deleted-later"))
    assert (whiteout.st_mode & 0o170000) == 0o020000 and whiteout.st_rdev == 0
    assert os.getxattr(os.path.join(diffs[1], "opaque"), "user.overlay.opaque") == b"y"
    # each layer holds only its own files: layer 3's file is in no lower diff
    assert os.path.exists(os.path.join(diffs[2], "etc", "layer3"))
    assert not any(os.path.exists(os.path.join(d, "etc", "layer3")) for d in diffs[:2])
