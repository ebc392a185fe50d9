"""Resource limits through a cgroup v2 subtree delegated to the user (issue 4).

The harness delegates a subtree the way systemd does for ``user@UID.service``
(tests/support/cgroupdelegate.py) and runs rctr inside it; rctr finds it on its
own, gives each container ``<subtree>/rctr-<id>``, and the kernel enforces the
limits.  Controllers this host keeps in cgroup v1 (memory, here) must still
produce the "not enforced" warning; without any delegation, see
test_run_flags.test_resource_limits_run_with_a_warning.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterator

import pytest

import cgroupdelegate
import harness
from daemonenv import IMAGE, RctrUser, ok

pytestmark = [pytest.mark.integration, pytest.mark.requires("userns", "newuidmap")]


@pytest.fixture(scope="module")
def delegated(test_image: str) -> Iterator[tuple[RctrUser, cgroupdelegate.Delegated]]:
    shell = harness.UserShell.create(os.environ.get("RCTR_TEST_USER", "rctr-test"))
    shell.kill_all()  # a pause process of the user's would hold the v1 hierarchies
    d = None
    try:
        d = cgroupdelegate.delegate(shell.name, shell.uid, shell.gid)
        # On a host that holds its v1 hierarchies (none could be freed), the subtree has
        # no controller: rctr must still give each container a cgroup of its own and say
        # that every limit is not enforced; the tests check the limits that can be.
        print(f"cgroups: delegated controllers {sorted(d.controllers)}")
        user = RctrUser(shell)
        user.load_image(test_image)
        yield user, d
    finally:
        shell.cleanup()
        if d is not None:
            d.undo()


def _read(directory: str, name: str) -> str:
    return Path(directory, name).read_text().strip()


def test_limits_are_enforced_in_a_cgroup_of_the_containers_own(delegated) -> None:
    rc, d = delegated
    r = ok(rc.rctr("run", "-d", "--init", "--name", "cg", "--pids-limit", "12", "--cpus", "0.25",
                   "--memory", "64m", IMAGE, "sleep", "120"))
    cid = r.stdout.strip()
    try:
        for flag, controller in (("--pids-limit", "pids"), ("--cpus", "cpu"), ("--memory", "memory")):
            assert (f"{flag} is not enforced" in r.stderr) == (controller not in d.controllers), r.stderr
        cg = d.container_dir(cid)
        assert os.path.isdir(cg), f"no cgroup {cg}"
        pids, cpu = "pids" in d.controllers, "cpu" in d.controllers
        if pids:
            assert _read(cg, "pids.max") == "12"
        if cpu:
            assert _read(cg, "cpu.max") == "25000 100000"
        if "memory" in d.controllers:
            assert _read(cg, "memory.max") == str(64 << 20)
        # The container's processes, and an exec'd one, are counted there.
        procs = [int(p) for p in _read(cg, "cgroup.procs").split()]
        cmds = [Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0] for p in procs]
        assert b"sleep" in cmds, cmds
        # The exec'd process is at the root of the container's cgroup namespace (elsewhere,
        # it would see a path climbing out of it).
        own = ok(rc.rctr("exec", "cg", "sh", "-c",
                              "grep ^0:: /proc/self/cgroup; cat /sys/fs/cgroup/pids.max "
                              "2>/dev/null || true")).stdout
        assert own == ("0::/\n12\n" if pids else "0::/\n"), own
        if pids:
            # pids.max: forks beyond 12 fail inside the container, not outside.
            forks = rc.rctr("exec", "cg", "sh", "-c",
                            "for i in $(seq 20); do sleep 30 >/dev/null 2>&1 & done; echo started",
                            timeout=30)
            assert "can't fork" in forks.stderr, forks.stderr
            assert int(_read(cg, "pids.current")) <= 12
        # update rewrites the limits of the running container.
        updated = ok(rc.rctr("update", "--pids-limit", "40", "cg"))
        if pids:
            assert _read(cg, "pids.max") == "40"
        else:
            assert "--pids-limit is not enforced" in updated.stderr, updated.stderr
        if cpu:
            # cpu.max: a busy loop is throttled at a quarter of a CPU.
            busy = rc.rctr("exec", "cg", "timeout", "1", "sh", "-c", "while :; do :; done",
                           timeout=30)
            assert busy.returncode == 143, busy  # ended by timeout's SIGTERM
            stat = dict(line.split() for line in _read(cg, "cpu.stat").splitlines())
            assert int(stat["nr_throttled"]) > 0, stat
        # stats come from the cgroup.
        status, sample = rc.api("GET", "/containers/cg/stats?stream=false")
        assert status == 200, sample
        if pids:
            assert sample["pids_stats"]["limit"] == 40, sample
            assert sample["pids_stats"]["current"] == int(_read(cg, "pids.current")) > 2, sample
        ok(rc.docker("update", "--cpus", "0.5", "cg"))
        if cpu:
            assert _read(cg, "cpu.max") == "50000 100000"
        info = json.loads(ok(rc.docker("info", "--format", "{{json .}}")).stdout)
        assert info["CgroupDriver"] == "cgroupfs" and info["PidsLimit"] is pids
    finally:
        ok(rc.rctr("rm", "-f", "cg"))
    _gone(cg)


def _gone(path: str) -> None:
    deadline = time.monotonic() + 10
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(path), f"the container's cgroup {path} outlived it"


def test_a_container_without_limits_gets_a_cgroup_too(delegated) -> None:
    rc, d = delegated
    r = ok(rc.rctr("run", "--rm", IMAGE, "sh", "-c",
                   "grep ^0:: /proc/self/cgroup; grep -c cgroup2 /proc/mounts; ls /sys/fs/cgroup"))
    lines = r.stdout.splitlines()
    assert lines[:2] == ["0::/", "1"], r.stdout  # its own cgroup namespace and cgroup2 mount
    assert "cgroup.procs" in lines, r.stdout
    assert r.stderr == "", r.stderr
    for name in os.listdir(d.directory):
        if name.startswith("rctr-"):
            _gone(os.path.join(d.directory, name))
