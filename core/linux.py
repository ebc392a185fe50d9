"""Every libc call rctr makes that the standard library lacks, in one module.

Each wrapper uses ctypes with ``use_errno=True`` and explicit argtypes, retries
EINTR, and raises ``OSError(errno, "<operation>: <strerror>", path)`` so one
failure reads as one line that names the operation and the path.

Python 3.11 has no ``os.unshare``/``os.setns`` (3.12 added them), no mount
calls and no capability calls; everything else comes from ``os``.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "CLONE_NEWNS", "CLONE_NEWCGROUP", "CLONE_NEWUTS", "CLONE_NEWIPC", "CLONE_NEWUSER",
    "CLONE_NEWPID", "CLONE_NEWNET", "NAMESPACE_FLAGS",
    "MS_RDONLY", "MS_NOSUID", "MS_NODEV", "MS_NOEXEC", "MS_REMOUNT", "MS_BIND", "MS_MOVE",
    "MS_REC", "MS_PRIVATE", "MS_SLAVE", "MS_SHARED", "MS_UNBINDABLE", "MNT_DETACH",
    "unshare", "setns", "mount", "umount", "pivot_root", "sethostname", "setdomainname",
    "set_no_new_privs", "set_keepcaps", "set_child_subreaper", "set_pdeathsig", "set_name",
    "capbset_drop", "capbset_read", "ambient_clear", "ambient_raise", "capset", "capget",
    "CAPABILITIES", "cap_last_cap", "loopback_up", "interface_ipv4", "fs_type", "NSFS_MAGIC",
]

_libc = ctypes.CDLL(None, use_errno=True)

# <linux/sched.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# OCI namespace type -> (clone flag, name under /proc/PID/ns)
NAMESPACE_FLAGS: dict[str, tuple[int, str]] = {
    "user": (CLONE_NEWUSER, "user"),
    "mount": (CLONE_NEWNS, "mnt"),
    "pid": (CLONE_NEWPID, "pid"),
    "uts": (CLONE_NEWUTS, "uts"),
    "ipc": (CLONE_NEWIPC, "ipc"),
    "network": (CLONE_NEWNET, "net"),
    "cgroup": (CLONE_NEWCGROUP, "cgroup"),
}

# <linux/mount.h>
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 2

# <linux/prctl.h>
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_PR_SET_KEEPCAPS = 8
_PR_CAPBSET_READ = 23
_PR_CAPBSET_DROP = 24
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_PR_CAP_AMBIENT_CLEAR_ALL = 4

_c_char_p = ctypes.c_char_p
_c_int = ctypes.c_int
_c_ulong = ctypes.c_ulong

_libc.unshare.argtypes = [_c_int]
_libc.setns.argtypes = [_c_int, _c_int]
_libc.mount.argtypes = [_c_char_p, _c_char_p, _c_char_p, _c_ulong, _c_char_p]
_libc.umount2.argtypes = [_c_char_p, _c_int]
_libc.setdomainname.argtypes = [_c_char_p, ctypes.c_size_t]
_libc.sethostname.argtypes = [_c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [_c_int, _c_ulong, _c_ulong, _c_ulong, _c_ulong]
_libc.statfs.argtypes = [_c_char_p, ctypes.c_void_p]
_libc.syscall.restype = ctypes.c_long

# pivot_root has no glibc wrapper on older glibc; the syscall number is per arch.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217, "riscv64": 41}


def _fs(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return os.fsencode(value)


def _call(op: str, func: Callable[..., int], *args: object, path: str | None = None) -> int:
    while True:
        ret = func(*args)
        if ret != -1:
            return int(ret)
        err = ctypes.get_errno()
        if err != _errno.EINTR:
            raise OSError(err, f"{op}: {os.strerror(err)}", path)


def unshare(flags: int) -> None:
    _call("unshare", _libc.unshare, flags)


def setns(fd: int, nstype: int = 0, path: str | None = None) -> None:
    _call("setns", _libc.setns, fd, nstype, path=path)


def mount(
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    _call(
        f"mount {fstype or ''}".rstrip(),
        _libc.mount, _fs(source), _fs(target), _fs(fstype), flags, _fs(data),
        path=target,
    )


def umount(target: str, flags: int = 0) -> None:
    _call("umount", _libc.umount2, _fs(target), flags, path=target)


NSFS_MAGIC = 0x6E736673  # <linux/magic.h>: a bind-mounted namespace file


class _StatFs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 112)]


def fs_type(path: str) -> int:
    """statfs(2)'s ``f_type``: the filesystem's magic number (os.statvfs lacks it)."""
    buf = _StatFs()
    _call("statfs", _libc.statfs, _fs(path), ctypes.byref(buf), path=path)
    return int(buf.f_type)


# <linux/sockios.h>, <net/if.h>
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def loopback_up() -> None:
    """Bring ``lo`` up in the calling thread's network namespace, as runc does in a new one.

    An ioctl on a datagram socket: the one netlink-free way, and cheap enough
    for the runtime's init path (no pyroute2 import)."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, _SIOCGIFFLAGS, req))[1]
        if not flags & _IFF_UP:
            fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def interface_ipv4(name: str) -> tuple[str, int] | None:
    """The IPv4 address and prefix length of interface ``name``, or None if it has none."""
    import fcntl
    import socket
    import struct

    siocgifaddr, siocgifnetmask = 0x8915, 0x891B
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = struct.pack("16s16x", name.encode()[:15])
        try:
            addr = fcntl.ioctl(sock, siocgifaddr, req)[20:24]
            mask = fcntl.ioctl(sock, siocgifnetmask, req)[20:24]
        except OSError:
            return None
    return socket.inet_ntoa(addr), bin(int.from_bytes(mask, "big")).count("1")


def pivot_root(new_root: str, put_old: str) -> None:
    nr = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise OSError(_errno.ENOSYS, "pivot_root: unknown syscall number for this arch", new_root)
    _call("pivot_root", _libc.syscall, ctypes.c_long(nr), _fs(new_root), _fs(put_old), path=new_root)


def sethostname(name: str) -> None:
    # socket.sethostname would do, but importing socket costs milliseconds at start-up.
    raw = name.encode()
    _call("sethostname", _libc.sethostname, raw, len(raw))


def setdomainname(name: str) -> None:
    raw = name.encode()
    _call("setdomainname", _libc.setdomainname, raw, len(raw))


def _prctl(op: str, option: int, a: int = 0, b: int = 0, c: int = 0, d: int = 0) -> int:
    return _call(op, _libc.prctl, option, a, b, c, d)


def set_no_new_privs() -> None:
    _prctl("prctl(PR_SET_NO_NEW_PRIVS)", _PR_SET_NO_NEW_PRIVS, 1)


def set_keepcaps(on: bool) -> None:
    _prctl("prctl(PR_SET_KEEPCAPS)", _PR_SET_KEEPCAPS, int(on))


def set_child_subreaper() -> None:
    _prctl("prctl(PR_SET_CHILD_SUBREAPER)", _PR_SET_CHILD_SUBREAPER, 1)


def set_pdeathsig(signum: int) -> None:
    _prctl("prctl(PR_SET_PDEATHSIG)", _PR_SET_PDEATHSIG, signum)


def set_name(name: str) -> None:
    """The process's name as ps, top and pgrep show it (``comm``, 15 bytes at most).

    For processes forked from one interpreter, whose command lines are all alike."""
    buf = ctypes.create_string_buffer(name.encode()[:15])
    _prctl("prctl(PR_SET_NAME)", _PR_SET_NAME, ctypes.cast(buf, ctypes.c_void_p).value or 0)


def capbset_read(cap: int) -> bool:
    return _prctl("prctl(PR_CAPBSET_READ)", _PR_CAPBSET_READ, cap) == 1


def capbset_drop(cap: int) -> None:
    _prctl("prctl(PR_CAPBSET_DROP)", _PR_CAPBSET_DROP, cap)


def ambient_clear() -> None:
    _prctl("prctl(PR_CAP_AMBIENT)", _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)


def ambient_raise(cap: int) -> None:
    _prctl("prctl(PR_CAP_AMBIENT)", _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, cap)


# Capability numbers from <linux/capability.h>, in order.
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)


def cap_last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAPABILITIES) - 1


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_CAP_V3 = 0x20080522
_libc.capget.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]
_libc.capset.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]


def capget(pid: int = 0) -> tuple[int, int, int]:
    """Return (effective, permitted, inheritable) as 64-bit masks."""
    header = _CapHeader(_CAP_V3, pid)
    data = (_CapData * 2)()
    _call("capget", _libc.capget, ctypes.byref(header), data)
    effective, permitted, inheritable = (
        int(getattr(data[0], f)) | (int(getattr(data[1], f)) << 32)
        for f in ("effective", "permitted", "inheritable")
    )
    return effective, permitted, inheritable


def capset(effective: int, permitted: int, inheritable: int) -> None:
    header = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _call("capset", _libc.capset, ctypes.byref(header), data)
