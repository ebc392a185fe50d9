"""rctr.toml end to end, as the unprivileged user: the on-demand rctrd reads it.

One daemon for the module, started by the CLI with a config that selects vfs,
gives containers no network by default and mirrors a registry that does not
exist (``registry.invalid:5000``, RFC 2606: it never resolves) to the local test
registry on 127.0.0.1: that pull can only succeed through the mirror.  A broken
file is tried on a fresh user, with no daemon running.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonenv import IMAGE, RctrUser, ok
from harness import RCTR, UserShell
from registry import Registry, push_oci_layout

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap"),
              pytest.mark.timeout(240)]

UPSTREAM = "registry.invalid:5000"
REPO = "rctr-test/mirrored"


def _write_config(shell: UserShell, text: str) -> Path:
    path = shell.base / "config" / "rctr" / "rctr.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    for p in (path, path.parent, path.parent.parent):
        os.chown(p, shell.uid, shell.gid)
    return path


class ConfiguredUser(RctrUser):
    """RctrUser whose every command sees ``XDG_CONFIG_HOME`` (so rctrd, started on demand,
    reads ``<base>/config/rctr/rctr.toml``)."""

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(XDG_CONFIG_HOME=str(self.shell.base / "config"), **extra)


@pytest.fixture(scope="module")
def mirror(test_image: str) -> Iterator[Registry]:
    with Registry() as reg:
        push_oci_layout(reg.url, test_image, REPO, "latest")
        yield reg


@pytest.fixture(scope="module")
def crc(test_image: str, mirror: Registry) -> Iterator[ConfiguredUser]:
    shell = UserShell.create(os.environ.get("RCTR_TEST_USER", "rctr-test"))
    try:
        _write_config(shell, f"""
[storage]
driver = "vfs"

[network]
default = "none"

[registries.mirrors]
"{UPSTREAM}" = ["{mirror.host}"]

[daemon]
log_level = "debug"
""")
        user = ConfiguredUser(shell)
        user.load_image(test_image)
        yield user
    finally:
        shell.cleanup()


def _log(rc: RctrUser) -> str:
    try:
        return (rc.rundir / "rctrd.log").read_text(errors="replace")
    except OSError:
        return ""


def _restart_daemon(rc: RctrUser) -> None:
    pid = rc.daemon_pid()
    if pid:
        os.kill(pid, signal.SIGTERM)
        rc.wait_for(lambda: rc.daemon_pid() is None, what="rctrd to stop")


def test_config_selects_the_storage_driver(crc: ConfiguredUser, mirror: Registry) -> None:
    out = ok(crc.rctr("info")).stdout
    assert re.search(r"Storage Driver: +vfs\n", out), out
    assert re.search(r"Debug Mode: +true\n", out), out
    log = _log(crc)
    assert "storage driver vfs (" in log and "[storage] driver)" in log, log
    assert "log level debug" in log and "runtime rctr (built-in default)" in log, log
    status, info = crc.api("GET", "/info")
    assert status == 200
    assert info["Driver"] == "vfs" and info["DefaultRuntime"] == "rctr"
    assert info["RegistryConfig"]["IndexConfigs"][UPSTREAM]["Mirrors"] == [mirror.host]
    # The container's layer is a vfs copy, as the record says.
    cid = ok(crc.rctr("create", IMAGE, "true")).stdout.strip()
    try:
        assert ok(crc.rctr("inspect", "-f", "{{.GraphDriver.Name}}", cid)).stdout.strip() == "vfs"
    finally:
        crc.rctr("rm", "-f", cid)


def test_default_network_none_gives_only_lo(crc: ConfiguredUser) -> None:
    r = ok(crc.rctr("run", "--rm", IMAGE, "ls", "/sys/class/net"))
    assert r.stdout.split() == ["lo"]
    # An explicit mode still wins over the default.
    r = ok(crc.rctr("run", "--rm", "--network", "slirp4netns", IMAGE, "ls", "/sys/class/net"))
    assert sorted(r.stdout.split()) == ["lo", "tap0"]


def test_a_container_keeps_the_default_it_was_created_with(crc: ConfiguredUser) -> None:
    cid = ok(crc.rctr("create", IMAGE, "ls", "/sys/class/net")).stdout.strip()
    try:
        mode = ok(crc.rctr("inspect", "-f", "{{.HostConfig.NetworkMode}}", cid)).stdout.strip()
        assert mode == "none"
        _restart_daemon(crc)
        # The setting changes (by the environment, over the file): the old container does not.
        env = crc.env(RCTR_NETWORK="slirp4netns")
        r = crc.shell.run([RCTR, "start", "-a", cid], env=env, timeout=90)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["lo"]
        assert "default network slirp4netns ($RCTR_NETWORK)" in _log(crc)
        r = crc.shell.run([RCTR, "run", "--rm", IMAGE, "ls", "/sys/class/net"], env=env,
                          timeout=90)
        assert sorted(r.stdout.split()) == ["lo", "tap0"], r.stderr
    finally:
        crc.rctr("rm", "-f", cid)
        _restart_daemon(crc)  # back to the file's settings for the other tests


def test_pull_goes_through_the_mirror(crc: ConfiguredUser, mirror: Registry) -> None:
    ref = f"{UPSTREAM}/{REPO}:latest"
    r = ok(crc.rctr("pull", ref, timeout=120))
    assert "Downloaded newer image" in r.stdout or "Pull complete" in r.stdout, r.stdout
    names = ok(crc.rctr("images", "--format", "{{.Repository}}:{{.Tag}}")).stdout.split()
    assert ref in names
    r = ok(crc.rctr("run", "--rm", ref, "echo", "mirrored"))
    assert r.stdout == "mirrored\n"
    # Not in the mirror: the upstream is tried last, and it does not exist.
    r = crc.rctr("pull", f"{UPSTREAM}/rctr-test/absent:latest", timeout=120)
    assert r.returncode != 0
    assert UPSTREAM in r.stderr and mirror.host in r.stderr, r.stderr


def _one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_a_broken_config_is_one_clear_line(user: UserShell) -> None:
    rc = ConfiguredUser(user)
    path = _write_config(user, "[storage]\ndrivr = \"vfs\"\n")
    # The on-demand start surfaces the daemon's refusal.
    r = rc.rctr("ps")
    line = _one_line_error(r)
    assert r.returncode == 125
    assert str(path) in line and "[storage] drivr" in line and "driver" in line, line
    assert rc.daemon_pid() is None
    # So does `rctr system service`, in the foreground.
    r = rc.rctr("system", "service", timeout=30)
    line = _one_line_error(r)
    assert r.returncode == 78
    assert str(path) in line and "[storage] drivr" in line, line
    # Not TOML at all: the line number; a wrong value: the key and the choices.
    _write_config(user, "[daemon\nlog_level = 'debug'\n")
    line = _one_line_error(rc.rctr("ps"))
    assert str(path) in line and "not valid TOML" in line and "line 1" in line, line
    _write_config(user, "[daemon]\nruntime = \"youki\"\n")
    line = _one_line_error(rc.rctr("ps"))
    assert "[daemon] runtime" in line and "rctr, crun, runc" in line, line
    # A flag of `rctr system service` names itself.
    _write_config(user, "")
    line = _one_line_error(rc.rctr("system", "service", "--storage-driver", "btrfs",
                                   timeout=30))
    assert line.startswith("rctrd: cannot start: --storage-driver: unknown storage driver"), line
    # Fixed: the next command starts the daemon.
    deadline = time.monotonic() + 5
    while rc.daemon_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    r = ok(rc.rctr("info", "-f", "{{json .RegistryConfig}}"))
    assert json.loads(r.stdout)["IndexConfigs"]["docker.io"]["Official"] is True
