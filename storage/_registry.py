"""Pulling (and pushing) images over the OCI distribution API, with the standard library only.

Nothing a registry sends is trusted: a manifest fetched by digest must hash to
it, every blob goes through ``BlobStore.put`` (which checks size and digest
before the rename), and the image index is written last, by the same
``_register`` a load uses, so a failed pull leaves blobs at most, never an
image.  Blobs the store already holds are not downloaded again.

Transport follows Docker: HTTPS, except plain HTTP for loopback registries and
the ones the caller lists as insecure (a host, host:port, or a CIDR holding the
host's address).  A pull tries the registry's mirrors first, in order, then the
registry itself (as containerd's hosts and Podman's registries.conf do); the
image keeps the name it was asked by.  Authentication follows the
registry's ``WWW-Authenticate`` challenge (Bearer token or Basic) with the
credentials of :class:`AuthStore`, the files Docker and Podman write.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import os
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from rctr.core.atomic import write_json_atomic
from rctr.core.errors import InvalidArgument, NotFound, RctrError, Unavailable, Unsupported

from ._blobs import BlobStore, DigestMismatch
from ._images import ImageIndex, ImageRecord
from ._layout import check_digest
from ._load import (MAX_JSON, MEDIA_TYPES, Manifest, Prepare, _json, _register,
                    choose_manifest, descriptor, parse_index, parse_manifest)
from ._reference import Reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any

    from ._blobs import Readable

__all__ = ["RegistryClient", "AuthStore", "pull", "registry_endpoint", "is_loopback",
           "PullProgress"]

PullProgress = Callable[[str, int, int], None]  # (digest, done, total)

INDEX_TYPES = (MEDIA_TYPES["oci_index"], MEDIA_TYPES["docker_list"])
MANIFEST_TYPES = (MEDIA_TYPES["oci_manifest"], MEDIA_TYPES["docker_manifest"])
_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v1+prettyjws")
_MAX_MANIFEST = MAX_JSON  # distribution refuses larger manifests too
_MAX_REDIRECTS = 5
_CHUNK = 1 << 20
_DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = ("docker.io", "registry-1.docker.io", "index.docker.io",
                       "https://index.docker.io/v1/")


def registry_endpoint(registry: str) -> str:
    """The host to talk to for a reference's registry: Docker Hub's name is not its API host."""
    return "registry-1.docker.io" if registry == _DOCKER_HUB else registry


def _host_name(host: str) -> str:
    """``host`` without its port: ``name:port``, ``[v6]:port``, or a bare name or address."""
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host[1:]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    """``localhost``, ``127.*`` or ``[::1]``, with or without a port: spoken to in plain HTTP."""
    name = _host_name(host)
    return name in ("localhost", "::1") or name.startswith("127.")


def _registry_key(registry: str) -> str:
    """Docker Hub's aliases folded into ``docker.io``, as references name it."""
    return _DOCKER_HUB if registry in _DOCKER_HUB_ALIASES else registry


def _networks(entries: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    for entry in entries:
        if "/" in entry:
            try:
                out.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                pass
    return out


def _in_networks(host: str, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """``host`` (host:port, [v6]:port) is an address inside one of ``nets``."""
    if not nets:
        return False
    try:
        addr = ipaddress.ip_address(_host_name(host))
    except ValueError:
        return False
    return any(addr in net for net in nets)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip()


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="x",service="y"`` → ("bearer", {"realm": "x", "service": "y"})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip(" ,").lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = i + 1
            value = []
            while end < len(rest) and rest[end] != '"':
                if rest[end] == "\\" and end + 1 < len(rest):
                    end += 1
                value.append(rest[end])
                end += 1
            params[key] = "".join(value)
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end + 1
    return scheme.lower(), params


# --------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------


def _host_key(key: str) -> str:
    """An ``auths`` key as a bare host: Docker writes ``https://index.docker.io/v1/``."""
    if "://" in key:
        key = urllib.parse.urlsplit(key).netloc
    return key.split("/", 1)[0]


class AuthStore:
    """Registry credentials, in the files Docker and Podman already use.

    Read, first match wins: ``$XDG_RUNTIME_DIR/containers/auth.json`` (Podman's,
    and where :meth:`login` writes), ``~/.config/containers/auth.json``, then
    ``~/.docker/config.json``.  Credential helpers (``credsStore``) are not
    supported: only inline ``"auth": base64(user:password)`` entries.
    """

    def __init__(self, paths: list[str] | None = None, login_path: str | None = None) -> None:
        home = os.path.expanduser("~")
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        defaults = ([os.path.join(runtime, "containers", "auth.json")] if runtime else []) + [
            os.path.join(config, "containers", "auth.json"),
            os.path.join(home, ".docker", "config.json"),
        ]
        self.paths = list(paths) if paths is not None else defaults
        self.login_path = login_path or (self.paths[0] if self.paths else defaults[0])

    @staticmethod
    def _read(path: str) -> dict[str, Any]:  # a Docker config.json, as it is
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"cannot read credentials from {path}: {exc}") from None
        return data if isinstance(data, dict) else {}

    def get(self, host: str) -> tuple[str, str] | None:
        """(user, password) for ``host`` (a registry name or its API host), or None."""
        wanted = {host, registry_endpoint(host)}
        if wanted & set(_DOCKER_HUB_ALIASES):
            wanted |= {_host_key(a) for a in _DOCKER_HUB_ALIASES}
        for path in self.paths:
            auths = self._read(path).get("auths") or {}
            for key, entry in auths.items():
                if _host_key(key) not in wanted or not isinstance(entry, dict):
                    continue
                creds = self._decode(entry, path, key)
                if creds:
                    return creds
        return None

    @staticmethod
    def _decode(entry: dict[str, Any], path: str, key: str) -> tuple[str, str] | None:
        if entry.get("username") and entry.get("password"):
            return str(entry["username"]), str(entry["password"])
        raw = entry.get("auth")
        if not raw:
            return None
        try:
            user, sep, password = base64.b64decode(raw).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument(f"{path}: the credentials for {key} are not base64(user:password)",
                                  hint=f"rctr login {key}") from None
        return (user, password) if sep else None

    def login(self, host: str, user: str, password: str) -> str:
        """Record credentials for ``host`` (0600, written atomically); returns the file."""
        if not host or "/" in host or not user or ":" in user:
            raise InvalidArgument(f"cannot log in to {host!r} as {user!r}: bad host or user name")
        path = self.login_path
        data = self._read(path)
        auths = data.setdefault("auths", {})
        if not isinstance(auths, dict):
            raise InvalidArgument(f"{path}: \"auths\" is not an object")
        auths[host] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        write_json_atomic(path, data, 0o600)
        return path

    def logout(self, host: str) -> bool:
        """Forget ``host`` in the login file; False when it held nothing for it."""
        data = self._read(self.login_path)
        if host not in (data.get("auths") or {}):
            return False
        del data["auths"][host]
        write_json_atomic(self.login_path, data, 0o600)
        return True


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------


class _Response:
    """An HTTP response together with its connection, so closing one closes both."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                 url: str) -> None:
        self.conn, self.resp, self.url = conn, resp, url
        self.status = resp.status

    def header(self, name: str) -> str | None:
        return self.resp.getheader(name)

    def read(self, n: int | None = None) -> bytes:
        return self.resp.read(n)

    def read_limited(self, limit: int, what: str) -> bytes:
        data = self.resp.read(limit + 1)
        if len(data) > limit:
            raise InvalidArgument(f"{what} is larger than {limit} bytes")
        return data

    def close(self) -> None:
        self.resp.close()
        self.conn.close()

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Retry(Exception):
    """A failure worth another attempt (connection error, 5xx, 429)."""


def _error_detail(resp: _Response) -> str:
    try:
        body = json.loads(resp.read_limited(64 << 10, "error body"))
        errors = body.get("errors") or []
        return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
                         for e in errors) or ""
    except (ValueError, OSError, http.client.HTTPException, RctrError, AttributeError):
        return ""


class RegistryClient:
    """One client per operation or per process; safe to share between threads.

    ``blobs_fetched`` and ``manifests_fetched`` count what came over the wire,
    so callers (and tests) can see that a second pull downloads no blob.
    """

    def __init__(self, *, auth: AuthStore | None = None,
                 insecure: Iterable[str] = frozenset(),
                 mirrors: Mapping[str, Sequence[str]] | None = None,
                 retries: int = 3, timeout: float = 60) -> None:
        self.auth = auth
        self.insecure = frozenset(insecure)
        self._insecure_nets = _networks(self.insecure)
        self.mirrors = {_registry_key(k): tuple(v) for k, v in (mirrors or {}).items()}
        self.retries = max(0, retries)
        self.timeout = timeout
        self.blobs_fetched = 0
        self.bytes_fetched = 0
        self.manifests_fetched = 0
        self._tokens: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._ssl = ssl.create_default_context()

    # -- transport ---------------------------------------------------------

    def base_url(self, registry: str) -> str:
        host = registry_endpoint(registry)
        plain = is_loopback(host) or host in self.insecure or registry in self.insecure \
            or _in_networks(host, self._insecure_nets)
        return f"{'http' if plain else 'https'}://{host}"

    def sources(self, ref: Reference) -> list[Reference]:
        """Where to pull ``ref`` from, in order: its registry's mirrors, then the registry."""
        return [Reference(mirror, ref.repository, ref.tag, ref.digest)
                for mirror in self.mirrors.get(_registry_key(ref.registry), ())] + [ref]

    def _connect(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urllib.parse.urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.netloc, timeout=self.timeout,
                                               context=self._ssl), target
        if parts.scheme == "http":
            return http.client.HTTPConnection(parts.netloc, timeout=self.timeout), target
        raise InvalidArgument(f"unsupported URL scheme in {url!r}")

    def _send(self, method: str, url: str, headers: dict[str, str],
              body: bytes | Readable | None = None) -> _Response:
        """One request, following redirects for GET and HEAD (never carrying auth to another host)."""
        headers = dict(headers)
        for _ in range(_MAX_REDIRECTS + 1):
            conn, target = self._connect(url)
            try:
                conn.request(method, target, body=body, headers=headers)
                resp = conn.getresponse()
            except BaseException:
                conn.close()
                raise
            location = resp.getheader("Location")
            if resp.status in (301, 302, 303, 307, 308) and location and method in ("GET", "HEAD"):
                resp.close()
                conn.close()
                new = urllib.parse.urljoin(url, location)
                if urllib.parse.urlsplit(new).netloc != urllib.parse.urlsplit(url).netloc:
                    headers.pop("Authorization", None)
                url = new
                continue
            return _Response(conn, resp, url)
        raise Unavailable(f"too many redirects fetching {url}")

    def _sleep(self, attempt: int) -> None:
        time.sleep(0.2 * (2 ** attempt))

    def request(self, ref: Reference, method: str, path: str, *, headers: dict[str, str] | None = None,
                body: bytes | Readable | None = None, push: bool = False,
                scope: str | None = None) -> _Response:
        """A request to ``ref``'s registry, authenticated on challenge, retried when worth it.

        Returns the response for any status below 400 (the caller reads and
        closes it); turns 4xx into rctr errors, retries connection errors,
        5xx and 429 with backoff at most ``retries`` times.
        """
        host = registry_endpoint(ref.registry)
        if scope is None:
            scope = f"repository:{ref.repository}:{'pull,push' if push else 'pull'}"
        url = self.base_url(ref.registry) + path
        attempt = 0
        authenticated = False
        last: str = ""
        while True:
            hdrs = dict(headers or {})
            with self._lock:
                token = self._tokens.get((host, scope))
            if token:
                hdrs["Authorization"] = token
            if body is not None and hasattr(body, "seek"):
                body.seek(0)
            try:
                resp = self._send(method, url, hdrs, body)
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
                if attempt >= self.retries:
                    break
                self._sleep(attempt)
                attempt += 1
                continue
            if resp.status == 401 and not authenticated:
                challenge = resp.header("WWW-Authenticate") or ""
                resp.close()
                self._authenticate(ref.registry, host, scope, challenge)
                authenticated = True
                continue
            if resp.status == 429 or resp.status >= 500:
                last = f"HTTP {resp.status} {_error_detail(resp)}".strip()
                resp.close()
                if attempt >= self.retries:
                    break
                self._sleep(attempt)
                attempt += 1
                continue
            if resp.status >= 400:
                self._raise(ref, resp, method, path)
            return resp
        raise Unavailable(f"{method} {url} failed after {attempt + 1} attempts: {last}",
                          hint="check the registry is reachable and retry")

    def _raise(self, ref: Reference, resp: _Response, method: str, path: str) -> None:
        status = resp.status
        detail = _error_detail(resp)
        resp.close()
        registry = ref.registry
        what = f"{method} {path} on {registry}: HTTP {status}" + (f" ({detail})" if detail else "")
        if status == 401:
            has_creds = bool(self.auth and self.auth.get(registry))
            if has_creds:
                raise Unavailable(f"{registry} refused the credentials: {what}",
                                  hint=f"rctr login {registry}")
            raise Unavailable(f"{registry}: authentication required: {what}",
                              hint=f"rctr login {registry}")
        if status == 403:
            raise Unavailable(f"{registry} denied access to {ref.repository}: {what}",
                              hint=f"check your rights on the repository, or rctr login {registry}")
        if status == 404:
            kind = "manifest" if "/manifests/" in path else "blob" if "/blobs/" in path else "path"
            raise NotFound(f"{kind} unknown: {ref}: {what}")
        raise InvalidArgument(f"the registry refused the request: {what}")

    def _credentials(self, registry: str) -> tuple[str, str] | None:
        return self.auth.get(registry) if self.auth else None

    def _authenticate(self, registry: str, host: str, scope: str, challenge: str) -> None:
        """Answer a 401 challenge: cache the Authorization value for (host, scope)."""
        scheme, params = _parse_challenge(challenge)
        creds = self._credentials(registry)
        if scheme == "basic":
            if not creds:
                raise Unavailable(f"{registry}: authentication required", hint=f"rctr login {registry}")
            value = "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        elif scheme == "bearer":
            value = "Bearer " + self._token(registry, params, scope, creds)
        else:
            raise Unavailable(f"{registry}: authentication required (challenge {challenge!r})",
                              hint=f"rctr login {registry}")
        with self._lock:
            self._tokens[(host, scope)] = value

    def _token(self, registry: str, params: dict[str, str], scope: str,
               creds: tuple[str, str] | None) -> str:
        """A Bearer token from the challenge's realm (anonymous, or with Basic credentials)."""
        realm = params.get("realm")
        if not realm or urllib.parse.urlsplit(realm).scheme not in ("http", "https"):
            raise Unavailable(f"{registry}: bad Bearer challenge (realm {realm!r})")
        query = {k: v for k, v in (("service", params.get("service")),
                                   ("scope", params.get("scope") or scope)) if v}
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        if creds:
            headers["Authorization"] = "Basic " + base64.b64encode(
                f"{creds[0]}:{creds[1]}".encode()).decode()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(attempt - 1)
            try:
                with self._send("GET", url, headers) as resp:
                    if resp.status == 429 or resp.status >= 500:
                        last = f"HTTP {resp.status}"
                        continue
                    if resp.status in (401, 403):
                        if creds:
                            raise Unavailable(f"{registry} refused the credentials",
                                              hint=f"rctr login {registry}")
                        raise Unavailable(f"{registry}: authentication required",
                                          hint=f"rctr login {registry}")
                    if resp.status != 200:
                        raise Unavailable(f"{registry}: token server answered HTTP {resp.status}")
                    body = _json(resp.read_limited(1 << 20, "token response"), "token response")
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            token = body.get("token") or body.get("access_token")
            if not isinstance(token, str) or not token:
                raise Unavailable(f"{registry}: the token server sent no token")
            return token
        raise Unavailable(f"{registry}: cannot get a token from {realm}: {last}")

    # -- pull --------------------------------------------------------------

    def get_manifest(self, ref: Reference, accept_index: bool = True) -> tuple[bytes, str, str]:
        """(raw bytes, media type, digest) of the manifest ``ref`` names.

        Fetched by digest, the bytes must hash to it; fetched by tag, they
        must hash to the ``Docker-Content-Digest`` the registry announces.
        """
        reference = ref.digest or ref.tag or "latest"
        accept = list(MANIFEST_TYPES) + (list(INDEX_TYPES) if accept_index else [])
        path = f"/v2/{ref.repository}/manifests/{reference}"
        with self.request(ref, "GET", path, headers={"Accept": ", ".join(accept)}) as resp:
            try:
                raw = resp.read_limited(_MAX_MANIFEST, f"manifest {ref}")
            except (OSError, http.client.HTTPException) as exc:
                raise Unavailable(f"reading manifest {ref} from {ref.registry} failed: "
                                  f"{type(exc).__name__}: {exc}", hint="retry the pull") from None
            announced = resp.header("Docker-Content-Digest")
            media_type = _media_type(resp.header("Content-Type"))
        with self._lock:
            self.manifests_fetched += 1
        digest = _sha256(raw)
        if ref.digest and digest != ref.digest:
            raise DigestMismatch(f"manifest {ref} hashes to {digest}, not {ref.digest}")
        if announced and announced.startswith("sha256:") and announced != digest:
            raise DigestMismatch(f"manifest {ref} hashes to {digest}, not the {announced} "
                                 "the registry announced")
        if media_type not in INDEX_TYPES + MANIFEST_TYPES:
            try:
                media_type = json.loads(raw).get("mediaType") or media_type
            except (ValueError, AttributeError, RecursionError):
                pass
        if media_type in _SCHEMA1:
            raise Unsupported(f"{ref} is a Docker schema 1 manifest, which rctr does not pull")
        if media_type not in INDEX_TYPES + MANIFEST_TYPES:
            raise Unsupported(f"{ref}: unsupported manifest media type {media_type!r}")
        return raw, media_type, digest

    def fetch_blob(self, ref: Reference, digest: str, size: int | None, out: BlobStore,
                   on_progress: Callable[[int], None] | None = None) -> None:
        """Stream blob ``digest`` of ``ref``'s repository into ``out`` (which verifies it).

        A blob already in the store is not downloaded.  A connection lost
        mid-body is retried; a digest mismatch is not (the registry's copy is bad).
        """
        check_digest(digest)
        if out.has(digest):
            return
        attempt = 0
        while True:
            try:
                with self.request(ref, "GET", f"/v2/{ref.repository}/blobs/{digest}") as resp:
                    length = resp.header("Content-Length")
                    if size is not None and length is not None and length.isdigit() \
                            and int(length) != size:
                        raise DigestMismatch(f"blob {digest}: the registry sends {length} bytes, "
                                             f"the manifest says {size}")
                    out.put(resp.resp, digest, size, on_progress)
                break
            except (OSError, http.client.HTTPException) as exc:
                if attempt >= self.retries:
                    raise Unavailable(f"fetching blob {digest} from {ref.registry} failed: {exc}",
                                      hint="retry the pull") from None
                self._sleep(attempt)
                attempt += 1
        with self._lock:
            self.blobs_fetched += 1
            self.bytes_fetched += size or 0

    # -- push --------------------------------------------------------------

    def has_blob(self, ref: Reference, digest: str) -> bool:
        try:
            with self.request(ref, "HEAD", f"/v2/{ref.repository}/blobs/{digest}", push=True):
                return True
        except NotFound:
            return False

    def push_blob(self, ref: Reference, digest: str, source: Readable | bytes,
                  size: int | None = None) -> bool:
        """Monolithic upload (POST, then PUT with the digest); False when the blob was there."""
        check_digest(digest)
        if self.has_blob(ref, digest):
            return False
        if isinstance(source, bytes):
            size = len(source)
        elif size is None:
            raise InvalidArgument(f"push_blob {digest}: a stream needs its size")
        with self.request(ref, "POST", f"/v2/{ref.repository}/blobs/uploads/", push=True,
                          headers={"Content-Length": "0"}) as resp:
            location = resp.header("Location")
            if resp.status != 202 or not location:
                raise Unavailable(f"{ref.registry}: upload not started (HTTP {resp.status})")
        parts = urllib.parse.urlsplit(location)
        target = parts.path + "?" + "&".join(
            x for x in (parts.query, urllib.parse.urlencode({"digest": digest})) if x)
        if parts.netloc and parts.netloc != registry_endpoint(ref.registry):
            raise Unsupported(f"{ref.registry}: uploads redirected to {parts.netloc}")
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        with self.request(ref, "PUT", target, headers=headers, body=source, push=True) as resp:
            if resp.status != 201:
                raise Unavailable(f"{ref.registry}: upload of {digest} answered HTTP {resp.status}")
        return True

    def put_manifest(self, ref: Reference, raw: bytes, media_type: str) -> str:
        """PUT a manifest under ``ref``'s tag (or digest); returns its digest."""
        digest = _sha256(raw)
        reference = ref.tag or ref.digest or digest
        headers = {"Content-Type": media_type, "Content-Length": str(len(raw))}
        with self.request(ref, "PUT", f"/v2/{ref.repository}/manifests/{reference}",
                          headers=headers, body=raw, push=True) as resp:
            if resp.status != 201:
                raise Unavailable(f"{ref.registry}: manifest PUT answered HTTP {resp.status}")
        return digest

    def ping(self, registry: str) -> None:
        """``GET /v2/`` with authentication: checks reachability and, after login, credentials."""
        probe = Reference(registry, "", None, None)
        with self.request(probe, "GET", "/v2/", scope="") as resp:
            resp.read()


# --------------------------------------------------------------------------
# pull
# --------------------------------------------------------------------------


def _fetch_layers(client: RegistryClient, ref: Reference, blobs: BlobStore,
                  layers: Sequence[tuple[str, int | None]], workers: int,
                  progress: PullProgress | None) -> None:
    """Fetch the layers concurrently; the first failure cancels what has not started."""
    unique = list(dict.fromkeys(layers))  # one download per digest (BlobStore's tmp names clash)
    todo = [(d, s) for d, s in unique if not blobs.has(d)]
    for d, s in unique:
        if blobs.has(d) and progress:
            progress(d, s or 0, s or 0)
    if not todo:
        return

    def one(digest: str, size: int | None) -> None:
        cb = (lambda done: progress(digest, done, size or 0)) if progress else None
        client.fetch_blob(ref, digest, size, blobs, cb)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="rctr-pull") as pool:
        futures = [pool.submit(one, d, s) for d, s in todo]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        errors = [exc for f in done if (exc := f.exception()) is not None]
        if errors:
            for f in pending:
                f.cancel()
            raise errors[0]


def pull(client: RegistryClient, ref: Reference, blobs: BlobStore, index: ImageIndex, *,
         platform: str | None = None, progress: PullProgress | None = None,
         workers: int = 3, prepare: Prepare | None = None) -> ImageRecord:
    """Pull ``ref`` into the store and return its image record.

    An index picks ``platform`` (default: this host's).  Manifest, config and
    layers are stored as verified blobs; the image index is written last, so
    a failure at any step leaves no image.  ``progress(digest, done, total)``
    is called from the download threads.

    A registry with mirrors is pulled from the first mirror that serves the
    whole image; blobs a failed mirror delivered are kept (they are verified).
    ``prepare(record)`` runs before the image is indexed (the daemon extracts it there).
    """
    sources = client.sources(ref)
    failures = []
    for source in sources:
        try:
            manifest, digest, resolved = _pull_manifests(client, source, blobs, platform,
                                                         workers, progress)
        except (RctrError, OSError, http.client.HTTPException) as exc:
            if source is not ref:
                failures.append(f"{source.registry}: {exc}")
                continue
            if not failures:
                raise
            tried = "; the mirrors failed too: " + "; ".join(failures)
            if isinstance(exc, RctrError):
                raise type(exc)(exc.message + tried, hint=exc.hint) from exc
            raise Unavailable(f"pulling {ref}: {exc}{tried}") from exc
        # Docker's RepoDigests: the name with the digest the reference resolved to (an
        # index's, for a multi-platform image), by which the image can be asked for again.
        names = [f"{ref.name}:{ref.tag}"] if ref.tag else []
        names.append(f"{ref.name}@{resolved}")
        return _register(blobs, index, digest, manifest, names, prepare)
    raise AssertionError("unreachable: the registry itself is the last source")


def _pull_manifests(client: RegistryClient, ref: Reference, blobs: BlobStore,
                    platform: str | None, workers: int,
                    progress: PullProgress | None
                    ) -> tuple[Manifest, str, str]:
    """Fetch ``ref``'s manifest, config and layers from ``ref.registry``; (manifest, its
    digest, the digest ``ref`` resolved to: the index's when it named an index)."""
    raw, media_type, digest = client.get_manifest(ref)
    resolved = digest
    if media_type in INDEX_TYPES:
        top = parse_index(raw, f"image index {ref}")
        desc = choose_manifest(top, platform)
        child_digest, _ = descriptor(desc, f"image index {ref}")
        if desc.get("mediaType") in INDEX_TYPES:
            raise Unsupported(f"{ref}: the index for {platform or 'this host'} points to another index")
        blobs.put_bytes(raw, digest)
        child = Reference(ref.registry, ref.repository, None, child_digest)
        raw, media_type, digest = client.get_manifest(child, accept_index=False)
        if media_type in INDEX_TYPES:
            raise Unsupported(f"{ref}: the index for {platform or 'this host'} points to another index")
    manifest = parse_manifest(raw, f"manifest {digest}")
    config_digest, config_size = descriptor(manifest["config"], f"manifest {digest} config")
    layers = [descriptor(d, f"manifest {digest} layer {i}") for i, d in enumerate(manifest["layers"])]
    for held, size in [(config_digest, config_size), *layers]:
        if blobs.has(held):
            blobs.check_held(held, size)
    blobs.put_bytes(raw, digest)
    client.fetch_blob(ref, config_digest, config_size, blobs)
    _fetch_layers(client, ref, blobs, layers, workers, progress)
    return manifest, digest, resolved
