"""A container's helpers killed with SIGKILL: the shim, slirp4netns, pasta, the port
forwarder, 
Whichever dies, the container must not go on as a "running" ghost: it is stopped,
its state says what happened (``State.Error``), a restart policy brings it back
whole, ``rm -f`` cleans up, and nothing is left without an owner
(``leftovers.problems``).
"""

from __future__ import annotations

import json
import os
import signal

import psutil
import pytest
from daemonenv import IMAGE, RctrUser, ok
from leftovers import quiet_problems
from nettools import SERVE_PAGE, fetch, free_port, listening

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap"),
              pytest.mark.timeout(120)]


def shim_pid(rc: RctrUser, cid: str) -> int:
    return int(json.loads((rc.rundir / "s" / cid[:32] / "shim.pid").read_text())["pid"])


def helper_of(rc: RctrUser, cid: str, name: str) -> psutil.Process:
    """The named helper process under the container's shim."""
    shim = psutil.Process(shim_pid(rc, cid))
    names = ("pasta", "passt", "passt.avx2") if name == "pasta" else (name,)
    found = [p for p in shim.children(recursive=True) if _name_of(p) in names]
    assert len(found) == 1, f"{name} under shim {shim.pid}: {found}"
    return found[0]


def _name_of(proc: psutil.Process) -> str | None:
    """A child's name, or None for one that exited since it was listed (pasta's
    start-up leaves short-lived children under the shim)."""
    try:
        return proc.name()
    except psutil.NoSuchProcess:
        return None


def stopped_with(rc: RctrUser, name: str, words: str) -> dict:
    rc.wait_for(lambda: not rc.state(name)["Running"], timeout=20,
                what=f"{name} to be reported stopped")
    st = rc.state(name)
    assert st["Status"] == "exited" and words in st["Error"], st
    return st


def serve(rc: RctrUser, name: str, *flags: str) -> tuple[str, int]:
    port = free_port()
    cid = ok(rc.rctr("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", *flags, IMAGE,
                     "sh", "-c", SERVE_PAGE.format(name))).stdout.strip()
    assert f"page-from-{name}" in fetch(port)
    return cid, port


def removed_cleanly(rc: RctrUser, *names: str) -> None:
    ok(rc.rctr("rm", "-f", *names))
    found = quiet_problems(rc)
    assert not found, "\n".join(found)


def test_killed_shim(rc: RctrUser) -> None:
    cid, port = serve(rc, "noshim")
    try:
        init = rc.state("noshim")["Pid"]
        os.kill(shim_pid(rc, cid), signal.SIGKILL)
        stopped_with(rc, "noshim", "shim died")
        assert not listening(port)
        assert not psutil.pid_exists(init) or psutil.Process(init).status() == psutil.STATUS_ZOMBIE
        assert not quiet_problems(rc)
    finally:
        removed_cleanly(rc, "noshim")


@pytest.mark.parametrize("network, helper", [("slirp4netns", "slirp4netns"),
                                             ("slirp4netns", "rctr-ports"),
                                             ("pasta", "pasta")])
def test_killed_network_helper_stops_the_container(rc: RctrUser, network: str, helper: str) -> None:
    name = f"lost-{helper}"
    cid, port = serve(rc, name, "--network", network)
    try:
        victim = helper_of(rc, cid, helper)
        victim.kill()
        st = stopped_with(rc, name, f"(pid {victim.pid}) was killed by signal 9: the container "
                          "lost its network")
        assert st["ExitCode"] == 137, st
        assert not listening(port)
        assert not quiet_problems(rc)
    finally:
        removed_cleanly(rc, name)


def test_a_restart_policy_brings_a_cut_off_container_back(rc: RctrUser) -> None:
    cid, port = serve(rc, "comeback", "--restart", "on-failure:3")
    try:
        helper_of(rc, cid, "slirp4netns").kill()
        rc.wait_for(lambda: rc.state("comeback")["Running"]
                    and ok(rc.rctr("inspect", "--format", "{{.RestartCount}}", "comeback"))
                    .stdout.strip() == "1", timeout=30, what="the restart")
        assert "page-from-comeback" in fetch(port)
        assert not quiet_problems(rc)
    finally:
        removed_cleanly(rc, "comeback")
