"""core.doctor's decisions, fed host facts (file contents, stat results, trial outcomes);
the page docs/troubleshooting.md kept in step with the check names."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from rctr.cli._cmd_doctor import format_checks
from rctr.core import doctor
from rctr.core.cgroups import Delegation
from rctr.core.doctor import FAIL, OK, WARN, Check
from rctr.core.subid import subid_ranges

REPO = Path(__file__).resolve().parents[2]


def _stat(mode: int, uid: int) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 1, uid, uid, 0, 0, 0, 0))


def _caps(*bits: int, version: int = 0x02000000) -> bytes:
    """A ``security.capability`` value (vfs_cap_data, revision 2) with ``bits`` permitted."""
    mask = sum(1 << b for b in bits)
    return b"".join(x.to_bytes(4, "little") for x in
                    (version | 1, mask & 0xFFFFFFFF, 0, mask >> 32, 0))


# -- newuidmap / newgidmap ----------------------------------------------------------------


def test_helper_missing_fails_with_the_package() -> None:
    c = doctor.check_helper("newuidmap", None)
    assert (c.name, c.status, c.fix) == ("newuidmap", FAIL, "sudo apt install uidmap")


def test_helper_setuid_root_is_ok() -> None:
    c = doctor.check_helper("newuidmap", "/usr/bin/newuidmap", stat.S_IFREG | 0o4755, 0)
    assert c.status == OK and "setuid root" in c.detail and not c.fix


def test_helper_with_the_right_file_capability_is_ok() -> None:
    # Fedora ships newuidmap as cap_setuid=ep, newgidmap as cap_setgid=ep.
    assert doctor.file_caps(_caps(7)) == {"CAP_SETUID"}
    c = doctor.check_helper("newgidmap", "/usr/bin/newgidmap", stat.S_IFREG | 0o755, 0,
                            doctor.file_caps(_caps(6)))
    assert c.status == OK and "cap_setgid" in c.detail


def test_helper_with_the_wrong_capability_or_owner_fails() -> None:
    c = doctor.check_helper("newgidmap", "/usr/bin/newgidmap", stat.S_IFREG | 0o755, 0,
                            doctor.file_caps(_caps(7)))
    assert c.status == FAIL and "chmod u+s /usr/bin/newgidmap" in c.fix
    c = doctor.check_helper("newuidmap", "/opt/newuidmap", stat.S_IFREG | 0o4755, 1000)
    assert c.status == FAIL


def test_file_caps_reads_v1_v3_and_high_bits() -> None:
    assert doctor.file_caps(None) == set() and doctor.file_caps(b"\x00" * 4) == set()
    assert doctor.file_caps(_caps(7)[:12]) == {"CAP_SETUID"}  # revision 1: one word
    assert doctor.file_caps(_caps(7, 38, version=0x03000000) + b"\0\0\0\0") == {
        "CAP_SETUID", "CAP_PERFMON"}


# -- subuid / subgid ----------------------------------------------------------------------


def test_free_range_skips_every_taken_range() -> None:
    assert doctor.free_range([]) == (100000, 165535)
    taken = [(200000, 65536), (100000, 65536), (265536, 65536), (500000, 10)]
    assert doctor.free_range(taken) == (331072, 396607)
    assert doctor.free_range([(0, 10)]) == (100000, 165535)


def test_subids_from_the_files(tmp_path: Path) -> None:
    uid = os.getuid()
    subuid = tmp_path / "subuid"
    subuid.write_text(f"other:100000:65536\n{uid}:165536:65536\n{uid}:300000:1000\nbad line\n")
    ranges = subid_ranges(str(subuid), uid)
    taken = doctor.all_ranges(str(subuid))
    assert taken == [(100000, 65536), (165536, 65536), (300000, 1000)]
    c = doctor.check_subids("uid", "alice", ranges, taken)
    assert c.status == OK and "165536-231071, 300000-300999" in c.detail

    empty = tmp_path / "subgid"
    empty.write_text("other:100000:65536\n")
    c = doctor.check_subids("gid", "alice", subid_ranges(str(empty), uid),
                            doctor.all_ranges(str(empty)))
    assert c.name == "subgid" and c.status == FAIL
    assert c.fix == "sudo usermod --add-subgids 165536-231071 alice"
    assert doctor.all_ranges(str(tmp_path / "missing")) == []


def test_a_small_first_range_warns() -> None:
    c = doctor.check_subids("uid", "alice", [(100000, 1000)], [(100000, 1000)])
    assert c.status == WARN and "1000 ids" in c.detail
    assert c.fix == "sudo usermod --add-subuids 101000-166535 alice"


# -- user namespaces ----------------------------------------------------------------------


def test_a_working_trial_is_ok_whatever_the_sysctls() -> None:
    assert doctor.check_userns(None, "0\n", "0\n", None).status == OK
    c = doctor.check_userns(None, "15000\n", None, "1\n")
    assert c.status == OK and "AppArmor" in c.detail


@pytest.mark.parametrize(("sysctls", "fix"), [
    (("0\n", None, None), "sudo sysctl -w user.max_user_namespaces=28633"),
    (("15000\n", "0\n", None), "sudo sysctl -w kernel.unprivileged_userns_clone=1"),
    (("15000\n", None, "1\n"), "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"),
])
def test_a_failed_trial_is_explained_by_the_sysctls(sysctls: tuple[str | None, ...],
                                                     fix: str) -> None:
    c = doctor.check_userns("could not create a user namespace", *sysctls)
    assert (c.status, c.fix) == (FAIL, fix)


def test_a_failed_trial_without_a_known_cause_still_fails() -> None:
    c = doctor.check_userns("Operation not permitted", "15000\n", None, "0\n")
    assert c.status == FAIL and "Operation not permitted" in c.detail and c.fix


def test_idmap() -> None:
    assert doctor.check_idmap(65537, 65537, None).status == OK
    c = doctor.check_idmap(0, 65537, None, "sudo usermod --add-subuids 1-2 a")
    assert c.status == WARN and c.fix == "sudo usermod --add-subuids 1-2 a"
    c = doctor.check_idmap(65537, 65537, "newuidmap failed: write to uid_map failed")
    assert c.status == FAIL and "uid_map" in c.detail


# -- storage ------------------------------------------------------------------------------


def test_overlay_follows_the_storage_probe() -> None:
    assert doctor.check_overlay("overlay", "6.1.0").status == OK
    c = doctor.check_overlay("fuse-overlayfs", "5.4.0")
    assert c.status == WARN and "5.11" in c.fix
    c = doctor.check_overlay("vfs", "5.4.0")
    assert c.status == WARN and c.fix == "sudo apt install fuse-overlayfs"
    c = doctor.check_overlay(None, "6.1.0", "boom")
    assert c.status == FAIL and "boom" in c.detail


def test_devices() -> None:
    ok = doctor.check_device("fuse", "/dev/fuse", True, True, "why")
    assert ok.status == OK
    c = doctor.check_device("fuse", "/dev/fuse", True, False, "why")
    assert (c.status, c.fix) == (WARN, "sudo chmod 0666 /dev/fuse")
    c = doctor.check_device("fuse", "/dev/fuse", None, False, "why")
    assert (c.status, c.fix) == (WARN, "sudo modprobe fuse")
    c = doctor.check_device("tun", "/dev/net/tun", True, False, "why")
    assert (c.status, c.fix) == (FAIL, "sudo chmod 0666 /dev/net/tun")
    assert doctor.check_device("tun", "/dev/net/tun", False, True, "why").status == FAIL


def test_fuse_overlayfs() -> None:
    assert doctor.check_fuse_overlayfs("/usr/bin/fuse-overlayfs").status == OK
    c = doctor.check_fuse_overlayfs(None)
    assert (c.status, c.fix) == (WARN, "sudo apt install fuse-overlayfs")


# -- network ------------------------------------------------------------------------------


def test_network_one_fail_if_neither_warn_if_one_missing() -> None:
    assert doctor.check_network("/usr/bin/slirp4netns", "/usr/bin/pasta").status == OK
    c = doctor.check_network("/usr/bin/slirp4netns", None)
    assert (c.status, c.fix) == (WARN, "sudo apt install passt")
    c = doctor.check_network(None, "/usr/bin/pasta")
    assert (c.status, c.fix) == (WARN, "sudo apt install slirp4netns")
    c = doctor.check_network(None, None)
    assert (c.status, c.fix) == (FAIL, "sudo apt install slirp4netns passt")


# -- cgroups ------------------------------------------------------------------------------


def test_cgroups() -> None:
    full = Delegation("/sys/fs/cgroup", "/user.slice/user-1000.slice/user@1000.service",
                      frozenset({"cpu", "memory", "pids"}))
    assert doctor.check_cgroups("/sys/fs/cgroup", full).status == OK
    partial = Delegation("/sys/fs/cgroup", "/u", frozenset({"memory", "pids"}))
    c = doctor.check_cgroups("/sys/fs/cgroup", partial)
    assert c.status == WARN and "cpu" in c.detail
    assert "/etc/systemd/system/user@.service.d/delegate.conf" in c.fix
    assert "Delegate=cpu cpuset io memory pids" in c.fix
    c = doctor.check_cgroups("/sys/fs/cgroup/unified", None)
    assert c.status == WARN and "delegate.conf" in c.fix
    c = doctor.check_cgroups(None, None)
    assert c.status == WARN and "systemd.unified_cgroup_hierarchy=1" in c.fix


# -- runtime dir --------------------------------------------------------------------------


def test_runtime_dir() -> None:
    d = stat.S_IFDIR
    c = doctor.check_runtime_dir("/run/user/1000", "/tmp/rctr-1000", "alice", 1000,
                                 _stat(d | 0o700, 1000))
    assert c.status == OK
    c = doctor.check_runtime_dir(None, "/tmp/rctr-1000", "alice", 1000, None)
    assert c.status == WARN and "/tmp/rctr-1000" in c.detail
    assert c.fix.endswith("export XDG_RUNTIME_DIR=/run/user/1000")
    c = doctor.check_runtime_dir("/run/user/1000", "", "alice", 1000, _stat(d | 0o755, 1000))
    assert (c.status, c.fix) == (WARN, "chmod 0700 /run/user/1000")
    c = doctor.check_runtime_dir("/run/user/1000", "", "alice", 1000, _stat(d | 0o700, 0))
    assert (c.status, c.fix) == (FAIL, "sudo chown alice /run/user/1000")
    c = doctor.check_runtime_dir("/nope", "", "alice", 1000, None)
    assert c.status == FAIL and "install -d -m 0700 -o alice /nope" in c.fix
    c = doctor.check_runtime_dir("/f", "", "alice", 1000, _stat(stat.S_IFREG | 0o700, 1000))
    assert c.status == FAIL


# -- sysctls of the network ----------------------------------------------------------------


def test_ports() -> None:
    c = doctor.check_ports("1024\n")
    assert c.status == WARN and c.fix == "sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80"
    assert doctor.check_ports("80\n").status == OK
    c = doctor.check_ports("0\n")
    assert c.status == OK and "below" not in c.detail
    assert doctor.check_ports(None).status == WARN


def test_ping() -> None:
    fix = 'sudo sysctl -w net.ipv4.ping_group_range="0 2147483647"'
    assert doctor.check_ping("1\t0\n", [1000]) == Check(
        "ping", WARN, "net.ipv4.ping_group_range is 1 0, which excludes your groups: ping "
                      "(ICMP echo sockets) fails in containers", fix)
    assert doctor.check_ping("0\t2147483647\n", [1000]).status == OK
    assert doctor.check_ping("100 200", [50, 150]).status == OK
    assert doctor.check_ping("", [0]).status == WARN


# -- the output and the page ------------------------------------------------------------


def test_format_aligns_and_indents_fixes() -> None:
    checks = [Check("newuidmap", OK, "/usr/bin/newuidmap is setuid root"),
              Check("fuse-overlayfs", WARN, "missing", "sudo apt install fuse-overlayfs"),
              Check("cgroups", WARN, "x", "one\ntwo")]
    assert format_checks(checks).splitlines() == [
        "ok    newuidmap       /usr/bin/newuidmap is setuid root",
        "warn  fuse-overlayfs  missing",
        "      fix: sudo apt install fuse-overlayfs",
        "warn  cgroups         x",
        "      fix: one",
        "           two",
    ]
    assert json.loads(json.dumps([c.as_dict() for c in checks]))[1] == {
        "name": "fuse-overlayfs", "status": "warn", "detail": "missing",
        "fix": "sudo apt install fuse-overlayfs"}


def test_every_check_has_a_section_in_troubleshooting_in_doctor_order() -> None:
    page = (REPO / "docs" / "troubleshooting.md").read_text()
    headings = re.findall(r"^## (\S+)\s*$", page, re.MULTILINE)
    assert headings == list(doctor.NAMES)


def test_every_check_name_produced_is_known() -> None:
    """The names the decisions produce are exactly NAMES (so the page test covers them)."""
    produced = {
        doctor.check_helper("newuidmap", None).name, doctor.check_helper("newgidmap", None).name,
        doctor.check_subids("uid", "a", [], []).name, doctor.check_subids("gid", "a", [], []).name,
        doctor.check_userns(None).name, doctor.check_idmap(1, 1, None).name,
        doctor.check_overlay("overlay", "6.1").name,
        doctor.check_device("fuse", "/dev/fuse", True, True, "").name,
        doctor.check_fuse_overlayfs(None).name, doctor.check_network(None, None).name,
        doctor.check_device("tun", "/dev/net/tun", True, True, "").name,
        doctor.check_cgroups(None, None).name, doctor.check_runtime_dir(None, "", "a", 1, None).name,
        doctor.check_ports("80").name, doctor.check_ping("0 1", [0]).name,
    }
    assert produced == set(doctor.NAMES)
