"""The default profile rctrd puts in a container's spec (daemon._spec.seccomp_profile).

It is a deny-list; these tests pin the holes a deny-list can leave open
that Docker's allow-list closes: namespaces made through clone and clone3
(not only unshare), io_uring, syslog.  The filter is loaded for real in a
forked child (it can never be removed) and the child reports the errno.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import signal

import pytest

from rctr.core import seccomp
from rctr.daemon._spec import DEFAULT_CAPS, seccomp_profile

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
_NR = ({"clone": 220, "clone3": 435, "io_uring_setup": 425, "syslog": 116}
       if platform.machine() == "aarch64" else
       {"clone": 56, "clone3": 435, "io_uring_setup": 425, "syslog": 103})


def _cap_sys_admin() -> bool:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 21 & 1)
    return False


needs_kernel = pytest.mark.skipif(
    ctypes.util.find_library("seccomp") is None or not _cap_sys_admin()
    or platform.machine() not in ("x86_64", "aarch64"),
    reason="needs libseccomp.so.2, CAP_SYS_ADMIN and a known syscall table")


def _errno_under(profile: dict, name: str, *args: object) -> int:
    """The errno of syscall ``name`` in a child with ``profile`` loaded (0: it succeeded)."""
    pid = os.fork()
    if pid == 0:
        code = 254
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            seccomp.compile_and_load(profile)
            r = libc.syscall(_NR[name], *args)
            if r == 0 and name in ("clone", "clone3"):
                os._exit(0)  # the new process
            if r > 0 and name in ("clone", "clone3"):
                os.waitpid(r, 0)
            code = 0 if r >= 0 else ctypes.get_errno()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _clone(flags: int) -> tuple[object, ...]:
    return (ctypes.c_long(flags | int(signal.SIGCHLD)), ctypes.c_long(0), ctypes.c_long(0),
            ctypes.c_long(0), ctypes.c_long(0))


def _clone3(flags: int) -> tuple[object, ...]:
    args = (ctypes.c_uint64 * 11)(flags, 0, 0, 0, int(signal.SIGCHLD), 0, 0, 0, 0, 0, 0)
    return (ctypes.cast(args, ctypes.c_void_p), ctypes.c_long(ctypes.sizeof(args)))


def _names(profile: dict) -> set[str]:
    return {n for rule in profile["syscalls"] if not rule.get("args") for n in rule["names"]}


def test_profile_shape_follows_cap_sys_admin() -> None:
    default = seccomp_profile(list(DEFAULT_CAPS))
    seccomp.validate(default)
    assert {"unshare", "setns", "mount", "io_uring_setup", "syslog", "keyctl"} <= _names(default)
    clone = [r for r in default["syscalls"] if r["names"] == ["clone"]]
    assert len(clone) == 1 and len(clone[0]["args"]) == 7
    assert any(r["names"] == ["clone3"] and r["errnoRet"] == errno.ENOSYS
               for r in default["syscalls"])
    admin = seccomp_profile([*DEFAULT_CAPS, "CAP_SYS_ADMIN"])
    seccomp.validate(admin)
    assert "unshare" not in _names(admin) and "keyctl" in _names(admin)
    assert not any(r["names"] in (["clone"], ["clone3"]) for r in admin["syscalls"])


@needs_kernel
def test_namespaces_through_clone_and_clone3_are_refused() -> None:
    profile = seccomp_profile(list(DEFAULT_CAPS))
    assert _errno_under(profile, "clone", *_clone(CLONE_NEWUSER)) == errno.EPERM
    assert _errno_under(profile, "clone", *_clone(CLONE_NEWNET | CLONE_NEWNS)) == errno.EPERM
    assert _errno_under(profile, "clone", *_clone(0)) == 0  # fork stays allowed
    assert _errno_under(profile, "clone3", *_clone3(CLONE_NEWUSER)) == errno.ENOSYS
    assert _errno_under(profile, "clone3", *_clone3(0)) == errno.ENOSYS
    # With CAP_SYS_ADMIN Docker's profile lets them through; so does rctr's.
    admin = seccomp_profile([*DEFAULT_CAPS, "CAP_SYS_ADMIN"])
    assert _errno_under(admin, "clone", *_clone(CLONE_NEWUSER)) == 0
    assert _errno_under(admin, "clone3", *_clone3(CLONE_NEWUSER)) == 0


@needs_kernel
def test_io_uring_and_syslog_are_refused() -> None:
    profile = seccomp_profile(list(DEFAULT_CAPS))
    params = (ctypes.c_char * 120)()
    assert _errno_under(profile, "io_uring_setup", ctypes.c_long(1), params) == errno.EPERM
    assert _errno_under(profile, "syslog", ctypes.c_long(10), ctypes.c_long(0),
                        ctypes.c_long(0)) == errno.EPERM
