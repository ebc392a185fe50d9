"""A throw-away local registry for tests: Debian's ``docker-registry`` on 127.0.0.1.

``Registry`` starts ``/usr/bin/docker-registry`` (distribution v2.8) on a free
loopback port with its own storage directory and config, optionally behind
htpasswd Basic auth, and stops it on exit.  ``push_oci_layout`` and
``push_index`` fill it with plain urllib, independently of rctr's own client,
so a pull test does not test rctr against itself.

Nothing here talks to any host but 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

__all__ = ["Registry", "push_oci_layout", "push_index", "blob_data_path", "bcrypt_hash"]

REGISTRY_BIN = "/usr/bin/docker-registry"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
_START_TIMEOUT = 20.0


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for htpasswd: the ``bcrypt`` module, ``htpasswd``, or glibc's libcrypt.

    distribution accepts only bcrypt in htpasswd files.  Debian 12's libxcrypt
    does bcrypt, so the last fallback needs no extra package.
    """
    try:
        import bcrypt  # type: ignore[import-not-found]

        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()  # type: ignore[no-any-return]
    except ImportError:
        pass
    if shutil.which("htpasswd"):
        out = subprocess.run(["htpasswd", "-nbB", "-C", "5", "x", password], check=True,
                             capture_output=True, text=True, timeout=30).stdout
        return out.strip().split(":", 1)[1]
    import ctypes

    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = lib.crypt_gensalt(b"$2b$", 5, None, 0)
    hashed = lib.crypt(password.encode(), salt) if salt else None
    if not hashed or not hashed.startswith(b"$2"):
        raise RuntimeError("no bcrypt: install the bcrypt module or apache2-utils (htpasswd)")
    return hashed.decode()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """``with Registry(htpasswd={"user": "pw"}) as reg: reg.host, reg.url, reg.storage``."""

    def __init__(self, htpasswd: dict[str, str] | None = None, realm: str = "rctr-test") -> None:
        self.htpasswd = htpasswd
        self.realm = realm
        self.dir = ""
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def storage(self) -> str:
        """The registry's storage root; blobs are under docker/registry/v2/blobs/sha256/XX/HEX/data."""
        return os.path.join(self.dir, "data")

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            f"  secret: {os.urandom(16).hex()}",
        ]
        if self.htpasswd is not None:
            path = os.path.join(self.dir, "htpasswd")
            with open(path, "w") as f:
                for user, password in self.htpasswd.items():
                    f.write(f"{user}:{bcrypt_hash(password)}\n")
            lines += ["auth:", "  htpasswd:", f"    realm: {self.realm}", f"    path: {path}"]
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:
            f.write("\n".join(lines) + "\n")
        return config

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/v2/", timeout=2) as resp:
                resp.read()
            return True
        except urllib.error.HTTPError as exc:
            exc.close()
            return True  # 401 behind htpasswd: it is up
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "registry.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def start(self) -> Registry:
        self.dir = tempfile.mkdtemp(prefix="rctr-test-registry-")
        for _ in range(3):  # the free port can be taken between probe and bind
            self.port = _free_port()
            config = self._config()
            self._log = open(os.path.join(self.dir, "registry.log"), "ab")
            self.proc = subprocess.Popen([REGISTRY_BIN, "serve", config], stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            deadline = time.monotonic() + _START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._answers():
                    return self
                time.sleep(0.1)
            self._stop_process()
        log = self.log()
        self.stop()
        raise RuntimeError(f"docker-registry did not start within {_START_TIMEOUT}s:\n{log}")

    def _stop_process(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        self._stop_process()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def blob_data_path(storage: str, digest: str) -> str:
    """Where distribution's filesystem driver keeps a blob's bytes."""
    hexdigest = digest.split(":", 1)[1]
    return os.path.join(storage, "docker", "registry", "v2", "blobs", "sha256",
                        hexdigest[:2], hexdigest, "data")


# --------------------------------------------------------------------------
# pushing with plain urllib
# --------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _call(method: str, url: str, auth: tuple[str, str] | None, data: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
            return resp.status, dict(resp.headers.items())
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        exc.close()
        if method == "HEAD" and exc.code == 404:
            return 404, {}
        raise RuntimeError(f"{method} {url}: HTTP {exc.code}: {body}") from None


def _push_blob(url: str, repo: str, data: bytes, auth: tuple[str, str] | None) -> str:
    digest = _sha256(data)
    status, _ = _call("HEAD", f"{url}/v2/{repo}/blobs/{digest}", auth)
    if status == 200:
        return digest
    _, headers = _call("POST", f"{url}/v2/{repo}/blobs/uploads/", auth, data=b"")
    location = urllib.parse.urljoin(url + "/", headers["Location"])
    sep = "&" if "?" in location else "?"
    _call("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}", auth, data=data,
          headers={"Content-Type": "application/octet-stream"})
    return digest


def _put_manifest(url: str, repo: str, reference: str, data: bytes, media_type: str,
                  auth: tuple[str, str] | None) -> str:
    _call("PUT", f"{url}/v2/{repo}/manifests/{reference}", auth, data=data,
          headers={"Content-Type": media_type})
    return _sha256(data)


def _layout_blob(layout_dir: str, digest: str) -> bytes:
    with open(os.path.join(layout_dir, "blobs", "sha256", digest.split(":", 1)[1]), "rb") as f:
        return f.read()


def _layout_manifest(layout_dir: str) -> tuple[dict[str, Any], bytes]:
    with open(os.path.join(layout_dir, "index.json"), "rb") as f:
        index = json.load(f)
    desc = index["manifests"][0]
    return desc, _layout_blob(layout_dir, desc["digest"])


def _push_image(url: str, layout_dir: str, repo: str, manifest_raw: bytes,
                auth: tuple[str, str] | None) -> None:
    manifest = json.loads(manifest_raw)
    for desc in [manifest["config"], *manifest["layers"]]:
        _push_blob(url, repo, _layout_blob(layout_dir, desc["digest"]), auth)


def push_oci_layout(registry_url: str, layout_dir: str, repo: str, tag: str,
                    auth: tuple[str, str] | None = None) -> str:
    """Push the layout's (first) image as ``repo:tag``; returns the manifest digest."""
    desc, raw = _layout_manifest(layout_dir)
    _push_image(registry_url, layout_dir, repo, raw, auth)
    return _put_manifest(registry_url, repo, tag, raw, desc.get("mediaType", MT_MANIFEST), auth)


def push_index(registry_url: str, layout_dir: str, repo: str, tag: str,
               auth: tuple[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Push a two-platform OCI index as ``repo:tag``: the layout's image and a fake ``arm64`` twin.

    The twin reuses the layers (so it runs nowhere, but it pulls) with a
    config whose architecture is ``arm64``.  Returns, per architecture and for
    ``"index"``, ``{"manifest": digest, "config": digest}``.
    """
    desc, raw = _layout_manifest(layout_dir)
    manifest = json.loads(raw)
    host_arch = (desc.get("platform") or {}).get("architecture") or \
        json.loads(_layout_blob(layout_dir, manifest["config"]["digest"]))["architecture"]
    other_arch = "arm64" if host_arch != "arm64" else "amd64"
    _push_image(registry_url, layout_dir, repo, raw, auth)
    host_digest = _put_manifest(registry_url, repo, _sha256(raw), raw, MT_MANIFEST, auth)

    config = json.loads(_layout_blob(layout_dir, manifest["config"]["digest"]))
    config["architecture"] = other_arch
    config_raw = _json_bytes(config)
    config_digest = _push_blob(registry_url, repo, config_raw, auth)
    twin = dict(manifest, config={"mediaType": MT_CONFIG, "digest": config_digest,
                                  "size": len(config_raw)})
    twin_raw = _json_bytes(twin)
    twin_digest = _put_manifest(registry_url, repo, _sha256(twin_raw), twin_raw, MT_MANIFEST, auth)

    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [
        {"mediaType": MT_MANIFEST, "digest": host_digest, "size": len(raw),
         "platform": {"os": "linux", "architecture": host_arch}},
        {"mediaType": MT_MANIFEST, "digest": twin_digest, "size": len(twin_raw),
         "platform": {"os": "linux", "architecture": other_arch}},
    ]}
    index_raw = _json_bytes(index)
    index_digest = _put_manifest(registry_url, repo, tag, index_raw, MT_INDEX, auth)
    return {
        "index": {"manifest": index_digest, "config": ""},
        host_arch: {"manifest": host_digest, "config": manifest["config"]["digest"]},
        other_arch: {"manifest": twin_digest, "config": config_digest},
    }
