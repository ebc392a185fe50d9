"""A container's volumes, binds and tmpfs: from the request to records, and to OCI mounts.

``plan`` turns ``Binds``, ``Mounts``, ``Tmpfs`` and the image's ``Volumes``
into Docker's ``Mounts`` records at create; ``to_oci`` turns those records
into the bundle's mounts at start.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from rctr.core.errors import InvalidArgument

if TYPE_CHECKING:
    from rctr.core import oci

__all__ = ["plan", "to_oci", "make_bind_source"]

_BIND_OPTIONS = {"ro", "rw", "z", "Z", "nocopy", "private", "rprivate", "shared", "rshared",
                 "slave", "rslave", "consistent", "cached", "delegated"}


def _check_dest(dest: str) -> str:
    if not dest.startswith("/"):
        raise InvalidArgument(f"invalid mount config: the mount point {dest!r} is not an absolute path")
    if os.path.normpath(dest) == "/":
        raise InvalidArgument("invalid mount config: the mount point cannot be '/'")
    return os.path.normpath(dest)


def _parse_bind(spec: str) -> dict[str, Any]:
    parts = spec.split(":")
    if len(parts) == 1:
        return {"Type": "volume", "Name": "", "Destination": _check_dest(parts[0]), "RW": True,
                "Mode": ""}
    if len(parts) > 3:
        raise InvalidArgument(f"invalid volume specification: {spec!r}")
    source, dest = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else ""
    for opt in filter(None, mode.split(",")):
        if opt not in _BIND_OPTIONS:
            raise InvalidArgument(f"invalid mode {opt!r} in volume specification {spec!r}")
    rw = "ro" not in mode.split(",")
    if source.startswith("/"):
        return {"Type": "bind", "Source": os.path.normpath(source), "Destination": _check_dest(dest),
                "Mode": mode, "RW": rw, "Propagation": "rprivate", "Create": True}
    if not source:
        raise InvalidArgument(f"invalid volume specification: {spec!r}")
    return {"Type": "volume", "Name": source, "Destination": _check_dest(dest), "RW": rw,
            "Mode": mode, "NoCopy": "nocopy" in mode.split(",")}


def _parse_mount(m: dict[str, Any]) -> dict[str, Any]:
    kind = (m.get("Type") or "volume").lower()
    dest = _check_dest(m.get("Target") or m.get("Destination") or "")
    rw = not m.get("ReadOnly")
    if kind == "bind":
        source = m.get("Source") or ""
        if not source.startswith("/"):
            raise InvalidArgument(f"invalid mount config for type \"bind\": invalid source {source!r}: "
                                  "it must be an absolute path")
        if not os.path.exists(source):
            raise InvalidArgument(f"invalid mount config for type \"bind\": bind source path does "
                                  f"not exist: {source}")
        return {"Type": "bind", "Source": os.path.normpath(source), "Destination": dest,
                "Mode": "", "RW": rw, "Propagation": "rprivate"}
    if kind == "volume":
        opts = m.get("VolumeOptions") or {}
        return {"Type": "volume", "Name": m.get("Source") or "", "Destination": dest, "RW": rw,
                "Mode": "", "NoCopy": bool(opts.get("NoCopy"))}
    if kind == "tmpfs":
        opts = m.get("TmpfsOptions") or {}
        options = []
        if opts.get("SizeBytes"):
            options.append(f"size={int(opts['SizeBytes'])}")
        if opts.get("Mode"):
            options.append(f"mode={int(opts['Mode']):o}")
        return {"Type": "tmpfs", "Source": "", "Destination": dest, "RW": rw,
                "Mode": ",".join(options)}
    raise InvalidArgument(f"mount type {kind!r} is not supported (bind, volume, tmpfs)")


def plan(host_config: dict[str, Any], image_volumes: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The container's mounts as Docker records; volumes still without names are anonymous."""
    mounts: list[dict[str, Any]] = []
    for spec in host_config.get("Binds") or []:
        mounts.append(_parse_bind(spec))
    for m in host_config.get("Mounts") or []:
        mounts.append(_parse_mount(m))
    for dest, options in (host_config.get("Tmpfs") or {}).items():
        mounts.append({"Type": "tmpfs", "Source": "", "Destination": _check_dest(dest), "RW": True,
                       "Mode": options or ""})
    for dest in image_volumes or {}:
        if not any(m["Destination"] == os.path.normpath(dest) for m in mounts):
            mounts.append({"Type": "volume", "Name": "", "Destination": _check_dest(dest), "RW": True,
                           "Mode": ""})
    seen: set[str] = set()
    for m in mounts:
        if m["Destination"] in seen:
            raise InvalidArgument(f"Duplicate mount point: {m['Destination']}")
        seen.add(m["Destination"])
    return mounts


def make_bind_source(m: dict[str, Any]) -> None:
    """Create a ``-v`` bind's missing host directory, as dockerd does (``--mount`` refuses it)."""
    if m.pop("Create", False) and not os.path.exists(m["Source"]):
        try:
            os.makedirs(m["Source"], mode=0o755)
        except OSError as exc:
            raise InvalidArgument(f"error while creating mount source path '{m['Source']}': "
                                  f"mkdir {exc.filename}: {(exc.strerror or '').lower()}") from None


def to_oci(mounts: list[dict[str, Any]]) -> list[oci.Mount]:
    out: list[oci.Mount] = []
    # Parents before children, so /a is mounted before /a/b.
    for m in sorted(mounts, key=lambda m: m["Destination"].count("/")):
        if m["Type"] == "tmpfs":
            options = ["nosuid", "nodev", "noexec"]
            options += [o for o in m.get("Mode", "").split(",") if o]
            if not m["RW"]:
                options.append("ro")
            out.append({"destination": m["Destination"], "type": "tmpfs", "source": "tmpfs",
                        "options": options})
        else:
            options = ["rbind", "rprivate"]
            if not m["RW"]:
                options.append("ro")
            out.append({"destination": m["Destination"], "type": "bind", "source": m["Source"],
                        "options": options})
    return out
