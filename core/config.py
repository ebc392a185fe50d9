"""rctr.toml: the user's settings, then the environment, then flags.

The file is ``$RCTR_CONFIG``, else ``$XDG_CONFIG_HOME/rctr/rctr.toml`` (default
``~/.config/rctr/rctr.toml``); a missing file means the built-in defaults.
Precedence, highest first: a flag, the environment (``RCTR_STORAGE_DRIVER``,
``RCTR_RUNTIME``, ``RCTR_NETWORK``, ``RCTR_LOG_LEVEL``), the file, the default.

    [storage]
    driver = "overlay"              # overlay | fuse-overlayfs | fusepy | vfs
    [network]
    default = "slirp4netns"         # what "default"/"bridge"/nothing means at create
    [registries]
    insecure = ["host:5000"]        # plain HTTP (loopback registries always are)
    [registries.mirrors]
    "docker.io" = ["mirror:5000"]   # tried in order before the registry itself
    [daemon]
    log_level = "info"              # debug | info | warning | error
    runtime = "rctr"                # rctr | crun | runc

``Config`` remembers where each setting came from (``source``), so an error
about a value names the file and key, the variable or the flag that set it.
Which storage drivers and network modes exist is the daemon's to check (it
owns those packages): :meth:`Config.invalid` builds that error.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from rctr.core.errors import InvalidArgument

__all__ = ["Config", "load_config", "parse_config", "config_path", "LOG_LEVELS", "RUNTIMES",
           "ENV_VARS", "FLAGS"]

LOG_LEVELS = ("debug", "info", "warning", "error")
RUNTIMES = ("rctr", "crun", "runc")
# setting -> its environment variable and its flag (rctrd, ``rctr system service``)
ENV_VARS = {"storage_driver": "RCTR_STORAGE_DRIVER", "runtime": "RCTR_RUNTIME",
            "network": "RCTR_NETWORK", "log_level": "RCTR_LOG_LEVEL"}
FLAGS = {"storage_driver": "--storage-driver", "runtime": "--runtime", "network": "--network",
         "log_level": "--log-level"}
DEFAULT_SOURCE = "built-in default"

_STRING, _LIST, _MIRRORS = "a string", "a list of strings", "a table of lists of strings"
# [table] -> key -> (setting, expected type, allowed values or None)
_SCHEMA: dict[str, dict[str, tuple[str, str, tuple[str, ...] | None]]] = {
    "storage": {"driver": ("storage_driver", _STRING, None)},
    "network": {"default": ("network", _STRING, None)},
    "registries": {"insecure": ("insecure_registries", _LIST, None),
                   "mirrors": ("registry_mirrors", _MIRRORS, None)},
    "daemon": {"log_level": ("log_level", _STRING, LOG_LEVELS),
               "runtime": ("runtime", _STRING, RUNTIMES)},
}
_KEY_OF = {setting: f"[{table}] {key}" for table, keys in _SCHEMA.items()
           for key, (setting, _, _) in keys.items()}
# host, host:port, [v6]:port, or a CIDR for insecure; no scheme, no path.
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?$")
_CIDR = re.compile(r"^[0-9A-Fa-f:.]+/[0-9]{1,3}$")


@dataclass(frozen=True)
class Config:
    """The effective settings; ``None`` means "let rctr decide" (probe, built-in mode)."""

    storage_driver: str | None = None
    network: str | None = None
    runtime: str = "rctr"
    log_level: str = "info"
    insecure_registries: tuple[str, ...] = ()
    registry_mirrors: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({}))
    path: str = ""           # the file looked at, read or not
    file_found: bool = False
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def source(self, setting: str) -> str:
        """Where ``setting`` came from: a flag, ``$VAR``, ``FILE: [table] key`` or the default."""
        return self.sources.get(setting, DEFAULT_SOURCE)

    def with_flags(self, **flags: str | None) -> Config:
        """This config with the flags that were given (None: not given) on top."""
        given = {k: v for k, v in flags.items() if v is not None}
        unknown = set(given) - set(FLAGS)
        if unknown:
            raise TypeError(f"not a flag setting: {', '.join(sorted(unknown))}")
        sources = dict(self.sources)
        sources.update({k: FLAGS[k] for k in given})
        out = dataclasses.replace(
            self, storage_driver=given.get("storage_driver", self.storage_driver),
            network=given.get("network", self.network), runtime=given.get("runtime", self.runtime),
            log_level=given.get("log_level", self.log_level), sources=MappingProxyType(sources))
        _check_choices(out)
        return out

    def invalid(self, setting: str, message: str, allowed: str) -> InvalidArgument:
        """The error for a bad value of ``setting``, naming where it was set."""
        return InvalidArgument(f"{self.source(setting)}: {message}", hint=allowed)

    def mirrors_for(self, registry: str) -> tuple[str, ...]:
        return self.registry_mirrors.get(registry, ())

    def describe(self) -> list[str]:
        """One line per setting with its origin, for the daemon's start-up log."""
        lines = [f"config file {self.path}" + ("" if self.file_found else " (none: defaults)")]
        for setting, label in (("storage_driver", "storage driver"), ("network", "default network"),
                               ("runtime", "runtime"), ("log_level", "log level"),
                               ("insecure_registries", "insecure registries"),
                               ("registry_mirrors", "registry mirrors")):
            value = getattr(self, setting)
            if setting == "registry_mirrors":
                value = "; ".join(f"{k} -> {', '.join(v)}" for k, v in value.items())
            elif setting == "insecure_registries":
                value = ", ".join(value)
            shown = value or {"storage_driver": "(probe)",
                              "network": "slirp4netns"}.get(setting, "(none)")
            lines.append(f"{label} {shown} ({self.source(setting)})")
        return lines


def config_path(env: Mapping[str, str]) -> str:
    """``$RCTR_CONFIG``, else ``$XDG_CONFIG_HOME/rctr/rctr.toml``, else ``~/.config/...``."""
    if env.get("RCTR_CONFIG"):
        return env["RCTR_CONFIG"]
    base = env.get("XDG_CONFIG_HOME") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".config")
    return os.path.join(base, "rctr", "rctr.toml")


def load_config(env: Mapping[str, str] = os.environ, path: str | None = None) -> Config:
    """The file (``path``, else :func:`config_path`) with the environment on top.

    A missing file gives the defaults; an unreadable or malformed one raises
    InvalidArgument naming the file and the key.  An explicit ``RCTR_CONFIG``
    that does not exist is an error too: the user named a file.
    """
    path = path or config_path(env)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        if env.get("RCTR_CONFIG") and path == env["RCTR_CONFIG"]:
            raise InvalidArgument(f"{path}: no such file (named by $RCTR_CONFIG)",
                                  hint="create it, or unset RCTR_CONFIG") from None
        values, found = {}, False
    except OSError as exc:
        raise InvalidArgument(f"{path}: cannot read: {exc.strerror}",
                              hint="fix its permissions, or move it away") from None
    else:
        values, found = parse_config(raw, path), True
    sources = {setting: f"{path}: {_KEY_OF[setting]}" for setting in values}
    for setting, var in ENV_VARS.items():
        if env.get(var):
            values[setting] = env[var]
            sources[setting] = f"${var}"
    # Each value has the type _SCHEMA checked it against (a str for the env's); mypy sees
    # only dict[str, object] and cannot tie a setting's name to its field's type.
    config = Config(**values,  # type: ignore[arg-type]  # values typed by _SCHEMA, not by name
                    path=path, file_found=found, sources=MappingProxyType(sources))
    _check_choices(config)
    return config


def parse_config(raw: bytes | str, path: str) -> dict[str, object]:
    """The settings a file sets (setting name -> value), checked against the schema."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"{path}: not valid TOML: {exc}",
                              hint="fix the file; see docs/config.md for the keys") from None
    out: dict[str, object] = {}
    for table, keys in doc.items():
        schema = _SCHEMA.get(table)
        if schema is None or not isinstance(keys, dict):
            raise InvalidArgument(f"{path}: unknown key {table!r}",
                                  hint="the tables are " + ", ".join(f"[{t}]" for t in _SCHEMA))
        for key, value in keys.items():
            if key not in schema:
                raise InvalidArgument(f"{path}: unknown key [{table}] {key}",
                                      hint=f"[{table}] knows " + ", ".join(schema))
            setting, kind, allowed = schema[key]
            out[setting] = _checked(path, f"[{table}] {key}", value, kind, allowed)
    return out


def _checked(path: str, key: str, value: object, kind: str,
             allowed: tuple[str, ...] | None) -> object:
    def bad(what: str, hint: str) -> InvalidArgument:
        return InvalidArgument(f"{path}: {key} {what}", hint=hint)

    if kind == _STRING:
        hint = f"use one of {', '.join(allowed)}" if allowed else "use a string"
        if not isinstance(value, str) or not value:
            raise bad(f"must be a non-empty string, not {_type_name(value)}", hint)
        if allowed and value not in allowed:
            raise bad(f"= {value!r} is not allowed", hint)
        return value
    if kind == _LIST:
        return _hosts(value, lambda what: bad(what, 'use a list such as ["host:5000", '
                                                    '"10.0.0.0/8"]'), cidr=True)
    if not isinstance(value, dict):
        raise bad(f"must be a table, not {_type_name(value)}",
                  'use [registries.mirrors] with lines such as "docker.io" = ["mirror:5000"]')
    mirrors: dict[str, tuple[str, ...]] = {}
    for registry, hosts in value.items():
        if not _HOST.match(registry):
            raise bad(f"has a bad registry name {registry!r}", "use host or host:port")

        def bad_hosts(what: str, r: str = registry) -> InvalidArgument:
            return bad(f'"{r}" {what}', f'use a list such as "{r}" = ["mirror.example:5000"]')

        mirrors[registry] = _hosts(hosts, bad_hosts, cidr=False)
    return MappingProxyType(mirrors)


def _hosts(value: object, bad: Callable[[str], InvalidArgument], *,
           cidr: bool) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise bad(f"must be {_LIST}, not {_type_name(value)}")
    for item in value:
        if not isinstance(item, str):
            raise bad(f"must be {_LIST}, but holds {_type_name(item)}")
        if not (_HOST.match(item) or (cidr and _CIDR.match(item))):
            raise bad(f"holds {item!r}, which is not host[:port]" + (" or a CIDR" if cidr else "")
                      + " (no scheme, no path)")
    return tuple(value)


def _check_choices(config: Config) -> None:
    for setting, allowed in (("runtime", RUNTIMES), ("log_level", LOG_LEVELS)):
        value = getattr(config, setting)
        if value not in allowed:
            raise config.invalid(setting, f"{setting.replace('_', ' ')} {value!r} is not allowed",
                                 f"use one of {', '.join(allowed)}")


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)
