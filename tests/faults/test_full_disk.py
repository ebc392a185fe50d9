"""A full disk: the user's data directory on a small filesystem that the test makes
as root (a 64 MiB tmpfs) and hands to the user.

A container's log fills it; then a pull, a new container and a commit must each
fail with an error that says the disk is full, the store must stay consistent
(no image half-indexed, nothing in its tmp/), the daemon must live on, and once
the logging container is removed everything works again.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest
from daemonenv import IMAGE, RctrUser, ok
from harness import UserShell
from leftovers import quiet_problems
from registry import Registry, push_oci_layout

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap"),
              pytest.mark.timeout(300)]

SIZE = "64m"
FLOOD = "x=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef; " \
        "while true; do echo $x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x; done"


@pytest.fixture
def small(test_image: str) -> Iterator[RctrUser]:
    """The pipeline as the user, with its data directory on a 64 MiB tmpfs."""
    shell = UserShell.create(os.environ.get("RCTR_TEST_USER", "rctr-test"))
    mounted = False
    try:
        user = RctrUser(shell)  # makes its data directory; the tmpfs goes over it
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "rctr-full",
                        str(user.data)], check=True, timeout=30)
        mounted = True
        os.chown(user.data, shell.uid, shell.gid)
        user.load_image(test_image)
        yield user
    finally:
        shell.kill_all()
        if mounted:
            subprocess.run(["umount", "-l", str(shell.base / "data")], timeout=30)
        shell.cleanup()


def free_bytes(rc: RctrUser) -> int:
    st = os.statvfs(rc.data)
    return st.f_bavail * st.f_frsize


def images(rc: RctrUser) -> list[str]:
    return sorted(ok(rc.rctr("images", "--format", "{{.Repository}}:{{.Tag}}")).stdout.split())


def refused_for_space(r: subprocess.CompletedProcess, what: str) -> None:
    print(f"full disk: {what}: {r.stderr.strip()}")
    assert r.returncode != 0, f"{what} succeeded on a full disk"
    text = r.stderr.lower()
    assert "no space left" in text or "disk is full" in text or "bytes free" in text, \
        f"{what}: {r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr


def test_full_disk(small: RctrUser, big_image: str) -> None:
    rc = small
    with Registry() as reg:
        push_oci_layout(reg.url, big_image, "full/big", "latest")
        big = f"{reg.host}/full/big:latest"
        before = images(rc)
        daemon = None
        ok(rc.rctr("run", "-d", "--name", "flood", IMAGE, "sh", "-c", FLOOD))
        ok(rc.rctr("run", "-d", "--name", "keeper", IMAGE, "sleep", "600"))
        daemon = rc.daemon_pid()
        rc.wait_for(lambda: free_bytes(rc) < (1 << 20), timeout=60, what="the disk to fill")
        time.sleep(1)

        refused_for_space(rc.rctr("pull", big, timeout=120), "pull")
        assert images(rc) == before
        refused_for_space(rc.rctr("run", "--rm", IMAGE, "true"), "run")
        refused_for_space(rc.rctr("commit", "keeper", "full/committed:latest"), "commit")
        assert images(rc) == before
        assert not os.listdir(rc.data / "rctr" / "storage" / "tmp")
        assert rc.daemon_pid() == daemon
        # The flooding container was not killed by its full log; the others run on.
        for name in ("flood", "keeper"):
            state = rc.state(name)
            assert state["Running"], (name, state)
        assert ok(rc.rctr("exec", "keeper", "echo", "alive")).stdout == "alive\n"

        ok(rc.rctr("rm", "-f", "flood"))  # its log goes with it
        assert free_bytes(rc) > 48 << 20
        ok(rc.rctr("pull", "-q", big, timeout=120))
        assert ok(rc.rctr("run", "--rm", big, "cat", "/big/hello")).stdout == "big\n"
        ok(rc.rctr("commit", "keeper", "full/committed:latest"))
        ok(rc.rctr("rm", "-f", "keeper"))
        assert not quiet_problems(rc)
        assert rc.daemon_pid() == daemon
