"""Images under hostile input (issue 7), through a real rctrd as the test user.

Both ways an image comes in are fuzzed: ``rctr load`` (oci-archive and
docker-archive) and ``rctr pull``, from Debian's docker-registry for a
baseline and from ``hostile.FakeRegistry`` (127.0.0.1) for the lies a real
registry cannot tell: wrong digests, sizes and media types, endless bodies,
redirect loops.  Every hostile image must be refused by a non-zero exit and
one clear line naming what is wrong, with no traceback; afterwards the image
index is as it was, the store's tmp/ is empty, nothing was written outside the
store (canary paths), the daemon is the same process, and the test image
still runs.  Figures (cases refused, by kind) are printed at the end and
recorded with ``record_property``.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
import hostile  # noqa: E402
from daemonenv import IMAGE, RctrUser, ok  # noqa: E402
from hostile import MT, FakeRegistry, Image, Reply, entry, gz, sha256, tar_bytes  # noqa: E402
from registry import Registry, push_oci_layout  # noqa: E402
from test_image_fuzz_units import mutated  # noqa: E402

from rctr.core.arch import go_arch  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.requires("root", "user", "userns", "subuid")]

ARCH = go_arch()
ESCAPE = "/tmp/rctr-image-fuzz-escaped"  # a hostile layer aims here; it must never appear
TALLY: collections.Counter[str] = collections.Counter()
STARTED = time.monotonic()


def _escapes() -> list[tuple[str, list[tuple[tarfile.TarInfo, bytes]]]]:
    up = "../" * 12 + ESCAPE.lstrip("/")
    return [
        ("traversal-dotdot", [entry(up, b"x")]),
        ("traversal-absolute", [entry(ESCAPE, b"x")]),
        ("symlink-write-through", [entry("d", kind=tarfile.SYMTYPE, linkname="/tmp"),
                                   entry("d/rctr-image-fuzz-escaped", b"x")]),
        ("symlink-climbing", [entry("s", kind=tarfile.SYMTYPE, linkname=up)]),
        ("hardlink-outside", [entry("h", kind=tarfile.LNKTYPE, linkname=up)]),
        ("hardlink-absolute", [entry("h", kind=tarfile.LNKTYPE, linkname="/etc/shadow")]),
        ("size-lie-in-tar", [entry("f", b"short", size=1 << 20)]),
    ]


def _bomb(codec: str) -> bytes:
    """A small blob that inflates past 1.5 GiB: a tar header claiming it, then zeros."""
    size = 3 << 29
    header = entry("zeros", size=size)[0].tobuf(tarfile.GNU_FORMAT)
    if codec == "gzip":
        return hostile.gzip_bomb(size, header)
    import zstandard

    out = zstandard.ZstdCompressor(level=3).compressobj()
    block = b"\0" * (64 << 20)
    data = out.compress(header)
    for _ in range(size // len(block)):
        data += out.compress(block)
    return data + out.flush()


def _image(layer: bytes, **kw: Any) -> Image:
    return Image(layer=layer, arch=ARCH, **kw)


def _bad_manifests() -> dict[str, bytes]:
    """Manifests bent by hand: kinds of malformed, each must be refused."""
    base = _image(gz(tar_bytes([entry("ok", b"ok")])))
    m = base.manifest_dict()
    layer = m["layers"][0]

    def j(obj: Any) -> bytes:
        return hostile.canonical(obj)
    return {
        "json-malformed": b'{"schemaVersion": 2, "config": ',
        "json-not-object": b"[1, 2, 3]",
        "json-deep-nesting": b"[" * 200000 + b"]" * 200000,
        "schema-version-missing": j({k: v for k, v in m.items() if k != "schemaVersion"}),
        "schema-version-1": j(dict(m, schemaVersion=1)),
        "schema-version-string": j(dict(m, schemaVersion="2")),
        "media-type-wrong": j(dict(m, mediaType="text/html")),
        "media-type-index": j(dict(m, mediaType=MT["index"])),
        "config-missing": j({k: v for k, v in m.items() if k != "config"}),
        "config-not-object": j(dict(m, config="sha256:" + "a" * 64)),
        "layers-missing": j({k: v for k, v in m.items() if k != "layers"}),
        "layers-not-list": j(dict(m, layers={"0": layer})),
        "layer-digest-bad": j(dict(m, layers=[dict(layer, digest="sha256:../../etc")])),
        "layer-digest-md5": j(dict(m, layers=[dict(layer, digest="md5:" + "a" * 32)])),
        "layer-size-missing": j(dict(m, layers=[{k: v for k, v in layer.items() if k != "size"}])),
        "layer-size-negative": j(dict(m, layers=[dict(layer, size=-1)])),
        "layer-size-string": j(dict(m, layers=[dict(layer, size="3")])),
        "layer-media-type-foreign": j(dict(m, layers=[dict(layer, mediaType="application/wasm")])),
        "config-size-huge": j(dict(m, config=dict(m["config"], size=1 << 40))),
    }


def _bad_images() -> dict[str, Image]:
    """Well-formed manifests over lying configs and layers."""
    good_tar = tar_bytes([entry("ok", b"ok")])
    good = gz(good_tar)
    base = _image(good)
    cfg = base.config_obj
    assert cfg is not None
    images = {
        "config-diff-ids-too-many": _image(good, config_obj=dict(cfg, rootfs={
            "type": "layers", "diff_ids": base.diff_ids * 2})),
        "config-diff-ids-missing": _image(good, config_obj={k: v for k, v in cfg.items() if k != "rootfs"}),
        "config-diff-id-lie": _image(good, diff_ids=["sha256:" + "1" * 64]),
        "config-wrong-types": _image(good, config_obj=dict(cfg, config={"Labels": ["x"]})),
        "gzip-truncated": _image(good[:-20], diff_ids=base.diff_ids),
        "zstd-truncated": _image(hostile.zst(good_tar)[:-8], diff_ids=base.diff_ids),
        "gzip-bomb": _image(_bomb("gzip"), diff_ids=["sha256:" + "0" * 64]),
        "zstd-bomb": _image(_bomb("zstd"), diff_ids=["sha256:" + "0" * 64]),
    }
    for name, entries in _escapes():
        images[name] = _image(gz(tar_bytes(entries)))
    return images


BAD_MANIFESTS = _bad_manifests()
BAD_IMAGES = _bad_images()


# --------------------------------------------------------------------------
# fixtures and the checks every case ends with
# --------------------------------------------------------------------------


class State:
    def __init__(self, rc: RctrUser) -> None:
        self.rc = rc
        self.root = rc.data / "rctr" / "storage"
        self.canary = rc.shell.base / "canary"
        self.canary.write_text("canary\n")
        ok(rc.rctr("images", "-q"))  # starts rctrd
        self.pid = rc.daemon_pid()
        self.ids = self.image_ids()

    def image_ids(self) -> set[str]:
        with open(self.root / "images.json") as f:
            return set(json.load(f)["images"])

    def file(self, name: str, data: bytes) -> str:
        path = self.rc.shell.base / name
        path.write_bytes(data)
        os.chown(path, self.rc.shell.uid, self.rc.shell.gid)
        return str(path)

    def refused(self, kind: str, argv: list[str], record: Any, timeout: float = 120) -> str:
        r = self.rc.rctr(*argv, timeout=timeout)
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert r.returncode != 0, f"{kind}: accepted\n{r.stdout}\n{r.stderr}"
        assert "Traceback" not in r.stderr + r.stdout, r.stderr
        assert len(lines) == 1 and lines[0].startswith("Error response from daemon: "), r.stderr
        message = lines[0]
        for bad in ("KeyError", "TypeError", "AttributeError", "Internal Server Error"):
            assert bad not in message, message
        self.intact(kind)
        TALLY[":".join(kind.split(":")[:2])] += 1
        record("error", message)
        return message

    def intact(self, kind: str) -> None:
        assert self.image_ids() == self.ids, f"{kind}: the image index changed"
        assert os.listdir(self.root / "tmp") == [], f"{kind}: {os.listdir(self.root / 'tmp')}"
        assert not os.path.lexists(ESCAPE), f"{kind}: wrote {ESCAPE}"
        assert self.canary.read_text() == "canary\n"
        assert self.rc.daemon_pid() == self.pid, f"{kind}: rctrd changed or died"


@pytest.fixture(scope="module")
def state(rc: RctrUser) -> Any:
    if os.path.lexists(ESCAPE):
        os.unlink(ESCAPE)
    yield State(rc)


@pytest.fixture(scope="module")
def fake() -> Any:
    with FakeRegistry() as reg:
        yield reg


# --------------------------------------------------------------------------
# rctr load
# --------------------------------------------------------------------------


def _load_cases() -> dict[str, bytes]:
    cases: dict[str, bytes] = {}
    for name, raw in BAD_MANIFESTS.items():
        image = _image(gz(tar_bytes([entry("ok", b"ok")])))
        blobs = {**image.blobs(), sha256(raw): raw}
        desc = {"mediaType": MT["manifest"], "digest": sha256(raw), "size": len(raw)}
        cases[f"manifest:{name}"] = hostile.oci_archive(
            {"schemaVersion": 2, "manifests": [desc]}, blobs)
    for name, image in BAD_IMAGES.items():
        cases[f"image:{name}"] = hostile.image_archive(image)
        if "bomb" not in name and "truncated" not in name:
            cases[f"docker-archive:{name}"] = hostile.image_docker_archive(image)
    good = _image(gz(tar_bytes([entry("ok", b"ok")])))
    blobs = good.blobs()
    desc = good.descriptor()
    # a layer the store does not hold yet (a blob it holds is never read again)
    fresh = _image(gz(tar_bytes([entry("mismatch", b"m")])))
    wrong = fresh.blobs()
    wrong[sha256(fresh.layer)] = fresh.layer[:-1] + bytes([fresh.layer[-1] ^ 1])
    cases.update({
        "index:json-malformed": hostile.oci_archive(b'{"manifests": [', blobs),
        "index:no-manifests": hostile.oci_archive({"schemaVersion": 2, "manifests": []}, blobs),
        "index:no-platform": hostile.oci_archive({"schemaVersion": 2, "manifests": [{
            "mediaType": MT["index"], **_blob_desc(blobs, hostile.index_for(
                [Image(layer=good.layer, arch="s390x")]))}]}, {**blobs, **_blob(hostile.index_for(
                    [Image(layer=good.layer, arch="s390x")]))}),
        "index:nested": _nested_index_archive(good),
        "digest:blob-mismatch": hostile.oci_archive({"schemaVersion": 2, "manifests": [
            fresh.descriptor()]}, wrong),
        "size:descriptor-bigger": hostile.oci_archive({"schemaVersion": 2, "manifests": [
            dict(desc, size=desc["size"] + 100)]}, blobs),
        "size:descriptor-smaller": hostile.oci_archive({"schemaVersion": 2, "manifests": [
            dict(desc, size=desc["size"] - 1)]}, blobs),
        "size:descriptor-huge": hostile.oci_archive({"schemaVersion": 2, "manifests": [
            dict(desc, size=1 << 60)]}, blobs),
        "archive:truncated": hostile.image_archive(good)[:3000],
        "archive:garbage": os.urandom(4096),
        "archive:empty": b"",
        "docker-archive:manifest-not-list": hostile.docker_archive({"Config": "c"}, {}),
        "docker-archive:config-missing": hostile.docker_archive(
            [{"Config": "nope.json", "Layers": []}], {}),
        "docker-archive:layers-not-list": hostile.docker_archive(
            [{"Config": "c.json", "Layers": "l.tar"}], {"c.json": good.config}),
        "docker-archive:tag-bad": hostile.docker_archive(
            [{"Config": "c.json", "RepoTags": ["UPPER/Case:!!"], "Layers": ["l.tar"]}],
            {"c.json": good.config, "l.tar": tar_bytes([entry("ok", b"ok")])}),
    })
    return cases


def _blob(obj: Any) -> dict[str, bytes]:
    raw = hostile.canonical(obj)
    return {sha256(raw): raw}


def _blob_desc(_: Any, obj: Any) -> dict[str, Any]:
    raw = hostile.canonical(obj)
    return {"digest": sha256(raw), "size": len(raw)}


def _nested_index_archive(good: Image) -> bytes:
    inner = hostile.index_for([good])
    outer = {"schemaVersion": 2, "mediaType": MT["index"], "manifests": [
        {"mediaType": MT["index"], **_blob_desc(None, inner),
         "platform": {"os": "linux", "architecture": ARCH}}]}
    return hostile.oci_archive({"schemaVersion": 2, "manifests": [
        {"mediaType": MT["index"], **_blob_desc(None, outer)}]},
        {**good.blobs(), **_blob(inner), **_blob(outer)})


LOAD_CASES = _load_cases()


@pytest.mark.parametrize("kind", list(LOAD_CASES))
def test_load_refuses(state: State, kind: str, record_property: Any) -> None:
    path = state.file("hostile.tar", LOAD_CASES[kind])
    message = state.refused(f"load:{kind}", ["load", "-i", path], record_property)
    assert "bomb" not in kind or "larger than" in message, message


def test_load_skips_device_nodes(state: State) -> None:
    image = _image(gz(tar_bytes([entry("ok", b"ok"),
                                 entry("dev/mem", kind=tarfile.CHRTYPE, devmajor=1, devminor=1),
                                 entry("dev/sda", kind=tarfile.BLKTYPE, devmajor=8)])))
    path = state.file("devices.tar", hostile.image_archive(image, "fuzz/devices:latest"))
    ok(state.rc.rctr("load", "-i", path))
    ok(state.rc.rctr("rmi", "fuzz/devices:latest"))
    state.intact("devices")
    TALLY["accepted-with-devices-skipped"] += 1


# --------------------------------------------------------------------------
# rctr pull: a real registry for the baseline, a lying one for the rest
# --------------------------------------------------------------------------


def test_pull_from_a_real_registry(state: State, test_image: str) -> None:
    with Registry() as reg:
        push_oci_layout(reg.url, test_image, "fuzz/busybox", "latest")
        ok(state.rc.rctr("pull", f"{reg.host}/fuzz/busybox:latest", timeout=120))
    state.ids = state.image_ids()  # the same image id under one more name
    TALLY["pulled-from-real-registry"] += 1


def _pull_cases(fake: FakeRegistry) -> dict[str, str]:
    """Set the fake registry's routes; return {kind: reference}."""
    cases: dict[str, str] = {}
    host = fake.host

    def serve(kind: str, image: Image, **kw: Any) -> Image:
        repo = "fuzz/" + kind.replace(":", "-")
        fake.serve_image(repo, "t", image, **kw)
        cases[kind] = f"{host}/{repo}:t"
        return image

    for name, raw in BAD_MANIFESTS.items():
        serve(f"manifest:{name}", _image(gz(tar_bytes([entry("ok", b"ok")]))), manifest=raw)
    for name, image in BAD_IMAGES.items():
        serve(f"image:{name}", image)
    good = _image(gz(tar_bytes([entry("ok", b"ok")])))
    manifest_path = "/v2/fuzz/{}/manifests/t"

    def lie(kind: str, reply: Reply, path: str = "") -> None:
        # a layer of its own: a blob the store holds already is never fetched again
        image = serve(kind, _image(gz(tar_bytes([entry(kind.replace(":", "-"), b"x")]))))
        repo = kind.replace(":", "-")
        fake.routes[(path or f"/v2/fuzz/{{}}/blobs/{sha256(image.layer)}").format(repo)] = reply
    layer_path = "/v2/fuzz/{}/blobs/" + sha256(_image(gz(tar_bytes([
        entry("http-blob-redirect-loop", b"x")]))).layer)
    lie("digest:blob-content-wrong", Reply(body=good.layer[:-1] + b"\0"))  # wrong size too
    lie("digest:blob-content-wrong-same-size", Reply(body=good.layer[:-1] + b"\1"))
    lie("size:content-length-smaller", Reply(body=good.layer, length=len(good.layer) - 5))
    lie("size:content-length-bigger", Reply(body=good.layer, length=len(good.layer) + 5))
    lie("size:endless-blob", Reply(stream=True))
    lie("size:endless-blob-lying-length", Reply(stream=True, length=len(good.layer)))
    lie("http:blob-404", Reply(404, b"{}"))
    lie("http:blob-500", Reply(500, b"oops"))
    lie("http:blob-redirect-loop", Reply(302, headers={"Location": layer_path.format(
        "http-blob-redirect-loop")}))
    lie("http:manifest-redirect-loop", Reply(302, headers={
        "Location": manifest_path.format("http-manifest-redirect-loop")}), manifest_path)
    lie("size:manifest-endless", Reply(stream=True, headers={"Content-Type": MT["manifest"]}),
        manifest_path)
    lie("size:manifest-huge", Reply(body=b'{"schemaVersion":2,"pad":"' + b"x" * (5 << 20) + b'"}',
                                    headers={"Content-Type": MT["manifest"]}), manifest_path)
    lie("digest:manifest-announced-wrong", Reply(body=good.manifest, headers={
        "Content-Type": MT["manifest"], "Docker-Content-Digest": "sha256:" + "2" * 64}),
        manifest_path)
    lie("media-type:schema1", Reply(body=hostile.canonical(
        {"schemaVersion": 1, "name": "fuzz/x", "tag": "t", "fsLayers": [], "history": []}), headers={
        "Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"}),
        manifest_path)
    huge = dict(good.manifest_dict(), layers=[dict(good.manifest_dict()["layers"][0], size=1 << 60)])
    serve("size:layer-claims-exabyte", good, manifest=hostile.canonical(huge))
    # an index: no matching platform, nested, and a manifest served as an index
    other = Image(layer=good.layer, arch="s390x")
    fake.serve_image("fuzz/index-no-platform", "child", other)
    index = hostile.index_for([other])
    serve("index:no-platform", good, manifest=hostile.canonical(index), content_type=MT["index"])
    inner = hostile.canonical(hostile.index_for([good]))
    nested = {"schemaVersion": 2, "mediaType": MT["index"], "manifests": [
        {"mediaType": MT["index"], "digest": sha256(inner), "size": len(inner),
         "platform": {"os": "linux", "architecture": ARCH}}]}
    serve("index:nested", good, manifest=hostile.canonical(nested), content_type=MT["index"])
    fake.routes[f"/v2/fuzz/index-nested/manifests/{sha256(inner)}"] = Reply(
        body=inner, headers={"Content-Type": MT["index"]})
    serve("media-type:manifest-as-index", good, content_type=MT["index"])
    return cases


@pytest.fixture(scope="module")
def pull_cases(fake: FakeRegistry) -> dict[str, str]:
    return _pull_cases(fake)


def _kinds() -> list[str]:
    """The pull cases' names, without a server (a throw-away registry object)."""
    reg = FakeRegistry()
    reg.start()
    try:
        return list(_pull_cases(reg))
    finally:
        reg.stop()


@pytest.mark.parametrize("kind", _kinds())
def test_pull_refuses(state: State, pull_cases: dict[str, str], kind: str,
                      record_property: Any) -> None:
    message = state.refused(f"pull:{kind}", ["pull", pull_cases[kind]], record_property)
    assert "bomb" not in kind or "larger than" in message, message


_MUTATION_BASE = _image(gz(tar_bytes([entry("ok", b"ok")])))


@settings(max_examples=25, database=None, derandomize=True, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(doc=st.one_of(mutated(_MUTATION_BASE.manifest_dict()).map(lambda d: ("manifest", d)),
                     mutated(_MUTATION_BASE.config_obj).map(lambda d: ("config", d))))
def test_pull_mutations(state: State, fake: FakeRegistry, doc: tuple[str, Any]) -> None:
    """Random JSON mutations of a valid manifest or config, served with true digests:
    each is pulled whole or refused cleanly."""
    what, obj = doc
    if what == "manifest":
        image, raw = _MUTATION_BASE, hostile.canonical(obj)
    else:
        image = Image(layer=_MUTATION_BASE.layer, config_obj=obj)
        raw = image.manifest
    repo = f"fuzz/mutant-{sha256(raw)[7:19]}"
    fake.serve_image(repo, "t", image, manifest=raw)
    r = state.rc.rctr("pull", f"{fake.host}/{repo}:t", timeout=60)
    assert "Traceback" not in r.stderr + r.stdout
    if r.returncode == 0:
        ok(state.rc.rctr("rmi", f"{fake.host}/{repo}:t"))
        TALLY["mutation-accepted"] += 1
    else:
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error response from daemon: "), r.stderr
        TALLY[f"mutation-refused-{what}"] += 1
    state.intact(f"mutation {obj!r:.200}")


# --------------------------------------------------------------------------
# and after all that
# --------------------------------------------------------------------------


def test_the_store_and_the_daemon_survive(state: State, record_property: Any) -> None:
    ok(state.rc.rctr("run", "--rm", IMAGE, "true", timeout=120))
    listed = ok(state.rc.rctr("images", "--format", "{{.Repository}}")).stdout.split()
    assert not any(name.startswith("fuzz/") or "/fuzz/" in name
                   for name in listed if "busybox" not in name), listed
    state.intact("end")
    total = sum(v for k, v in TALLY.items() if k.startswith(("load:", "pull:", "mutation-refused")))
    summary = dict(sorted(TALLY.items()), seconds=round(time.monotonic() - STARTED, 1))
    print(f"\nimage fuzz: {total} hostile images refused; {summary}")
    for key, value in summary.items():
        record_property(key, value)
