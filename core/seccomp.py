"""Load an OCI ``linux.seccomp`` profile into the kernel for the calling process.

The runtime builds the filter with ``compile`` in the container's init while
the host's libraries can still be opened (before pivot_root), and loads it
with ``Filter.load`` just before exec, so that the container's syscalls go
through the filter the profile describes.  Like runc (through libseccomp-golang), the filter is built
with libseccomp, here through ctypes: libseccomp knows every architecture's
syscall table and writes correct BPF for multi-arch filters, which rctr should
not re-implement.  The library is loaded on first use, so a host without
libseccomp2 only fails for containers that ask for a profile.  Loading never
sets no_new_privs: the runtime does that itself from
``process.noNewPrivileges``, and without it seccomp(2) needs CAP_SYS_ADMIN in
the caller's user namespace.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os

from rctr.core.errors import InvalidArgument, Unavailable, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["compile_and_load", "compile", "Filter", "validate"]

_LIBNAME = "libseccomp.so.2"
_lib: ctypes.CDLL | None = None

# <seccomp.h> actions; ERRNO and TRACE carry a 16-bit value in the low bits.
_ACT_KILL_THREAD = 0x00000000
_ACT_KILL_PROCESS = 0x80000000
_ACT_TRAP = 0x00030000
_ACT_ERRNO = 0x00050000
_ACT_TRACE = 0x7FF00000
_ACT_LOG = 0x7FFC0000
_ACT_ALLOW = 0x7FFF0000
_ACTIONS = {
    "SCMP_ACT_KILL": _ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": _ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": _ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": _ACT_TRAP,
    "SCMP_ACT_ERRNO": _ACT_ERRNO,
    "SCMP_ACT_TRACE": _ACT_TRACE,
    "SCMP_ACT_ALLOW": _ACT_ALLOW,
    "SCMP_ACT_LOG": _ACT_LOG,
}
_ACTIONS_WITH_RET = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")

# enum scmp_compare
_OPS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# enum scmp_filter_attr
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_OPTIMIZE = 8
_ATTR_API_SYSRAWRC = 9

# OCI flag -> (attribute, whether a failure to set it is fatal)
_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": (_ATTR_CTL_TSYNC, True),
    "SECCOMP_FILTER_FLAG_LOG": (_ATTR_CTL_LOG, False),
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": (_ATTR_CTL_SSB, False),
}

_NR_SCMP_ERROR = -1
_ARCH_PREFIX = "SCMP_ARCH_"
_MAX_ARGS = 6
_UINT32_MAX = 0xFFFFFFFF
_UINT64_MAX = 0xFFFFFFFFFFFFFFFF
# runc switches libseccomp to a binary-tree filter above this many syscall names.
_OPTIMIZE_ABOVE = 32


class _ArgCmp(ctypes.Structure):
    """``struct scmp_arg_cmp``."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _libseccomp() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    try:
        lib = ctypes.CDLL(_LIBNAME, use_errno=True)
    except OSError as exc:
        raise Unavailable(
            "seccomp profile given but libseccomp.so.2 is missing", hint="install libseccomp2"
        ) from exc
    ctx, u32, cint = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
    lib.seccomp_init.argtypes, lib.seccomp_init.restype = [u32], ctx
    lib.seccomp_release.argtypes, lib.seccomp_release.restype = [ctx], None
    lib.seccomp_arch_add.argtypes, lib.seccomp_arch_add.restype = [ctx, u32], cint
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = u32
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.restype = cint
    lib.seccomp_rule_add_array.argtypes = [ctx, u32, cint, ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_rule_add_array.restype = cint
    lib.seccomp_attr_set.argtypes, lib.seccomp_attr_set.restype = [ctx, cint, u32], cint
    lib.seccomp_load.argtypes, lib.seccomp_load.restype = [ctx], cint
    _lib = lib
    return lib


def _check(op: str, ret: int) -> int:
    """Turn libseccomp's negative-errno return into OSError."""
    if ret < 0:
        raise OSError(-ret, f"seccomp {op}: {os.strerror(-ret)}")
    return ret


# --- validation ---------------------------------------------------------------


def _show(value: object) -> str:
    """Render a JSON value for a one-line error message."""
    if isinstance(value, str):
        text = value if len(value) <= 64 else value[:61] + "..."
        return '"' + text.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _array(obj: dict[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidArgument(f"{where}.{key}: expected an array, got {_show(value)}")
    return value


def _check_uint(
    obj: dict[str, Any], key: str, where: str, limit: int, required: bool = False
) -> None:
    value = obj.get(key)
    if value is None:
        if required:
            raise InvalidArgument(f"{where}.{key}: missing, expected an integer from 0 to {limit}")
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise InvalidArgument(
            f"{where}.{key}: expected an integer from 0 to {limit}, got {_show(value)}"
        )


def _check_action(value: object, field: str) -> None:
    if value is None:
        raise InvalidArgument(f"{field}: missing, expected an action such as SCMP_ACT_ALLOW")
    if value == "SCMP_ACT_NOTIFY":
        raise Unsupported(
            f"{field}: SCMP_ACT_NOTIFY is not supported",
            hint="use a profile without seccomp user notification",
        )
    if not isinstance(value, str) or value not in _ACTIONS:
        raise InvalidArgument(f"{field}: unknown action {_show(value)}")


def _validate_arg(arg: object, where: str) -> None:
    if not isinstance(arg, dict):
        raise InvalidArgument(f"{where}: expected an object, got {_show(arg)}")
    _check_uint(arg, "index", where, _MAX_ARGS - 1, required=True)
    _check_uint(arg, "value", where, _UINT64_MAX, required=True)
    _check_uint(arg, "valueTwo", where, _UINT64_MAX)
    op = arg.get("op")
    if not isinstance(op, str) or op not in _OPS:
        raise InvalidArgument(f"{where}.op: unknown operator {_show(op)}")


def _validate_rule(rule: object, where: str) -> None:
    if not isinstance(rule, dict):
        raise InvalidArgument(f"{where}: expected an object, got {_show(rule)}")
    names = rule.get("names")
    if not isinstance(names, list) or not names:
        raise InvalidArgument(
            f"{where}.names: expected a non-empty array of syscall names, got {_show(names)}"
        )
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"{where}.names[{i}]: expected a syscall name, got {_show(name)}")
    _check_action(rule.get("action"), f"{where}.action")
    _check_uint(rule, "errnoRet", where, _UINT32_MAX)
    for i, arg in enumerate(_array(rule, "args", where)):
        _validate_arg(arg, f"{where}.args[{i}]")


def validate(profile: dict[str, Any]) -> None:
    """Check the shape of an OCI ``linux.seccomp`` object without loading it.

    Raises InvalidArgument naming the bad field, or Unsupported for
    SCMP_ACT_NOTIFY.  Unknown keys are ignored, as the OCI spec asks.
    """
    where = "linux.seccomp"
    if not isinstance(profile, dict):
        raise InvalidArgument(f"{where}: expected an object, got {_show(profile)}")
    _check_action(profile.get("defaultAction"), f"{where}.defaultAction")
    _check_uint(profile, "defaultErrnoRet", where, _UINT32_MAX)
    for i, arch in enumerate(_array(profile, "architectures", where)):
        if not isinstance(arch, str) or not arch.startswith(_ARCH_PREFIX):
            raise InvalidArgument(
                f'{where}.architectures[{i}]: expected "SCMP_ARCH_<name>", got {_show(arch)}'
            )
    for i, flag in enumerate(_array(profile, "flags", where)):
        if not isinstance(flag, str) or flag not in _FLAGS:
            raise InvalidArgument(f"{where}.flags[{i}]: unknown flag {_show(flag)}")
    for i, rule in enumerate(_array(profile, "syscalls", where)):
        _validate_rule(rule, f"{where}.syscalls[{i}]")


# --- compilation ----------------------------------------------------------------


def _action(name: str, errno_ret: int | None) -> int:
    """The libseccomp action value; ERRNO and TRACE default to EPERM, as in runc."""
    value = _ACTIONS[name]
    if name in _ACTIONS_WITH_RET:
        value |= (_errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF
    return value


def _set_attr(lib: ctypes.CDLL, ctx: int, attr: int, value: int, what: str, fatal: bool) -> None:
    ret = lib.seccomp_attr_set(ctx, attr, value)
    if fatal:
        _check(f"attr set {what}", ret)


def _configure(lib: ctypes.CDLL, ctx: int, profile: dict[str, Any]) -> None:
    """Filter attributes and extra architectures, before any rule is added."""
    # Leave no_new_privs to the runtime (process.noNewPrivileges).
    _set_attr(lib, ctx, _ATTR_CTL_NNP, 0, "CTL_NNP", fatal=True)
    # libseccomp >= 2.5 reports kernel errors as ECANCELED unless asked not to.
    _set_attr(lib, ctx, _ATTR_API_SYSRAWRC, 1, "API_SYSRAWRC", fatal=False)
    for flag in profile.get("flags") or ():
        attr, fatal = _FLAGS[flag]
        _set_attr(lib, ctx, attr, 1, flag, fatal)
    if sum(len(rule["names"]) for rule in profile.get("syscalls") or ()) > _OPTIMIZE_ABOVE:
        _set_attr(lib, ctx, _ATTR_CTL_OPTIMIZE, 2, "CTL_OPTIMIZE", fatal=False)
    for arch in profile.get("architectures") or ():
        token = lib.seccomp_arch_resolve_name(arch[len(_ARCH_PREFIX):].lower().encode())
        if token == 0:
            continue  # an architecture this libseccomp does not know
        ret = lib.seccomp_arch_add(ctx, token)
        if ret != -_errno.EEXIST:  # EEXIST: the native arch, present already
            _check(f"arch add {arch}", ret)


def _condition_groups(args: list[dict[str, Any]]) -> list[ctypes.Array[_ArgCmp] | None]:
    """The argument arrays to add one rule each for.

    libseccomp refuses two comparisons on one argument in a rule; then, as
    runc does, every comparison becomes a rule of its own (they are OR-ed).
    """
    conds = [
        _ArgCmp(a["index"], _OPS[a["op"]], a["value"], a.get("valueTwo") or 0) for a in args
    ]
    if not conds:
        return [None]
    if len({c.arg for c in conds}) == len(conds):
        return [(_ArgCmp * len(conds))(*conds)]
    return [(_ArgCmp * 1)(c) for c in conds]


def _add_rule(lib: ctypes.CDLL, ctx: int, rule: dict[str, Any], default: int) -> None:
    action = _action(rule["action"], rule.get("errnoRet"))
    if action == default:
        return  # redundant, and libseccomp rejects it
    groups = _condition_groups(rule.get("args") or [])
    for name in rule["names"]:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr == _NR_SCMP_ERROR:
            continue  # not a syscall this libseccomp knows (Docker lists newer ones)
        for group in groups:
            count = 0 if group is None else len(group)
            _check(f"rule add {name}", lib.seccomp_rule_add_array(ctx, action, nr, count, group))


class Filter:
    """A built filter, not yet loaded: build it while libseccomp can still be
    opened (before pivot_root), load it at the last moment before exec."""

    def __init__(self, lib: ctypes.CDLL, ctx: int) -> None:
        self._lib = lib
        self._ctx = ctx

    def load(self) -> None:
        try:
            _check("load", self._lib.seccomp_load(self._ctx))
        finally:
            self.release()

    def release(self) -> None:
        if self._ctx:
            self._lib.seccomp_release(self._ctx)
            self._ctx = 0


def compile(profile: dict[str, Any]) -> Filter:
    """Validate ``profile`` and build its filter (see ``Filter``).

    Raises InvalidArgument/Unsupported for a bad profile, Unavailable without
    libseccomp, and OSError when libseccomp refuses.
    """
    validate(profile)
    lib = _libseccomp()
    default = _action(profile["defaultAction"], profile.get("defaultErrnoRet"))
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise OSError(
            _errno.EINVAL,
            f"seccomp init: {os.strerror(_errno.EINVAL)}"
            f" (default action {profile['defaultAction']})",
        )
    built = Filter(lib, ctx)
    try:
        _configure(lib, ctx, profile)
        for rule in profile.get("syscalls") or ():
            _add_rule(lib, ctx, rule, default)
    except BaseException:
        built.release()
        raise
    return built


def compile_and_load(profile: dict[str, Any]) -> None:
    """Build the filter for ``profile`` and load it for the calling process."""
    compile(profile).load()
