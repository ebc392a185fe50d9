"""``POST /auth``: check credentials against a registry (the CLI keeps them, as docker's does).

The check is ``GET /v2/`` answered through the registry's challenge, Basic or
Bearer, with the given credentials only (never ones stored on disk), over
plain HTTP for a loopback registry as everywhere else in the store.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING

from rctr.core.errors import NotFound, Unavailable
from rctr.storage import AuthStore, RegistryClient

from ._http import HTTPError, Request

if TYPE_CHECKING:
    from ._main import Daemon

__all__ = ["system_auth", "registry_host", "check"]

_DOCKER_HUB = "docker.io"
_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io", "docker.io")


class _Given(AuthStore):
    """Exactly the credentials of the request, for any host."""

    def __init__(self, username: str, password: str) -> None:
        super().__init__(paths=[])
        self.creds = (username, password)

    def get(self, host: str) -> tuple[str, str] | None:
        return self.creds


def registry_host(server: str) -> str:
    """The registry named by ``serveraddress``: a URL or a host, Docker Hub's aliases folded."""
    server = (server or "").strip()
    if "://" in server:
        server = urllib.parse.urlsplit(server).netloc
    server = server.split("/", 1)[0]
    if not server or server in _HUB_ALIASES:
        return _DOCKER_HUB
    return server


def check(server: str, username: str, password: str, timeout: float = 30,
          insecure: tuple[str, ...] = ()) -> None:
    """Raise HTTPError 401 when the registry refuses the credentials."""
    registry = registry_host(server)
    client = RegistryClient(auth=_Given(username, password), insecure=insecure, retries=0,
                            timeout=timeout)
    try:
        client.ping(registry)
    except Unavailable as exc:
        text = str(exc)
        if "refused the credentials" in text or "authentication required" in text or \
                "denied" in text:
            raise HTTPError(401, f"login attempt to {registry} failed with status: "
                                 "401 Unauthorized") from None
        raise HTTPError(500, f"cannot reach the registry {registry}: {text}") from None
    except NotFound:
        raise HTTPError(404, f"{registry} does not serve the registry API (GET /v2/ answered "
                             "404)") from None
    except OSError as exc:
        raise HTTPError(500, f"cannot reach the registry {registry}: {exc}") from None


def system_auth(daemon: Daemon, req: Request) -> None:
    body = req.json()
    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    username, password = body.get("username") or "", body.get("password") or ""
    if body.get("identitytoken"):
        raise HTTPError(400, "identity tokens are not supported: log in with a password")
    if not isinstance(username, str) or not isinstance(password, str) or \
            not username or not password:
        raise HTTPError(400, "username and password are required")
    check(str(body.get("serveraddress") or ""), username, password,
          insecure=daemon.config.insecure_registries)
    req.send_json({"Status": "Login Succeeded", "IdentityToken": ""})
