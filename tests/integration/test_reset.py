"""``rctr system reset``: everything goes, and rctr starts afresh afterwards."""

from __future__ import annotations

import os

import pytest

from daemonenv import IMAGE, RctrUser, ok

pytestmark = [pytest.mark.integration, pytest.mark.requires("userns", "newuidmap")]


def test_system_reset_removes_all_state_and_rctr_starts_afresh(user, test_image: str) -> None:
    rc = RctrUser(user)
    rc.load_image(test_image)
    ok(rc.rctr("run", "-d", "--name", "keeps-running", "-v", "data:/data", IMAGE, "sleep", "600"))
    ok(rc.rctr("create", "--name", "created", IMAGE, "true"))
    daemon = rc.daemon_pid()
    assert daemon is not None
    store = rc.data / "rctr"
    assert any(store.rglob("*"))

    r = ok(rc.rctr("system", "reset", "--force", timeout=120))
    assert r.stderr == "", r.stderr
    assert not store.exists(), sorted(str(p) for p in store.rglob("*"))[:20]
    assert not rc.rundir.exists()
    assert not os.path.exists(f"/proc/{daemon}")
    # The zygote ends by itself once its socket is gone (within a minute); a zombie holds
    # nothing (this machine's PID 1 reaps late).
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and _owner(p) == user.uid
                 and _comm(p) != "rctr-zygote" and _state(p) != "Z"]
    assert leftovers == [], [(p, _comm(p), _state(p)) for p in leftovers]

    # A fresh start: the daemon, the namespace and the store come back on first use.
    rc.load_image(test_image)
    assert ok(rc.rctr("run", "--rm", IMAGE, "echo", "again")).stdout == "again\n"
    assert ok(rc.rctr("ps", "-aq")).stdout == ""
    assert ok(rc.rctr("volume", "ls", "-q")).stdout == ""


def _owner(pid: str) -> int:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return -1


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _state(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""
