"""Tests for rctr.core.seccomp against the real kernel.

A loaded filter can never be removed, so every load happens in a forked
child; the child reports what it saw through its exit status (an errno, a
bit mask, or the signal that killed it).
"""

from __future__ import annotations

import copy
import ctypes.util
import errno
import os
import resource
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rctr.core import seccomp
from rctr.core.errors import InvalidArgument, Unavailable, Unsupported

# An errno neither mkdir nor kill returns on their own here, so seeing it
# proves the filter answered.
MARK = errno.EXDEV
# Exit codes the children use for "the probe itself went wrong".
CHILD_CRASHED = 254
SKIP_NNP_ALREADY_SET = 253
CAP_SYS_ADMIN = 21


def _cap_sys_admin() -> bool:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    return False


needs_kernel = pytest.mark.skipif(
    ctypes.util.find_library("seccomp") is None or not _cap_sys_admin(),
    reason="needs libseccomp.so.2 and CAP_SYS_ADMIN (to load a filter without no_new_privs)",
)


def run_in_child(probe: Callable[[], int]) -> int:
    """Run ``probe`` in a forked child; return its exit code (or -signal)."""
    pid = os.fork()
    if pid == 0:
        code = CHILD_CRASHED
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGSYS would dump core
            code = probe()
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def mkdir_errno(path: Path) -> int:
    try:
        os.mkdir(path)
    except OSError as exc:
        return exc.errno or CHILD_CRASHED
    return 0


def kill_errno(pid: int, sig: int) -> int:
    try:
        os.kill(pid, sig)
    except OSError as exc:
        return exc.errno or CHILD_CRASHED
    return 0


def allow_all(*rules: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(rules), **extra}


MKDIR_BLOCKED = {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARK}


def no_new_privs() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("NoNewPrivs:"):
                return int(line.split()[1])
    raise AssertionError("no NoNewPrivs line in /proc/self/status")


# --- the kernel enforces what the profile says ----------------------------------


@needs_kernel
@pytest.mark.parametrize(
    ("ret", "expected"),
    [({"errnoRet": 1}, errno.EPERM), ({"errnoRet": MARK}, MARK), ({}, errno.EPERM)],
    ids=["errnoRet-1", "errnoRet-EXDEV", "default-EPERM"],
)
def test_errno_rule_blocks_the_syscall(tmp_path: Path, ret: dict[str, int], expected: int) -> None:
    target = tmp_path / "blocked"
    assert run_in_child(lambda: mkdir_errno(tmp_path / "control")) == 0

    rule = {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", **ret}

    def probe() -> int:
        seccomp.compile_and_load(allow_all(rule))
        return mkdir_errno(target)

    assert run_in_child(probe) == expected
    assert not target.exists()


@needs_kernel
@pytest.mark.parametrize(
    "action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"]
)
def test_kill_and_trap_actions_end_the_process_with_sigsys(action: str) -> None:
    def probe() -> int:
        seccomp.compile_and_load(allow_all({"names": ["getppid"], "action": action}))
        os.getppid()
        return 0

    assert run_in_child(probe) == -signal.SIGSYS


@needs_kernel
def test_default_action_with_default_errno_ret(tmp_path: Path) -> None:
    # Deny by default (like Docker's profile); allow what the child needs to finish.
    survive = ["exit", "exit_group", "brk", "mmap", "munmap", "mremap", "madvise", "mprotect",
               "write", "rt_sigprocmask", "rt_sigaction", "futex", "getpid", "gettid"]
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": MARK,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": survive, "action": "SCMP_ACT_ALLOW"},
            # Same action as the default: skipped, not an error from libseccomp.
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARK},
        ],
    }

    def probe() -> int:
        seccomp.compile_and_load(profile)
        return mkdir_errno(tmp_path / "denied")

    assert run_in_child(probe) == MARK
    assert not (tmp_path / "denied").exists()


# Signals sent to the child itself; all of them are ignored by default.
PROBE_SIGNALS = (0, signal.SIGCHLD, signal.SIGURG, signal.SIGWINCH)  # 0, 17, 23, 28


def blocked_signals_mask(profile_for: Callable[[int], dict[str, Any]]) -> int:
    """Load ``profile_for(pid)`` in a child; bit i set when kill(pid, PROBE_SIGNALS[i]) got MARK."""

    def probe() -> int:
        pid = os.getpid()
        seccomp.compile_and_load(profile_for(pid))
        mask = 0
        for bit, sig in enumerate(PROBE_SIGNALS):
            err = kill_errno(pid, sig)
            if err not in (0, MARK):
                return 100 + err
            mask |= (err == MARK) << bit
        return mask

    return run_in_child(probe)


def kill_rule(*args: dict[str, Any]) -> dict[str, Any]:
    return {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARK, "args": list(args)}


@needs_kernel
@pytest.mark.parametrize(
    ("op", "value", "value_two", "blocked"),
    [
        ("SCMP_CMP_NE", 23, 0, {0, 17, 28}),
        ("SCMP_CMP_LT", 23, 0, {0, 17}),
        ("SCMP_CMP_LE", 23, 0, {0, 17, 23}),
        ("SCMP_CMP_EQ", 23, 0, {23}),
        ("SCMP_CMP_GE", 23, 0, {23, 28}),
        ("SCMP_CMP_GT", 23, 0, {28}),
        # (sig & 0b11) == 0b00: value is the mask, valueTwo the expected bits
        ("SCMP_CMP_MASKED_EQ", 0b11, 0b00, {0, 28}),
        ("SCMP_CMP_MASKED_EQ", 0b11, 0b01, {17}),
    ],
)
def test_argument_comparisons(op: str, value: int, value_two: int, blocked: set[int]) -> None:
    cond = {"index": 1, "value": value, "valueTwo": value_two, "op": op}
    expected = sum(1 << i for i, sig in enumerate(PROBE_SIGNALS) if sig in blocked)
    assert blocked_signals_mask(lambda pid: allow_all(kill_rule(cond))) == expected


@needs_kernel
def test_conditions_on_the_same_argument_are_ored() -> None:
    rule = kill_rule(
        {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
        {"index": 1, "value": int(signal.SIGWINCH), "op": "SCMP_CMP_EQ"},
    )
    assert blocked_signals_mask(lambda pid: allow_all(rule)) == 0b1001  # 0 and SIGWINCH


@needs_kernel
def test_conditions_on_different_arguments_are_anded() -> None:
    def profile_for(pid: int) -> dict[str, Any]:
        return allow_all(kill_rule(
            {"index": 0, "value": pid, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": int(signal.SIGURG), "op": "SCMP_CMP_EQ"},
        ))

    assert blocked_signals_mask(profile_for) == 0b0100  # only kill(self, SIGURG)

    def probe() -> int:  # kill(parent, SIGURG) matches the signal but not the pid
        seccomp.compile_and_load(profile_for(os.getpid()))
        return kill_errno(os.getppid(), signal.SIGURG)  # ignored by default

    assert run_in_child(probe) == 0


@needs_kernel
def test_unknown_syscalls_and_architectures_are_skipped(tmp_path: Path) -> None:
    rule = {
        # not syscalls at all, and syscalls of other architectures (Docker lists both)
        "names": ["rctr_no_such_syscall", "socketcall", "ugetrlimit", "arm_fadvise64_64",
                  "mkdir", "mkdirat"],
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": MARK,
    }
    profile = allow_all(
        rule, architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_NO_SUCH_ARCH"]
    )

    def probe() -> int:
        seccomp.compile_and_load(profile)
        return mkdir_errno(tmp_path / "x")

    assert run_in_child(probe) == MARK


@needs_kernel
def test_flags_are_accepted(tmp_path: Path) -> None:
    flags = ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
             "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]

    def probe() -> int:
        seccomp.compile_and_load(allow_all(MKDIR_BLOCKED, flags=flags))
        return mkdir_errno(tmp_path / "x")

    assert run_in_child(probe) == MARK


@needs_kernel
def test_loading_does_not_set_no_new_privs(tmp_path: Path) -> None:
    def probe() -> int:
        if no_new_privs():
            return SKIP_NNP_ALREADY_SET
        seccomp.compile_and_load(allow_all(MKDIR_BLOCKED))
        if mkdir_errno(tmp_path / "x") != MARK:
            return 200  # the filter is not in place
        return no_new_privs()

    code = run_in_child(probe)
    if code == SKIP_NNP_ALREADY_SET:
        pytest.skip("the test runner has no_new_privs set already")
    assert code == 0


@needs_kernel
def test_unprivileged_load_needs_no_new_privs_from_the_runtime(tmp_path: Path) -> None:
    # Without CAP_SYS_ADMIN the kernel wants no_new_privs; had libseccomp set it
    # on its own, this load would succeed.
    def probe() -> int:
        if no_new_privs():
            return SKIP_NNP_ALREADY_SET
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        try:
            seccomp.compile_and_load(allow_all(MKDIR_BLOCKED))
        except OSError as exc:
            return exc.errno if str(exc).startswith("[Errno 13] seccomp load: ") else 201
        return 0

    code = run_in_child(probe)
    if code == SKIP_NNP_ALREADY_SET:
        pytest.skip("the test runner has no_new_privs set already")
    assert code == errno.EACCES

    def with_nnp() -> int:
        from rctr.core.linux import set_no_new_privs

        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        set_no_new_privs()
        seccomp.compile_and_load(allow_all(MKDIR_BLOCKED))
        return mkdir_errno(tmp_path / "x")

    assert run_in_child(with_nnp) == MARK


# --- validation, without the kernel -------------------------------------------------


DOCKER_LIKE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    ],
}


def test_validate_accepts_a_docker_like_profile() -> None:
    seccomp.validate(DOCKER_LIKE)
    seccomp.validate({"defaultAction": "SCMP_ACT_ALLOW"})


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A deep copy of DOCKER_LIKE with the item at ``path`` replaced (or removed: ...)."""
    profile = copy.deepcopy(DOCKER_LIKE)
    node: Any = profile
    for key in path[:-1]:
        node = node[key]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return profile


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ([], "linux.seccomp: expected an object, got an array"),
        (_with(("defaultAction",), ...), "linux.seccomp.defaultAction: missing"),
        (_with(("defaultAction",), "SCMP_ACT_FOO"),
         'linux.seccomp.defaultAction: unknown action "SCMP_ACT_FOO"'),
        (_with(("defaultErrnoRet",), -1), "linux.seccomp.defaultErrnoRet: expected an integer"),
        (_with(("defaultErrnoRet",), True), "linux.seccomp.defaultErrnoRet: expected an integer"),
        (_with(("architectures",), "SCMP_ARCH_X86_64"),
         "linux.seccomp.architectures: expected an array"),
        (_with(("architectures", 1), "x86"), "linux.seccomp.architectures[1]:"),
        (_with(("flags",), ["SECCOMP_FILTER_FLAG_NOPE"]),
         'linux.seccomp.flags[0]: unknown flag "SECCOMP_FILTER_FLAG_NOPE"'),
        (_with(("syscalls", 2), "clone"), "linux.seccomp.syscalls[2]: expected an object"),
        (_with(("syscalls", 3, "action"), "SCMP_ACT_FOO"),
         'linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO"'),
        (_with(("syscalls", 0, "names"), "read"), "linux.seccomp.syscalls[0].names: expected"),
        (_with(("syscalls", 0, "names"), []), "linux.seccomp.syscalls[0].names: expected"),
        (_with(("syscalls", 0, "names", 1), 7), "linux.seccomp.syscalls[0].names[1]:"),
        (_with(("syscalls", 3, "errnoRet"), "ENOSYS"), "linux.seccomp.syscalls[3].errnoRet:"),
        (_with(("syscalls", 1, "args"), {}), "linux.seccomp.syscalls[1].args: expected an array"),
        (_with(("syscalls", 1, "args", 0, "index"), 6),
         "linux.seccomp.syscalls[1].args[0].index: expected an integer from 0 to 5, got 6"),
        (_with(("syscalls", 1, "args", 0, "value"), ...),
         "linux.seccomp.syscalls[1].args[0].value: missing"),
        (_with(("syscalls", 2, "args", 0, "valueTwo"), 1 << 64),
         "linux.seccomp.syscalls[2].args[0].valueTwo: expected an integer"),
        (_with(("syscalls", 1, "args", 0, "op"), "SCMP_CMP_XX"),
         'linux.seccomp.syscalls[1].args[0].op: unknown operator "SCMP_CMP_XX"'),
    ],
)
def test_validate_names_the_bad_field(profile: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        seccomp.validate(profile)
    assert info.value.message.startswith(message)
    assert "\n" not in str(info.value)


def test_compile_and_load_validates_before_touching_the_kernel() -> None:
    with pytest.raises(InvalidArgument, match=r"syscalls\[3\]\.action"):
        seccomp.compile_and_load(_with(("syscalls", 3, "action"), "SCMP_ACT_FOO"))


@pytest.mark.parametrize(
    "profile",
    [
        {"defaultAction": "SCMP_ACT_NOTIFY"},
        _with(("syscalls", 3, "action"), "SCMP_ACT_NOTIFY"),
    ],
)
def test_notify_is_unsupported(profile: dict[str, Any]) -> None:
    with pytest.raises(Unsupported, match="SCMP_ACT_NOTIFY"):
        seccomp.validate(profile)


def test_missing_libseccomp_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp, "_LIBNAME", "librctr-no-such-seccomp.so.2")
    monkeypatch.setattr(seccomp, "_lib", None)
    with pytest.raises(Unavailable) as info:
        seccomp.compile_and_load(allow_all(MKDIR_BLOCKED))
    assert info.value.message == "seccomp profile given but libseccomp.so.2 is missing"
    assert info.value.hint == "install libseccomp2"


def test_import_does_not_load_libseccomp() -> None:
    code = (
        "import rctr.core.seccomp\n"
        "maps = open('/proc/self/maps').read()\n"
        "raise SystemExit('libseccomp' in maps)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
