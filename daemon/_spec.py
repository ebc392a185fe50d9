"""The OCI bundle's config.json for a container, from its image and its request.

This is dockerd's ``createSpec``: env, command, user, working directory,
mounts (volumes, binds, tmpfs, the per-container files), capabilities,
seccomp and masked paths, for a runtime that runs as root of the user's
user namespace (so the config has no user namespace of its own).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
from typing import TYPE_CHECKING, Any

from rctr.core import linux, seccomp
from rctr.core.arch import go_arch
from rctr.core.cgroups import CPU_PERIOD
from rctr.core.errors import InvalidArgument
from rctr.core.securejoin import secure_join

from ._record import JSON, Record

if TYPE_CHECKING:
    from rctr.core import oci

__all__ = ["build_spec", "check_config", "DEFAULT_CAPS", "DEFAULT_SHM_SIZE", "resolve_user",
           "command_of", "env_of", "user_names", "resources_of"]

DEFAULT_SHM_SIZE = 64 << 20  # /dev/shm, as Docker's
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's default capability set.
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]

MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

# Syscalls Docker's default profile refuses to a container without extra
# capabilities; refused with EPERM.  (Docker's profile is an allow-list; this
# deny-list covers the same dangerous ground without a 700-line table.)
_SECCOMP_DENY = ["acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
                 "delete_module", "finit_module", "get_kernel_syms", "get_mempolicy",
                 "init_module", "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load",
                 "keyctl", "lookup_dcookie", "mbind", "move_pages", "nfsservctl",
                 "open_by_handle_at", "perf_event_open", "process_vm_readv",
                 "process_vm_writev", "query_module", "quotactl", "reboot", "request_key",
                 "set_mempolicy", "settimeofday", "swapon", "swapoff", "sysfs", "uselib",
                 "userfaultfd", "ustat", "vm86", "vm86old", "fanotify_init", "name_to_handle_at",
                 # Docker 25 took io_uring out of its profile (moby#46762); syslog needs
                 # CAP_SYSLOG there.
                 "io_uring_setup", "io_uring_enter", "io_uring_register", "syslog"]
_SECCOMP_DENY_WITHOUT_SYS_ADMIN = ["mount", "umount2", "unshare", "setns", "pivot_root",
                                   "fsopen", "fsmount", "fsconfig", "fspick", "move_mount",
                                   "open_tree", "mount_setattr"]
# clone's namespace flags (NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET): Docker
# allows clone only without them unless CAP_SYS_ADMIN, as unshare.  clone3 passes its flags
# in memory seccomp cannot read, so Docker answers ENOSYS, which makes libc fall back to clone.
_CLONE_NS_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                   0x40000000]
_ENOSYS = 38


def _caps_all() -> list[str]:
    last = linux.cap_last_cap()
    return [name for number, name in enumerate(linux.CAPABILITIES) if number <= last]


def capabilities(host_config: dict[str, Any]) -> list[str]:
    if host_config.get("Privileged"):
        return _caps_all()

    def norm(c: str) -> str:
        c = c.upper()
        return c if c.startswith("CAP_") or c == "ALL" else f"CAP_{c}"

    known = set(_caps_all())
    caps = list(DEFAULT_CAPS)
    for cap in map(norm, host_config.get("CapDrop") or []):
        if cap == "ALL":
            caps = []
        elif cap in known or cap in caps:
            caps = [c for c in caps if c != cap]
        else:
            raise InvalidArgument(f"unknown capability to drop: {cap!r}")
    for cap in map(norm, host_config.get("CapAdd") or []):
        if cap == "ALL":
            caps = _caps_all()
        elif cap in known:
            if cap not in caps:
                caps.append(cap)
        else:
            raise InvalidArgument(f"unknown capability to add: {cap!r}")
    return caps


def seccomp_profile(caps: list[str]) -> dict[str, Any]:
    if "CAP_SYS_ADMIN" in caps:
        return {"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": list(_SECCOMP_DENY), "action": "SCMP_ACT_ERRNO",
                              "errnoRet": 1}]}
    flags = 1 if go_arch() == "s390x" else 0  # s390's clone takes the stack first
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": _SECCOMP_DENY + _SECCOMP_DENY_WITHOUT_SYS_ADMIN, "action": "SCMP_ACT_ERRNO",
         "errnoRet": 1},
        # Conditions on one argument are ORed (core.seccomp): any namespace flag refuses.
        {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
         "args": [{"index": flags, "value": bit, "valueTwo": bit, "op": "SCMP_CMP_MASKED_EQ"}
                  for bit in _CLONE_NS_FLAGS]},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS},
    ]}


def env_of(config: dict[str, Any], hostname: str, home: str) -> list[str]:
    """Docker's defaults (PATH, HOSTNAME, TERM), then the container's env.

    ``config["Env"]`` is the image's env with the request's merged in already (at create).

    A bare ``KEY`` unsets KEY, as dockerd's ``ReplaceOrAppendEnvValues`` does; the
    CLI has already filled it from the client's environment (never the daemon's).
    """
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    if config.get("Tty"):
        env["TERM"] = "xterm"
    for item in config.get("Env") or []:
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
        else:
            env.pop(key, None)
    env.setdefault("HOME", home)
    return [f"{k}={v}" for k, v in env.items()]


def command_of(image_config: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """Entrypoint + Cmd, Docker's rules: a new entrypoint drops the image's Cmd."""
    entrypoint = config.get("Entrypoint")
    if entrypoint is not None:
        if isinstance(entrypoint, str):
            entrypoint = [entrypoint]
        cmd = config.get("Cmd") or []
    else:
        entrypoint = image_config.get("Entrypoint") or []
        cmd = config.get("Cmd") or image_config.get("Cmd") or []
    if isinstance(cmd, str):
        cmd = [cmd]
    args = [*entrypoint, *cmd]
    if not args or entrypoint == [""] and not cmd:
        raise InvalidArgument("no command specified",
                              hint="give a command after the image name, or use an image with CMD")
    return [a for a in args] if args[0] else args[1:]


_DB_LIMIT = 4 << 20  # bytes of /etc/passwd or /etc/group read at most


def _read_db(rootfs: str, name: str) -> list[list[str]]:
    """The rows of the container's ``/etc/NAME``; [] if it is missing or not a regular file.

    The container may have replaced the file (a FIFO would block the daemon's
    thread, a device could be endless): only a regular file is read, and only
    its first ``_DB_LIMIT`` bytes."""
    try:
        fd = os.open(secure_join(rootfs, f"/etc/{name}"),
                     os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        text = f.read(_DB_LIMIT).decode("utf-8", "replace")
    return [line.split(":") for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


def user_names(rootfs: str) -> dict[int, str]:
    """uid → name from the container's ``/etc/passwd`` (for ``top``)."""
    names: dict[int, str] = {}
    for row in _read_db(rootfs, "passwd"):
        if len(row) >= 3 and row[2].isdigit():
            names.setdefault(int(row[2]), row[0])
    return names


def resolve_user(rootfs: str, user: str) -> tuple[int, int, list[int], str]:
    """``user[:group]`` (names or numbers) → uid, gid, extra groups, home; from the image's files."""
    name, _, group = (user or "0").partition(":")
    passwd = _read_db(rootfs, "passwd")
    groups = _read_db(rootfs, "group")
    uid = gid = None
    home = "/"
    for row in passwd:
        if len(row) >= 6 and (row[0] == name or row[2] == name):
            uid, gid, home = int(row[2]), int(row[3]), row[5] or "/"
            break
    if uid is None:
        if not name.isdigit():
            raise InvalidArgument(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid, home = int(name), 0, "/"
    if group:
        for row in groups:
            if len(row) >= 3 and (row[0] == group or row[2] == group):
                gid = int(row[2])
                break
        else:
            if not group.isdigit():
                raise InvalidArgument(f"unable to find group {group}: no matching entries in group file")
            gid = int(group)
    user_name = next((row[0] for row in passwd if len(row) >= 3 and row[2] == str(uid)), None)
    extra = sorted({int(row[2]) for row in groups if len(row) >= 4 and user_name
                    and user_name in row[3].split(",") and int(row[2]) != gid})
    return uid, gid or 0, extra, home


def additional_groups(rootfs: str, groups: list[str]) -> list[int]:
    """``--group-add`` entries (names from the image's /etc/group, or numbers) as gids."""
    rows = _read_db(rootfs, "group")
    out = []
    for group in groups:
        gid = next((int(row[2]) for row in rows if len(row) >= 3 and row[0] == group
                    and row[2].isdigit()), None)
        if gid is None:
            if not group.isdigit():
                raise InvalidArgument(f"unable to find group {group}: no matching entries in group file")
            gid = int(group)
        out.append(gid)
    return out


# Docker's ulimit names (``--ulimit NAME=SOFT[:HARD]``), each an RLIMIT_NAME.
ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
           "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")


def _rlimits(ulimits: list[JSON]) -> list[oci.Rlimit]:
    """The daemon's open-files limit raised to its hard limit, then the request's ``Ulimits``."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = {"nofile": (hard, hard)}
    for u in ulimits:
        name = str(u.get("Name") or "").lower()
        if name not in ULIMITS:
            raise InvalidArgument(f"invalid ulimit {name!r}: use one of {', '.join(ULIMITS)}")
        soft, hard_limit = int(u.get("Soft", 0)), int(u.get("Hard", 0))
        if soft > hard_limit:
            raise InvalidArgument(f"ulimit {name}: soft limit {soft} is above the hard limit "
                                  f"{hard_limit}")
        limits[name] = (soft, hard_limit)
    return [{"type": f"RLIMIT_{name.upper()}", "soft": soft, "hard": hard}
            for name, (soft, hard) in limits.items()]


_SCMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "arm": "SCMP_ARCH_ARM",
              "386": "SCMP_ARCH_X86", "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X",
              "riscv64": "SCMP_ARCH_RISCV64"}


def _custom_seccomp(text: str, caps: list[str]) -> dict[str, Any]:
    """A Docker seccomp profile (``--security-opt seccomp=FILE``, sent as its content) in OCI form.

    As moby's ``seccomp.setupSeccomp``: ``archMap`` picks the native architecture and its
    sub-architectures; a rule applies only when its ``includes``/``excludes`` (caps,
    arches) match this container; ``minKernel`` is not checked.
    """
    try:
        profile = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"decoding seccomp profile failed: {exc}") from None
    if not isinstance(profile, dict):
        raise InvalidArgument("decoding seccomp profile failed: not a JSON object")
    goarch = go_arch()
    native = _SCMP_ARCH.get(goarch, "")
    arches = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            arches = [native, *(entry.get("subArchitectures") or [])]
    out: dict[str, Any] = {"defaultAction": profile.get("defaultAction"), "architectures": arches,
                           "syscalls": []}
    for key in ("defaultErrnoRet", "flags", "listenerPath"):
        if profile.get(key) is not None:
            out[key] = profile[key]
    for rule in profile.get("syscalls") or []:
        inc, excl = rule.get("includes") or {}, rule.get("excludes") or {}
        if not all(c in caps for c in inc.get("caps") or []) \
                or any(c in caps for c in excl.get("caps") or []) \
                or (inc.get("arches") and goarch not in inc["arches"]) \
                or goarch in (excl.get("arches") or []):
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        oci = {"names": names, "action": rule.get("action")}
        for key in ("errnoRet", "args"):
            if rule.get(key) is not None:
                oci[key] = rule[key]
        out["syscalls"].append(oci)
    return out


def _security_opts(host: dict[str, Any]) -> dict[str, str]:
    """``SecurityOpt`` as key → value (``key=value`` or Docker's older ``key:value``)."""
    opts = {}
    for opt in host.get("SecurityOpt") or []:
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        opts[key] = value if sep else ("true" if key == "no-new-privileges" else "")
    return opts


def _seccomp(host: JSON, caps: list[str]) -> oci.SeccompProfile | None:
    if host.get("Privileged"):
        return None
    value = _security_opts(host).get("seccomp", "")
    if value == "unconfined":
        return None
    if value and value != "builtin":
        return _custom_seccomp(value, caps)
    return seccomp_profile(caps)


def check_config(config: dict[str, Any], host: dict[str, Any]) -> None:
    """What dockerd refuses at create, before anything is made: a start would only fail later."""
    workdir = config.get("WorkingDir") or ""
    if workdir and not workdir.startswith("/"):
        raise InvalidArgument(f"the working directory '{workdir}' is invalid, it needs to be an "
                              "absolute path")
    stop_signal = config.get("StopSignal")
    if stop_signal:
        name = str(stop_signal).upper()
        try:
            signal.Signals(int(name)) if name.isdigit() else \
                signal.Signals[name if name.startswith("SIG") else "SIG" + name]
        except (KeyError, ValueError):
            raise InvalidArgument(f"invalid signal: {stop_signal}") from None
    caps = capabilities(host)
    opts = _security_opts(host)
    if opts.get("no-new-privileges", "true") not in ("", "true", "false", "1", "0"):
        raise InvalidArgument(f"invalid --security-opt no-new-privileges={opts['no-new-privileges']}")
    if opts.get("seccomp") not in (None, "", "unconfined", "builtin"):
        seccomp.validate(_custom_seccomp(opts["seccomp"], caps))
    _rlimits(host.get("Ulimits") or [])


def resources_of(host: dict[str, Any]) -> dict[str, Any]:
    """HostConfig's resource fields as OCI ``linux.resources`` (dockerd's conversions)."""
    out: dict[str, Any] = {}
    memory = int(host.get("Memory") or 0)
    swap = int(host.get("MemorySwap") or 0)
    if memory > 0:
        # Docker: without --memory-swap a container may swap as much as its memory.
        out["memory"] = {"limit": memory, "swap": swap if swap else 2 * memory}
    if host.get("MemoryReservation"):
        out.setdefault("memory", {})["reservation"] = int(host["MemoryReservation"])
    cpu: dict[str, Any] = {}
    if host.get("NanoCpus"):
        cpu = {"quota": int(host["NanoCpus"]) * CPU_PERIOD // 1_000_000_000, "period": CPU_PERIOD}
    elif host.get("CpuQuota"):
        cpu = {"quota": int(host["CpuQuota"]), "period": int(host.get("CpuPeriod") or CPU_PERIOD)}
    if host.get("CpuShares"):
        cpu["shares"] = int(host["CpuShares"])
    if cpu:
        out["cpu"] = cpu
    if host.get("PidsLimit"):
        out["pids"] = {"limit": int(host["PidsLimit"])}
    return out


def build_spec(record: Record, image_config: JSON, rootfs: str,
               files: dict[str, str], mounts: list[oci.Mount],
               init_path: str | None = None, cgroups_path: str = "",
               resources: oci.Resources | None = None,
               netns: str | None = None) -> oci.Spec:
    """The config.json of the container ``record``.

    ``files`` names the per-container hostname, hosts and resolv.conf;
    ``mounts`` are volume, bind and tmpfs mounts already resolved to OCI form;
    ``cgroups_path`` (OCI ``linux.cgroupsPath``) and ``resources`` are given when the
    container gets a cgroup of its own.
    """
    config, host = record.config, record.host_config
    caps = capabilities(host)
    process = _process(record, image_config, rootfs, caps, init_path)
    namespaces = _namespaces(host, netns)
    sys_mount = _sys_mount(namespaces, bool(host.get("Privileged")))
    if cgroups_path:
        # Docker's private cgroup namespace (its default on cgroup v2): the container
        # sees its own cgroup as / and a read-only cgroup2 of it at /sys/fs/cgroup.
        namespaces.append({"type": "cgroup"})
    oci_mounts = _mounts(host, sys_mount, files, mounts, init_path, bool(cgroups_path))
    spec: oci.Spec = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs, "readonly": bool(host.get("ReadonlyRootfs"))},
        "hostname": config.get("Hostname") or "",
        "mounts": oci_mounts,
        "linux": _linux(host, namespaces, caps, cgroups_path, resources),
    }
    if config.get("Domainname"):
        spec["domainname"] = config["Domainname"]
    return spec


def _process(record: Record, image_config: JSON, rootfs: str, caps: list[str],
             init_path: str | None) -> oci.Process:
    """The spec's ``process``: what runs, as whom, where, with what."""
    config, host = record.config, record.host_config
    uid, gid, extra, home = resolve_user(rootfs, config.get("User") or "")
    args = [record.path, *record.args]
    if host.get("Init"):
        if not init_path:
            raise InvalidArgument("--init: no init binary on the daemon's PATH",
                                  hint="install tini (Debian's tini-static) or docker-init")
        args = ["/sbin/docker-init", "--", *args]
    no_new_privs = _security_opts(host).get("no-new-privileges", "false") in ("", "true", "1")
    extra += [g for g in additional_groups(rootfs, host.get("GroupAdd") or []) if g not in extra]
    return {
        "terminal": bool(config.get("Tty")),
        "user": {"uid": uid, "gid": gid, "additionalGids": extra},
        "args": args,
        "env": env_of(config, config.get("Hostname") or "", home),
        "cwd": config.get("WorkingDir") or image_config.get("WorkingDir") or "/",
        "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
        "rlimits": _rlimits(host.get("Ulimits") or []),
        "noNewPrivileges": no_new_privs,
    }


def _namespaces(host: JSON, netns: str | None) -> list[oci.Namespace]:
    """The namespaces the runtime makes or joins (the user namespace is the shim's)."""
    namespaces: list[oci.Namespace] = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    network_mode = host.get("NetworkMode") or "none"
    if netns:
        # The shim makes the namespace (rctr.netstack); container:NAME joins NAME's.
        namespaces.append({"type": "network", "path": netns})
    elif network_mode != "host" and not network_mode.startswith("container:"):
        namespaces.append({"type": "network"})
    return namespaces


def _sys_mount(namespaces: list[oci.Namespace], privileged: bool) -> oci.Mount:
    """/sys: a sysfs of the container's network namespace, or the host's bound."""
    sys_mount: oci.Mount = {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                                 "options": ["nosuid", "noexec", "nodev", "ro"]}
    if not any(ns["type"] == "network" for ns in namespaces):
        # sysfs needs a network namespace of our own; bind the host's instead.
        sys_mount = {"destination": "/sys", "type": "bind", "source": "/sys",
                     "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
    if privileged:
        # dockerd drops "ro" from /sys for --privileged (WithMounts in oci_linux.go).
        sys_mount["options"].remove("ro")
    return sys_mount


def _mounts(host: JSON, sys_mount: oci.Mount, files: dict[str, str], mounts: list[oci.Mount],
            init_path: str | None, cgroupns: bool) -> list[oci.Mount]:
    """Docker's standard mounts, then the request's, then the per-container files and init."""
    oci_mounts: list[oci.Mount] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777",
                     f"size={int(host.get('ShmSize') or DEFAULT_SHM_SIZE)}"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        sys_mount,
    ]
    if cgroupns:
        oci_mounts.append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                           "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]})
    # Volumes and binds first: the per-container files go over them (a volume at /etc
    # still shows the container's hostname), as Docker orders them.
    oci_mounts += mounts
    for dest, key in (("/etc/resolv.conf", "resolv.conf"), ("/etc/hostname", "hostname"),
                      ("/etc/hosts", "hosts")):
        if not any(m["destination"] == dest for m in mounts):
            oci_mounts.append({"destination": dest, "type": "bind", "source": files[key],
                               "options": ["rbind", "rprivate"]})
    if host.get("Init") and init_path:
        oci_mounts.append({"destination": "/sbin/docker-init", "type": "bind", "source": init_path,
                           "options": ["rbind", "ro"]})
    return oci_mounts


def _linux(host: JSON, namespaces: list[oci.Namespace], caps: list[str], cgroups_path: str,
           resources: oci.Resources | None) -> oci.Linux:
    """The spec's ``linux``: namespaces, sysctls, masked paths, seccomp and the cgroup."""
    linux_: oci.Linux = {"namespaces": namespaces, "sysctl": dict(host.get("Sysctls") or {})}
    if not host.get("Privileged"):
        linux_["maskedPaths"] = list(MASKED_PATHS)
        linux_["readonlyPaths"] = list(READONLY_PATHS)
    profile = _seccomp(host, caps)
    if profile is not None:
        linux_["seccomp"] = profile
    if cgroups_path:
        linux_["cgroupsPath"] = cgroups_path
        linux_["resources"] = resources or {}  # given with cgroups_path (an object, not null)
    return linux_
