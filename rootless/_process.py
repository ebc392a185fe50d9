"""Turning the calling process into the configured container process.

Shared by the container's init and by ``exec``.  The order is runc's
finalizeNamespace: rlimits; seccomp early when no_new_privs is off (loading
it then needs CAP_SYS_ADMIN, which we still hold); the bounding set; user and
groups with PR_SET_KEEPCAPS so the permitted set survives setuid; the
capability sets; ambient; umask and cwd; no_new_privs, and seccomp last when
no_new_privs is on (the filter must allow only what follows: execve).
"""

from __future__ import annotations

import os
import resource

from rctr.core import linux
from rctr.core.linux import CAPABILITIES

from ._bundle import RLIMITS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rctr.core.oci import Capabilities, Process, SeccompProfile, User
    from rctr.core.seccomp import Filter

__all__ = ["apply_process", "build_seccomp", "find_executable", "process_env"]


def _mask(names: list[str] | None) -> int:
    bits = 0
    for name in names or []:
        bits |= 1 << CAPABILITIES.index(name)
    return bits


def _apply_rlimits(process: Process) -> None:
    for rl in process.get("rlimits") or []:
        try:
            resource.setrlimit(RLIMITS[rl["type"]], (rl["soft"], rl["hard"]))
        except (ValueError, OSError) as exc:
            raise OSError(
                getattr(exc, "errno", None) or 1,
                f"setrlimit {rl['type']} soft={rl['soft']} hard={rl['hard']}: {exc}; "
                "an ordinary user cannot raise a hard limit above the current one") from None


def _setgroups_allowed() -> bool:
    # A gid map written without newgidmap requires setgroups to be denied first.
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "allow"
    except OSError:
        return True


def _apply_user(user: User) -> None:
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    groups = user.get("additionalGids") or []
    if _setgroups_allowed():
        os.setgroups(groups)
    elif groups:
        raise OSError(1, "additionalGids need setgroups, which a single-id gid mapping denies; "
                         "map a gid range through /etc/subgid")
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _apply_caps(caps: Capabilities) -> None:
    last = linux.cap_last_cap()
    bounding = _mask(caps.get("bounding"))
    for cap in range(last + 1):
        if not bounding & (1 << cap) and linux.capbset_read(cap):
            linux.capbset_drop(cap)


def _set_caps(caps: Capabilities) -> None:
    linux.capset(_mask(caps.get("effective")), _mask(caps.get("permitted")),
                 _mask(caps.get("inheritable")))
    ambient = caps.get("ambient") or []
    linux.ambient_clear()
    for name in ambient:
        # Raising needs the capability permitted and inheritable; runc skips the rest too.
        try:
            linux.ambient_raise(CAPABILITIES.index(name))
        except PermissionError:
            pass


def build_seccomp(profile: SeccompProfile | None) -> Filter | None:
    """The container's filter, built now: after pivot_root libseccomp cannot be opened."""
    if not profile:
        return None
    from rctr.core import seccomp

    return seccomp.compile(profile)


def apply_process(process: Process, seccomp: Filter | None) -> None:
    """Rlimits, seccomp, capabilities, user, umask, cwd and no_new_privs, in order.

    ``seccomp`` is a filter from ``build_seccomp`` (or None).
    """
    _apply_rlimits(process)
    nnp = bool(process.get("noNewPrivileges"))
    if seccomp is not None and not nnp:
        seccomp.load()
    caps = process.get("capabilities")
    if caps is not None:
        _apply_caps(caps)
    linux.set_keepcaps(True)
    _apply_user(process.get("user") or {})
    linux.set_keepcaps(False)
    if caps is not None:
        _set_caps(caps)
    umask = (process.get("user") or {}).get("umask")
    if umask is not None:
        os.umask(umask)
    os.chdir(process.get("cwd") or "/")
    if nnp:
        linux.set_no_new_privs()
        if seccomp is not None:
            seccomp.load()


def process_env(process: Process) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in process.get("env") or []:
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
    env.setdefault("HOME", _home_of((process.get("user") or {}).get("uid", 0)))
    return env


def _home_of(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def find_executable(name: str, env: dict[str, str]) -> str:
    """Resolve ``name`` like execvp would, in the container's view, before we commit."""
    if "/" in name:
        candidates = [name]
    else:
        path = env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        candidates = [os.path.join(d or ".", name) for d in path.split(":")]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(2, f'exec: "{name}": executable file not found in $PATH', name)
