"""mount(8)-style option lists, split into mount(2) flags, propagation and fs data.

Shared by the runtime (config.json mounts) and the store (mounts it returns
as data).
"""

from __future__ import annotations

from rctr.core.linux import (
    MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT,
    MS_SHARED, MS_SLAVE, MS_UNBINDABLE,
)

__all__ = ["parse_options", "PROPAGATION", "MS_NOATIME", "MS_NODIRATIME", "MS_RELATIME",
           "MS_STRICTATIME"]

_MS_SYNCHRONOUS, _MS_MANDLOCK, _MS_DIRSYNC = 0x10, 0x40, 0x80
MS_NOATIME, MS_NODIRATIME, _MS_SILENT = 0x400, 0x800, 0x8000
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24

# option -> (clear instead of set, flag)
_FLAGS = {
    "defaults": (False, 0), "ro": (False, MS_RDONLY), "rw": (True, MS_RDONLY),
    "suid": (True, MS_NOSUID), "nosuid": (False, MS_NOSUID),
    "dev": (True, MS_NODEV), "nodev": (False, MS_NODEV),
    "exec": (True, MS_NOEXEC), "noexec": (False, MS_NOEXEC),
    "sync": (False, _MS_SYNCHRONOUS), "async": (True, _MS_SYNCHRONOUS),
    "dirsync": (False, _MS_DIRSYNC), "remount": (False, MS_REMOUNT),
    "mand": (False, _MS_MANDLOCK), "nomand": (True, _MS_MANDLOCK),
    "atime": (True, MS_NOATIME), "noatime": (False, MS_NOATIME),
    "diratime": (True, MS_NODIRATIME), "nodiratime": (False, MS_NODIRATIME),
    "bind": (False, MS_BIND), "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME), "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME), "nostrictatime": (True, MS_STRICTATIME),
    "silent": (False, _MS_SILENT), "loud": (True, _MS_SILENT),
}
PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}
# Options other tools put in config.json that are no mount(2) flags and no fs data.
_IGNORED = {"tmpcopyup", "notmpcopyup", "copy-symlink", "z", "Z", "U", "idmap", "ridmap"}


def parse_options(options: list[str]) -> tuple[int, list[int], str]:
    """Split mount options into (mount flags, propagation flags, fs data string)."""
    flags, propagation, data = 0, [], []
    for opt in options:
        if opt in _FLAGS:
            clear, flag = _FLAGS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in PROPAGATION:
            propagation.append(PROPAGATION[opt])
        elif opt not in _IGNORED:
            data.append(opt)
    return flags, propagation, ",".join(data)
