"""daemon/_spec.py: the OCI config built from a container's record, with no container."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from rctr.core.errors import InvalidArgument
from rctr.daemon._record import Record
from rctr.daemon._spec import build_spec

FILES = {"resolv.conf": "/f/resolv.conf", "hostname": "/f/hostname", "hosts": "/f/hosts"}


@pytest.fixture
def rootfs(tmp_path: Path) -> str:
    os.makedirs(tmp_path / "etc")
    (tmp_path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "bob:x:1000:1000::/home/bob:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nwheel:x:10:bob\nstaff:x:50:\n")
    return str(tmp_path)


def spec(rootfs: str, config: dict[str, Any] | None = None, host: dict[str, Any] | None = None,
         mounts: list[dict[str, Any]] | None = None, **kw: Any) -> dict[str, Any]:
    record = Record(id="c1", name="n", path="/bin/sh", args=["-c", "true"],
                    config=config or {}, host_config=host or {})
    return build_spec(record, {"WorkingDir": "/img"}, rootfs, FILES, mounts or [], **kw)


def destinations(s: dict[str, Any]) -> list[str]:
    return [m["destination"] for m in s["mounts"]]


def test_the_process_is_the_records_as_its_user(rootfs: str) -> None:
    s = spec(rootfs, {"User": "bob", "Tty": True, "Env": ["A=1"], "Hostname": "h"},
             {"GroupAdd": ["staff", "77"], "Ulimits": [{"Name": "nproc", "Soft": 5, "Hard": 6}]})
    p = s["process"]
    assert p["args"] == ["/bin/sh", "-c", "true"] and p["terminal"] is True
    assert p["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10, 50, 77]}
    assert "HOME=/home/bob" in p["env"] and "TERM=xterm" in p["env"] and "A=1" in p["env"]
    assert p["cwd"] == "/img" and p["noNewPrivileges"] is False
    assert {"type": "RLIMIT_NPROC", "soft": 5, "hard": 6} in p["rlimits"]
    assert s["hostname"] == "h" and "domainname" not in s


def test_init_runs_the_command_under_docker_init(rootfs: str) -> None:
    s = spec(rootfs, host={"Init": True}, init_path="/usr/bin/tini")
    assert s["process"]["args"][:2] == ["/sbin/docker-init", "--"]
    assert s["mounts"][-1] == {"destination": "/sbin/docker-init", "type": "bind",
                               "source": "/usr/bin/tini", "options": ["rbind", "ro"]}
    with pytest.raises(InvalidArgument, match="no init binary"):
        spec(rootfs, host={"Init": True})


@pytest.mark.parametrize("mode, netns, network, sys_type", [
    ("none", None, {"type": "network"}, "sysfs"),
    ("bridge", "/run/netns/x", {"type": "network", "path": "/run/netns/x"}, "sysfs"),
    ("host", None, None, "bind"),
    ("container:other", None, None, "bind"),
])
def test_the_network_namespace_decides_sys(rootfs: str, mode: str, netns: str | None,
                                            network: dict[str, str] | None, sys_type: str) -> None:
    s = spec(rootfs, host={"NetworkMode": mode}, netns=netns)
    namespaces = s["linux"]["namespaces"]
    assert namespaces[:4] == [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    assert namespaces[4:] == ([network] if network else [])
    sys_mount = next(m for m in s["mounts"] if m["destination"] == "/sys")
    assert sys_mount["type"] == sys_type and "ro" in sys_mount["options"]


def test_privileged_has_every_cap_a_writable_sys_and_no_masks(rootfs: str) -> None:
    s = spec(rootfs, host={"Privileged": True})
    sys_mount = next(m for m in s["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sys_mount["options"]
    assert "CAP_SYS_ADMIN" in s["process"]["capabilities"]["bounding"]
    assert not {"maskedPaths", "readonlyPaths", "seccomp"} & set(s["linux"])
    plain = spec(rootfs)
    assert plain["linux"]["maskedPaths"] and plain["linux"]["seccomp"]


def test_the_per_container_files_go_over_the_requests_mounts(rootfs: str) -> None:
    volume = {"destination": "/etc", "type": "bind", "source": "/v", "options": ["rbind"]}
    own = {"destination": "/etc/hosts", "type": "bind", "source": "/h", "options": ["rbind"]}
    s = spec(rootfs, mounts=[volume, own])
    assert destinations(s) == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
                               "/etc", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname"]
    assert s["mounts"][-1]["source"] == "/f/hostname"


def test_a_cgroup_of_its_own_is_namespaced_and_mounted_after_sys(rootfs: str) -> None:
    s = spec(rootfs, host={"NetworkMode": "none"}, cgroups_path="/cg/c1",
             resources={"pids": {"limit": 3}})
    assert s["linux"]["namespaces"][-2:] == [{"type": "network"}, {"type": "cgroup"}]
    assert destinations(s)[5:7] == ["/sys", "/sys/fs/cgroup"]
    assert (s["linux"]["cgroupsPath"], s["linux"]["resources"]) == ("/cg/c1", {"pids": {"limit": 3}})
    assert "cgroupsPath" not in spec(rootfs)["linux"]


def test_security_opts_and_the_root(rootfs: str) -> None:
    s = spec(rootfs, {"Domainname": "example.org"},
             {"SecurityOpt": ["no-new-privileges", "seccomp=unconfined"], "ReadonlyRootfs": True,
              "ShmSize": 1000, "Sysctls": {"net.ipv4.ip_forward": "1"}})
    assert s["process"]["noNewPrivileges"] is True and "seccomp" not in s["linux"]
    assert s["root"] == {"path": rootfs, "readonly": True} and s["domainname"] == "example.org"
    assert "size=1000" in next(m for m in s["mounts"] if m["destination"] == "/dev/shm")["options"]
    assert s["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1"}
