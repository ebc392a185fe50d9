"""Registry credentials on the client side, in the files Docker and Podman use.

``rctr login`` checks the credentials with the daemon (``POST /auth``) and
keeps them where rctr's store looks for them (``rctr.storage.AuthStore``:
``$XDG_RUNTIME_DIR/containers/auth.json``, Podman's file); pull and push send
them as docker's CLI does, in ``X-Registry-Auth``.  The paths are repeated
here, not imported: the CLI does not import the store.
"""

from __future__ import annotations

import base64
import json
import os

from rctr.core.atomic import write_json_atomic

from ._refs import DEFAULT_REGISTRY

# For the type checker only (start-up imports: see _run_fastpath).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["auth_header", "login_path", "lookup", "remove", "save"]

_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io"}


def login_path() -> str:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "containers", "auth.json")
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(config, "containers", "auth.json")


def _paths() -> list[str]:
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return [login_path(), os.path.join(config, "containers", "auth.json"),
            os.path.expanduser("~/.docker/config.json")]


def _key(server: str) -> str:
    """``https://index.docker.io/v1/`` → ``docker.io``; ``host:5000/x`` → ``host:5000``."""
    host = server.split("://", 1)[-1].split("/", 1)[0].lower()
    return DEFAULT_REGISTRY if host in _HUB else host


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lookup(server: str) -> tuple[str, str] | None:
    """(user, password) for ``server``, first file that has it wins."""
    want = _key(server)
    for path in _paths():
        for key, entry in (_read(path).get("auths") or {}).items():
            if _key(key) == want and isinstance(entry, dict) and entry.get("auth"):
                try:
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    continue
                return user, password
    return None


def auth_header(server: str) -> str:
    """``X-Registry-Auth``: base64url of the JSON auth config (``{}`` when anonymous)."""
    found = lookup(server)
    config = {} if found is None else {"username": found[0], "password": found[1],
                                       "serveraddress": server}
    return base64.urlsafe_b64encode(json.dumps(config).encode()).decode()


def save(server: str, user: str, password: str) -> str:
    path = login_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    data = _read(path)
    auths = data.setdefault("auths", {})
    auths[_key(server)] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    write_json_atomic(path, data, 0o600)
    return path


def remove(server: str) -> bool:
    """Forget ``server`` in the login file; False if it was not there."""
    path = login_path()
    data = _read(path)
    auths = data.get("auths") or {}
    keys = [k for k in auths if _key(k) == _key(server)]
    for key in keys:
        del auths[key]
    if keys:
        write_json_atomic(path, data, 0o600)
    return bool(keys)
