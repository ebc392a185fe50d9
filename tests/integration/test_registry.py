"""Pulling from a real registry (Debian's docker-registry on 127.0.0.1), as the unprivileged user.

The registry runs as root in the test process and listens on loopback only;
rctr runs as the test user, so credentials and the store are the user's.
A fake registry in-process (also loopback) covers what distribution cannot
serve: Bearer tokens and transient 5xx.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from harness import UserShell
from registry import Registry, blob_data_path, push_index, push_oci_layout

pytestmark = [pytest.mark.integration, pytest.mark.requires("root", "user")]

REPO = "rctr-test/busybox"

_PULL = """
import json, sys
from rctr.core.errors import RctrError
from rctr.storage import Store, parse_reference
from rctr.storage._registry import AuthStore, RegistryClient, pull

store = Store(sys.argv[1])
client = RegistryClient(auth=AuthStore(), retries=1, timeout=20)
try:
    record = pull(client, parse_reference(sys.argv[2]), store.blobs, store.images,
                  platform=sys.argv[3] or None)
except RctrError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc),
                      "images": store.images.list()}))
    sys.exit(3)
print(json.dumps({"record": record, "fetched": client.blobs_fetched,
                  "manifests": client.manifests_fetched, "images": store.images.list()}))
"""

_LOGIN = """
import sys
from rctr.storage._registry import AuthStore
print(AuthStore().login(sys.argv[1], sys.argv[2], sys.argv[3]))
"""


def _pull(user: UserShell, ref: str, platform: str = "", store: str = "store") -> tuple[int, dict[str, Any]]:
    r = user.run([sys.executable, "-c", _PULL, str(user.base / store), ref, platform], timeout=90)
    assert r.returncode in (0, 3), r.stderr
    return r.returncode, json.loads(r.stdout)


def _layout_info(layout: str) -> dict[str, Any]:
    with open(os.path.join(layout, "index.json")) as f:
        desc = json.load(f)["manifests"][0]
    with open(os.path.join(layout, "blobs", "sha256", desc["digest"][7:]), "rb") as f:
        manifest = json.load(f)
    with open(os.path.join(layout, "blobs", "sha256", manifest["config"]["digest"][7:]), "rb") as f:
        config = json.load(f)
    return {"manifest": desc["digest"], "config": manifest["config"]["digest"],
            "layers": [d["digest"] for d in manifest["layers"]],
            "diff_ids": config["rootfs"]["diff_ids"]}


def _store_blobs_verified(root: str) -> list[str]:
    names = os.listdir(os.path.join(root, "blobs", "sha256"))
    for name in names:
        with open(os.path.join(root, "blobs", "sha256", name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == name
    return ["sha256:" + n for n in names]


@pytest.fixture
def registry(test_image: str) -> Iterator[Registry]:
    with Registry() as reg:
        push_oci_layout(reg.url, test_image, REPO, "latest")
        yield reg


def test_pull_then_pull_again_fetches_nothing(user: UserShell, test_image: str,
                                              registry: Registry) -> None:
    info = _layout_info(test_image)
    rc, out = _pull(user, f"{registry.host}/{REPO}:latest")
    assert rc == 0, out
    record = out["record"]
    assert record["id"] == record["config"] == info["config"]
    assert record["manifest"] == info["manifest"]
    assert record["diff_ids"] == info["diff_ids"]
    assert [layer["digest"] for layer in record["layers"]] == info["layers"]
    assert record["names"] == [f"{registry.host}/{REPO}:latest",
                               f"{registry.host}/{REPO}@{info['manifest']}"]
    assert out["fetched"] == 1 + len(info["layers"])  # the config and each layer
    stored = _store_blobs_verified(str(user.base / "store"))
    assert set(stored) >= {info["manifest"], info["config"], *info["layers"]}

    rc, out = _pull(user, f"{registry.host}/{REPO}:latest")
    assert rc == 0, out
    assert out["fetched"] == 0
    assert out["record"]["id"] == info["config"]
    assert len(out["images"]) == 1

    # By digest: the manifest is checked against the digest it was asked for.
    rc, out = _pull(user, f"{registry.host}/{REPO}@{info['manifest']}")
    assert rc == 0, out
    assert out["record"]["id"] == info["config"] and out["fetched"] == 0
    assert f"{registry.host}/{REPO}@{info['manifest']}" in out["record"]["names"]


def test_index_picks_the_host_platform_or_the_one_asked(user: UserShell, test_image: str,
                                                        registry: Registry) -> None:
    digests = push_index(registry.url, test_image, "rctr-test/multi", "latest")
    ref = f"{registry.host}/rctr-test/multi:latest"
    rc, out = _pull(user, ref)
    assert rc == 0, out
    assert out["record"]["config"] == digests["amd64"]["config"]
    assert out["record"]["manifest"] == digests["amd64"]["manifest"]
    assert out["record"]["platform"] == "linux/amd64"
    assert out["manifests"] == 2  # the index, then the manifest by digest

    rc, out = _pull(user, ref, platform="linux/arm64")
    assert rc == 0, out
    assert out["record"]["config"] == digests["arm64"]["config"]
    assert out["record"]["platform"] == "linux/arm64"
    assert out["fetched"] == 1  # only the new config: the layers are shared

    rc, out = _pull(user, ref, platform="linux/s390x")
    assert rc == 3 and out["error"] == "InvalidArgument"
    assert "linux/s390x" in out["message"]


def test_htpasswd_registry_needs_login(user: UserShell, test_image: str) -> None:
    creds = ("alice", "s3cret-pw")
    with Registry(htpasswd=dict([creds])) as reg:
        push_oci_layout(reg.url, test_image, REPO, "latest", auth=creds)
        ref = f"{reg.host}/{REPO}:latest"
        rc, out = _pull(user, ref)
        assert rc == 3 and out["error"] == "Unavailable", out
        assert "authentication required" in out["message"]
        assert f"rctr login {reg.host}" in out["message"]
        assert out["images"] == []

        r = user.run([sys.executable, "-c", _LOGIN, reg.host, "alice", "wrong"], timeout=30)
        assert r.returncode == 0, r.stderr
        rc, out = _pull(user, ref)
        assert rc == 3 and "refused the credentials" in out["message"], out

        r = user.run([sys.executable, "-c", _LOGIN, reg.host, *creds], timeout=30)
        assert r.returncode == 0, r.stderr
        path = r.stdout.strip()
        assert path == str(user.runtime_dir / "containers" / "auth.json")
        st = os.stat(path)
        assert st.st_uid == user.uid and st.st_mode & 0o777 == 0o600
        with open(path) as f:
            assert list(json.load(f)["auths"]) == [reg.host]

        rc, out = _pull(user, ref)
        assert rc == 0, out
        assert out["record"]["id"] == _layout_info(test_image)["config"]


def test_corrupted_blob_fails_and_leaves_no_image(user: UserShell, test_image: str,
                                                  registry: Registry) -> None:
    info = _layout_info(test_image)
    victim = blob_data_path(registry.storage, info["layers"][-1])
    with open(victim, "r+b") as f:  # same size, one byte flipped
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    rc, out = _pull(user, f"{registry.host}/{REPO}:latest")
    assert rc == 3 and out["error"] == "DigestMismatch", out
    assert info["layers"][-1] in out["message"]
    assert out["images"] == []
    root = str(user.base / "store")
    assert info["layers"][-1] not in _store_blobs_verified(root)
    assert os.listdir(os.path.join(root, "tmp")) == []


def test_unknown_tag_is_not_found(user: UserShell, registry: Registry) -> None:
    rc, out = _pull(user, f"{registry.host}/{REPO}:no-such-tag")
    assert rc == 3 and out["error"] == "NotFound", out
    assert "manifest unknown" in out["message"]
    rc, out = _pull(user, f"{registry.host}/rctr-test/nothing-here:latest")
    assert rc == 3 and out["error"] == "NotFound", out


# --------------------------------------------------------------------------
# What distribution cannot do: Bearer tokens and flaky answers (in-process, loopback)
# --------------------------------------------------------------------------


class _FakeRegistry(http.server.ThreadingHTTPServer):
    """Serves one OCI layout behind a Bearer token, failing the first requests with 503."""

    daemon_threads = True

    def __init__(self, layout: str, failures: int) -> None:
        super().__init__(("127.0.0.1", 0), _FakeHandler)
        self.layout = layout
        self.failures = failures
        self.token_requests: list[str] = []
        self.log: list[str] = []
        self.lock = threading.Lock()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _FakeHandler(http.server.BaseHTTPRequestHandler):
    server: _FakeRegistry

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        srv = self.server
        with srv.lock:
            srv.log.append(self.path)
            if srv.failures > 0:
                srv.failures -= 1
                self._send(503, b'{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}')
                return
        if self.path.startswith("/token?"):
            srv.token_requests.append(self.path)
            self._send(200, json.dumps({"token": "t0ken"}).encode())
            return
        if self.headers.get("Authorization") != "Bearer t0ken":
            challenge = (f'Bearer realm="http://{srv.host}/token",service="fake",'
                         f'scope="repository:{REPO}:pull"')
            self._send(401, b"{}", {"WWW-Authenticate": challenge})
            return
        blobs = os.path.join(srv.layout, "blobs", "sha256")
        if self.path == f"/v2/{REPO}/manifests/latest":
            with open(os.path.join(srv.layout, "index.json")) as f:
                digest = json.load(f)["manifests"][0]["digest"]
            with open(os.path.join(blobs, digest[7:]), "rb") as f:
                data = f.read()
            self._send(200, data, {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                                   "Docker-Content-Digest": digest})
            return
        prefix = f"/v2/{REPO}/blobs/sha256:"
        if self.path.startswith(prefix) and os.path.exists(os.path.join(blobs, self.path[len(prefix):])):
            with open(os.path.join(blobs, self.path[len(prefix):]), "rb") as f:
                self._send(200, f.read(), {"Content-Type": "application/octet-stream"})
            return
        self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')


def test_bearer_token_and_retries_on_503(user: UserShell, test_image: str) -> None:
    server = _FakeRegistry(test_image, failures=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # retries=1 in the script: two 503s in a row exhaust it, so allow the first pull to fail.
        rc, out = _pull(user, f"{server.host}/{REPO}:latest")
        assert rc == 3 and out["error"] == "Unavailable" and "503" in out["message"], out
        rc, out = _pull(user, f"{server.host}/{REPO}:latest")
        assert rc == 0, out
        assert out["record"]["id"] == _layout_info(test_image)["config"]
        assert server.token_requests, "no token was fetched"
        assert "service=fake" in server.token_requests[0]
        assert "scope=repository%3Arctr-test%2Fbusybox%3Apull" in server.token_requests[0]
        assert len(server.token_requests) == 1  # cached per (host, scope) for the whole pull
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


_PUSH = """
import json, sys
from rctr.storage import Store
first, second = Store(sys.argv[1]), Store(sys.argv[2])
first.load(sys.argv[3], name="rctr-test/busybox:latest")
remote = sys.argv[4] + "/mine/busybox:v1"
first.tag("rctr-test/busybox", remote)
pushed = first.push(remote)
again = first.push(remote)
pulled = second.pull(remote)
print(json.dumps({"pushed": pushed, "again": again, "pulled": pulled,
                  "original": first.images.get(remote)}))
"""


def test_push_then_pull_keeps_digests(user: UserShell, test_image: str) -> None:
    with Registry() as reg:
        r = user.run([sys.executable, "-c", _PUSH, str(user.base / "a"), str(user.base / "b"),
                      test_image, reg.host], timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["pushed"]["blobs_sent"] == 4 and out["pushed"]["blobs_skipped"] == 0
    assert out["again"]["blobs_sent"] == 0 and out["again"]["blobs_skipped"] == 4
    assert out["pushed"]["digest"] == out["original"]["manifest"]
    assert out["pulled"]["id"] == out["original"]["id"]
    assert out["pulled"]["manifest"] == out["original"]["manifest"]
    assert out["pulled"]["diff_ids"] == out["original"]["diff_ids"]
    by_digest = f"{reg.host}/mine/busybox@{out['pushed']['digest']}"  # RepoDigests, both sides
    assert by_digest in out["original"]["names"] and by_digest in out["pulled"]["names"]
