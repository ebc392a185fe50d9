"""Loading and checking a bundle's config.json before anything is created.

Every check that can fail runs here, in the caller's process, so that bad
input costs one clear line and leaves no state, no process and no mount
behind.  The configuration stays a plain dict afterwards (it is written into
state.json as it is); this module only fills in defaults and absolute paths.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from rctr.core.oci import Linux, Process, Spec

from rctr.core.errors import InvalidArgument, NotFound
from rctr.core.linux import CAPABILITIES, NAMESPACE_FLAGS

__all__ = ["load_config", "validate_process", "RLIMITS"]

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
_HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
               "poststop")


def load_config(bundle: str) -> Spec:
    """Read and check ``bundle/config.json``; the root path comes back absolute."""
    bundle = os.path.abspath(bundle)
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise NotFound(f"no config.json in bundle {bundle}",
                       hint="write one with `rctr runtime spec --rootless`") from None
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from exc
    try:
        config: Spec = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise InvalidArgument(f"{path}: the top level must be a JSON object")
    _check(config, bundle)
    return config


def _fail(field: str, problem: str) -> NoReturn:
    raise InvalidArgument(f"config.json: {field}: {problem}")


def _need(cond: object, field: str, problem: str) -> None:
    if not cond:
        _fail(field, problem)


def _check(config: Spec, bundle: str) -> None:
    root = config.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str):
        _fail("root.path", "missing (the rootfs directory, relative to the bundle)")
    rootfs = os.path.normpath(os.path.join(bundle, root["path"]))
    if not os.path.isdir(rootfs):
        raise NotFound(f"rootfs {rootfs} does not exist or is not a directory")
    root["path"] = rootfs
    process = config.get("process")
    if not isinstance(process, dict):
        _fail("process", "missing")
    validate_process(process, "process")
    linux = config.setdefault("linux", {})
    _need(isinstance(linux, dict), "linux", "must be an object")
    _check_namespaces(linux)
    for key, maps in (("uidMappings", linux.get("uidMappings")),
                      ("gidMappings", linux.get("gidMappings"))):
        for i, idmap in enumerate(maps or []):
            _need(isinstance(idmap, dict) and all(isinstance(idmap.get(k), int) and idmap[k] >= 0
                                                  for k in ("containerID", "hostID", "size")),
                  f"linux.{key}[{i}]", "needs non-negative integers containerID, hostID, size")
    for i, m in enumerate(config.get("mounts") or []):
        _need(isinstance(m, dict) and isinstance(m.get("destination"), str)
              and m["destination"].startswith("/"),
              f"mounts[{i}].destination", "must be an absolute path")
        _need(isinstance(m.get("options", []), list), f"mounts[{i}].options", "must be a list")
    hooks = config.get("hooks") or {}
    _need(isinstance(hooks, dict), "hooks", "must be an object")
    for kind, entries in hooks.items():
        _need(kind in _HOOK_KINDS, f"hooks.{kind}", "unknown hook kind")
        for i, hook in enumerate(entries or []):
            _need(isinstance(hook, dict) and isinstance(hook.get("path"), str)
                  and hook["path"].startswith("/"),
                  f"hooks.{kind}[{i}].path", "must be an absolute path")
    if linux.get("seccomp"):
        from rctr.core import seccomp

        seccomp.validate(linux["seccomp"])


def _check_namespaces(linux: Linux) -> None:
    seen = set()
    for i, ns in enumerate(linux.get("namespaces") or []):
        kind = ns.get("type") if isinstance(ns, dict) else None
        _need(kind in NAMESPACE_FLAGS, f"linux.namespaces[{i}].type",
              f"unknown namespace {kind!r} (known: {', '.join(NAMESPACE_FLAGS)})")
        _need(kind not in seen, f"linux.namespaces[{i}]", f"{kind} namespace given twice")
        seen.add(kind)
        path = ns.get("path")
        if path:
            _need(os.path.exists(path), f"linux.namespaces[{i}].path", f"{path} does not exist")
    _need("mount" in seen, "linux.namespaces", "a mount namespace is required")


def validate_process(process: Process, field: str) -> None:
    """Check a process object (the container's, or an exec's process.json)."""
    args = process.get("args")
    _need(isinstance(args, list) and args and all(isinstance(a, str) for a in args),
          f"{field}.args", "must be a non-empty list of strings")
    _need(isinstance(process.get("cwd", "/"), str) and process.get("cwd", "/").startswith("/"),
          f"{field}.cwd", "must be an absolute path")
    user = process.setdefault("user", {"uid": 0, "gid": 0})
    _need(isinstance(user, dict) and isinstance(user.get("uid", 0), int)
          and isinstance(user.get("gid", 0), int), f"{field}.user", "needs integer uid and gid")
    env = process.setdefault("env", [])
    _need(isinstance(env, list) and all(isinstance(e, str) for e in env), f"{field}.env",
          "must be a list of KEY=VALUE strings")
    for i, rl in enumerate(process.get("rlimits") or []):
        _need(isinstance(rl, dict) and rl.get("type") in RLIMITS, f"{field}.rlimits[{i}].type",
              f"unknown rlimit {rl.get('type') if isinstance(rl, dict) else rl!r}")
    caps = process.get("capabilities") or {}
    for kind, names in caps.items():
        for name in names or []:
            _need(name in CAPABILITIES, f"{field}.capabilities.{kind}",
                  f"unknown capability {name!r}")
