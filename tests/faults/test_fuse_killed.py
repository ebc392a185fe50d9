"""fuse-overlayfs killed under a running container: its root is gone.

The daemon notices (the mount answers ENOTCONN), stops the container and says
why in ``State.Error``; a new start mounts the root again.  A module of its own:
the check that nothing is left counts every process of the user, so no other
daemon of the user may run beside this one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from daemonenv import IMAGE, RctrUser, ok, own_user
from leftovers import quiet_problems, user_processes

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap", "fuse"),
              pytest.mark.timeout(120)]


@pytest.fixture
def fuse_rc(test_image: str) -> Iterator[RctrUser]:
    with own_user(test_image, RCTR_STORAGE_DRIVER="fuse-overlayfs") as user:
        yield user


def test_killed_fuse_overlayfs_stops_the_container(fuse_rc: RctrUser) -> None:
    rc = fuse_rc
    ok(rc.rctr("run", "-d", "--name", "nofuse", IMAGE, "sleep", "600"))
    try:
        assert rc.api("GET", "/info")[1]["Driver"] == "fuse-overlayfs"
        [mounter] = [p for p in user_processes(rc) if p.name() == "fuse-overlayfs"]
        mounter.kill()
        rc.wait_for(lambda: not rc.state("nofuse")["Running"], timeout=20,
                    what="nofuse to be reported stopped")
        st = rc.state("nofuse")
        assert "fuse-overlayfs process died" in st["Error"], st
        assert st["ExitCode"] == 137, st
        assert not quiet_problems(rc)
        ok(rc.rctr("start", "nofuse"))  # a new mount, a new fuse-overlayfs
        assert ok(rc.rctr("exec", "nofuse", "echo", "back")).stdout == "back\n"
    finally:
        ok(rc.rctr("rm", "-f", "nofuse"))
    assert not quiet_problems(rc)

