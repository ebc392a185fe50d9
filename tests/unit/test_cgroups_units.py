"""core.cgroups: the OCI-to-v2 conversions and the delegation rule, on fake trees."""

from __future__ import annotations

import os

import pytest

from rctr.core import cgroups


def test_v2_files_follow_runc() -> None:
    files = cgroups.v2_files({"memory": {"limit": 64 << 20, "swap": 128 << 20, "reservation": 1 << 20},
                              "cpu": {"quota": 25000, "period": 100000, "shares": 1024},
                              "pids": {"limit": 12}})
    assert files == {"memory.max": str(64 << 20), "memory.swap.max": str(64 << 20),
                     "memory.low": str(1 << 20), "cpu.max": "25000 100000", "cpu.weight": "39",
                     "pids.max": "12"}
    assert cgroups.v2_files({"memory": {"limit": 1 << 20, "swap": -1}})["memory.swap.max"] == "max"
    assert cgroups.v2_files({"pids": {"limit": -1}}) == {"pids.max": "max"}
    assert cgroups.v2_files({}) == {}
    assert cgroups.needed_controllers({"cpu": {"shares": 2}, "pids": {"limit": 3}}) == {"cpu", "pids"}
    assert cgroups.restrict({"cpu": {}, "memory": {}}, frozenset({"cpu"})) == {"cpu": {}}


def test_host_path_refuses_to_climb() -> None:
    assert cgroups.host_path("/sys/fs/cgroup", "/a/b") == "/sys/fs/cgroup/a/b"
    with pytest.raises(ValueError):
        cgroups.host_path("/sys/fs/cgroup", "/a/../../etc")


def test_create_writes_the_files_the_kernel_made(tmp_path) -> None:
    cg = tmp_path / "c"
    cg.mkdir()
    for name in ("memory.max", "pids.max"):  # cgroupfs makes them with the directory
        (cg / name).write_text("")
    cgroups.create(str(cg), {"memory": {"limit": 4096}, "pids": {"limit": 5}})
    assert (cg / "memory.max").read_text() == "4096" and (cg / "pids.max").read_text() == "5"
    assert cgroups.usage(str(cg)) == {"memory_limit": 4096, "pids_limit": 5}
    for name in os.listdir(cg):
        os.unlink(cg / name)
    cgroups.remove(str(cg))
    assert not cg.exists()
    cgroups.remove(str(cg))  # gone already: fine
    with pytest.raises(OSError, match="pids.max"):  # no such controller: the file is named
        cgroups.create(str(cg), {"pids": {"limit": 5}})
    assert not cg.exists()


def test_unified_mount_prefers_sys_fs_cgroup(tmp_path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "30 25 0:26 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n"
        "31 25 0:27 / /sys/fs/cgroup/pids rw,relatime shared:10 - cgroup cgroup rw,pids\n")
    assert cgroups.unified_mount(str(info)) == "/sys/fs/cgroup/unified"
    info.write_text("31 25 0:27 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n")
    assert cgroups.unified_mount(str(info)) is None
