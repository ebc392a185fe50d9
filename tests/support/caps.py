"""Named host capabilities that tests declare with ``@pytest.mark.requires(...)``.

Each probe answers once per session.  In CI (``CI`` set) a test whose
capability is missing fails instead of skipping (see conftest.py).
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess

__all__ = ["has", "why_missing"]

TEST_USER = os.environ.get("RCTR_TEST_USER", "rctr-test")
NOSUB_USER = os.environ.get("RCTR_TEST_NOSUB_USER", "rctr-nosub")


def _user_exists(name: str) -> str | None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return f"user {name} does not exist (run scripts/setup.sh)"
    return None


def _subuid() -> str | None:
    try:
        with open("/etc/subuid") as f:
            if any(line.startswith(TEST_USER + ":") for line in f):
                return None
    except FileNotFoundError:
        pass
    return f"{TEST_USER} has no range in /etc/subuid"


def _userns() -> str | None:
    if _user_exists(TEST_USER):
        return _user_exists(TEST_USER)
    uid = pwd.getpwnam(TEST_USER).pw_uid
    r = subprocess.run(["unshare", "-U", "true"], user=uid, group=uid, extra_groups=[],
                       capture_output=True, text=True, timeout=10)
    return None if r.returncode == 0 else f"unshare -U failed: {r.stderr.strip()}"


def _binary(name: str) -> str | None:
    return None if shutil.which(name) else f"{name} is not installed"


_PROBES = {
    "root": lambda: None if os.geteuid() == 0 else "the harness must run as root",
    "user": lambda: _user_exists(TEST_USER),
    "nosub-user": lambda: _user_exists(NOSUB_USER),
    "userns": _userns,
    "subuid": _subuid,
    "newuidmap": lambda: _binary("newuidmap"),
    "crun": lambda: _binary("crun"),
    "fuse": lambda: _binary("fuse-overlayfs") or (
        None if os.access("/dev/fuse", os.R_OK | os.W_OK) and os.stat("/dev/fuse").st_mode & 0o006
        else "/dev/fuse is not usable by ordinary users (scripts/setup.sh opens it)"),
    "runc": lambda: _binary("runc"),
    "libfuse2": lambda: None if __import__("ctypes.util").util.find_library("fuse")
    else "libfuse.so.2 is missing (fusepy needs it; scripts/setup.sh installs libfuse2)",
    "libseccomp": lambda: None if os.path.exists("/usr/lib/x86_64-linux-gnu/libseccomp.so.2")
    or os.path.exists("/usr/lib/aarch64-linux-gnu/libseccomp.so.2") else "libseccomp2 missing",
}


@functools.cache
def why_missing(capability: str) -> str | None:
    probe = _PROBES.get(capability)
    if probe is None:
        return f"unknown capability {capability!r}"
    return probe()


def has(capability: str) -> bool:
    return why_missing(capability) is None
