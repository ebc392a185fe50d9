"""Image parsing fuzzed in-process (issue 7): thousands of hostile manifests, configs,
indexes, archives and layer streams against rctr.storage, no daemon.

Every input must either load whole or be refused with an ``RctrError`` (never another
exception), leaving the image index as it was, nothing under the store's tmp/, and
nothing written outside the layer directory.  Derandomized, no example database.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rctr.core.arch import go_arch
from rctr.core.errors import InvalidArgument, RctrError, Unavailable, Unsupported
from rctr.storage._blobs import BlobStore, DigestMismatch
from rctr.storage._extract import apply_layer, diff_digest
from rctr.storage._images import ImageIndex
from rctr.storage._layout import StoreLayout
from rctr.storage._load import (_unpack_oci_archive, descriptor, load_docker_archive,
                                load_oci_archive, load_oci_layout, parse_config, parse_index,
                                parse_manifest)
from rctr.storage._reference import parse_reference
from rctr.storage._registry import RegistryClient, pull

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
import hostile  # noqa: E402
from hostile import Image, entry, gz, sha256, tar_bytes  # noqa: E402

FUZZ = settings(database=None, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)
ARCH = go_arch()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.floats(allow_nan=False)
    | st.text(max_size=12) | st.sampled_from(["sha256:" + "a" * 64, "sha256:xyz", hostile.MT["manifest"],
                                             hostile.MT["index"], "linux", ARCH, "layers"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)


@st.composite
def mutated(draw: Any, doc: Any) -> Any:
    """``doc`` with one to three values replaced by random JSON, or deleted."""
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p, _ in hostile.walk_json(doc)]
        path = draw(st.sampled_from(paths))
        delete = bool(path) and draw(st.booleans())
        doc = hostile.replace_at(doc, path, None if delete else draw(json_values), delete)
    return doc


class Store:
    def __init__(self, root: str) -> None:
        self.layout = StoreLayout(root)
        self.blobs, self.index = BlobStore(self.layout), ImageIndex(self.layout)
        self.layout.ensure()

    def snapshot(self) -> list[Any]:
        return sorted(json.dumps(i, sort_keys=True) for i in self.index.list())

    def check_refused(self, before: list[Any], exc: BaseException) -> None:
        assert isinstance(exc, RctrError), f"{type(exc).__name__}: {exc}"
        assert "\n" not in str(exc) and str(exc).strip()
        assert self.snapshot() == before, "a refused image changed the index"
        assert os.listdir(self.layout.tmp) == [], os.listdir(self.layout.tmp)


def attempt(store: Store, fn: Any) -> str:
    before = store.snapshot()
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the property: only RctrError, state unchanged
        store.check_refused(before, exc)
        return "refused"
    return "loaded"


def _layout_dir(root: str, index: dict[str, Any], blobs: dict[str, bytes]) -> str:
    out = tempfile.mkdtemp(dir=root)
    os.makedirs(os.path.join(out, "blobs", "sha256"))
    with open(os.path.join(out, "index.json"), "wb") as f:
        f.write(hostile.canonical(index))
    for d, b in blobs.items():
        with open(os.path.join(out, "blobs", "sha256", d[7:]), "wb") as f:
            f.write(b)
    return out


def _index(desc: dict[str, Any]) -> dict[str, Any]:
    return {"schemaVersion": 2, "manifests": [desc]}


BASE = Image(arch=ARCH)


@pytest.fixture(scope="module")
def work() -> Any:
    with tempfile.TemporaryDirectory() as d:
        yield d


# -- JSON mutations through load_oci_layout --------------------------------------------


@fuzz(400)
@given(doc=mutated(BASE.manifest_dict()))
def test_mutated_manifests(work: str, doc: Any) -> None:
    store = Store(os.path.join(work, "m"))
    raw = hostile.canonical(doc)
    blobs = {**BASE.blobs(), sha256(raw): raw}
    desc = {"mediaType": hostile.MT["manifest"], "digest": sha256(raw), "size": len(raw)}
    attempt(store, lambda: load_oci_layout(_layout_dir(work, _index(desc), blobs),
                                           store.blobs, store.index))


@fuzz(400)
@given(doc=mutated(BASE.config_obj))
def test_mutated_configs(work: str, doc: Any) -> None:
    store = Store(os.path.join(work, "c"))
    image = Image(layer=BASE.layer, config_obj=doc)
    outcome = attempt(store, lambda: load_oci_layout(
        _layout_dir(work, _index(image.descriptor()), image.blobs()), store.blobs, store.index))
    if outcome == "loaded":  # what was accepted, the daemon can list
        parse_config(image.config, "config", 1)


@fuzz(300)
@given(doc=mutated(hostile.index_for([BASE])))
def test_mutated_indexes(work: str, doc: Any) -> None:
    store = Store(os.path.join(work, "i"))
    raw = hostile.canonical(doc)
    blobs = {**BASE.blobs(), sha256(raw): raw}
    desc = {"mediaType": hostile.MT["index"], "digest": sha256(raw), "size": len(raw)}
    attempt(store, lambda: load_oci_layout(_layout_dir(work, _index(desc), blobs),
                                           store.blobs, store.index))


@fuzz(300)
@given(doc=mutated(_index(BASE.descriptor())))
def test_mutated_index_json(work: str, doc: Any) -> None:
    store = Store(os.path.join(work, "j"))
    attempt(store, lambda: load_oci_layout(_layout_dir(work, doc, BASE.blobs()),
                                           store.blobs, store.index))


@fuzz(300)
@given(doc=mutated([{"Config": "config.json", "RepoTags": ["fuzz/d:latest"],
                     "Layers": ["layer.tar"]}]))
def test_mutated_docker_manifests(work: str, doc: Any) -> None:
    store = Store(os.path.join(work, "d"))
    path = os.path.join(work, "d.tar")
    with open(path, "wb") as f:
        f.write(hostile.docker_archive(doc, {"config.json": BASE.config,
                                             "layer.tar": tar_bytes([entry("hello.txt", b"hi\n")])}))
    attempt(store, lambda: load_docker_archive(path, store.blobs, store.index))


@fuzz(300)
@given(data=st.binary(max_size=600), cut=st.integers(0, 4000), flips=st.lists(st.integers(0, 4000), max_size=3))
def test_garbled_archives(work: str, data: bytes, cut: int, flips: list[int]) -> None:
    """Random bytes, truncations and bit flips of a valid oci-archive and docker-archive."""
    store = Store(os.path.join(work, "a"))
    for base in (hostile.image_archive(BASE), hostile.image_docker_archive(BASE), data):
        raw = bytearray(base[:cut] if base is not data and cut < len(base) else base)
        for at in flips:
            if raw:
                raw[at % len(raw)] ^= 1 << (at % 8)
        path = os.path.join(work, "a.tar")
        with open(path, "wb") as f:
            f.write(raw)

        def load(path: str = path) -> None:
            from rctr.storage._load import is_oci_archive

            if is_oci_archive(path):
                load_oci_archive(path, store.layout.tmp, store.blobs, store.index)
            else:
                load_docker_archive(path, store.blobs, store.index)
        attempt(store, load)


# -- pulls from a lying registry --------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Any:
    with hostile.FakeRegistry() as reg:
        yield reg


@fuzz(200)
@given(doc=mutated(BASE.manifest_dict()), content_type=st.sampled_from(
    [hostile.MT["manifest"], hostile.MT["index"], "text/html", ""]))
def test_pull_mutated_manifests(work: str, fake: hostile.FakeRegistry, doc: Any,
                                content_type: str) -> None:
    store = Store(os.path.join(work, "p"))
    raw = hostile.canonical(doc)
    fake.routes.clear()
    fake.serve_image("fuzz/p", "t", BASE, manifest=raw, content_type=content_type)
    client = RegistryClient(retries=0, timeout=5)
    attempt(store, lambda: pull(client, parse_reference(f"{fake.host}/fuzz/p:t"),
                                store.blobs, store.index))


# -- layer streams ------------------------------------------------------------------------


def _tree(root: str) -> set[str]:
    return {os.path.relpath(os.path.join(d, n), root) for d, ds, fs in os.walk(root) for n in ds + fs}


def _apply(work: str, data: bytes, max_bytes: int | None = None) -> tuple[str, set[str]]:
    """Apply ``data`` into a fresh dest beside a canary; (outcome, what appeared outside)."""
    base = tempfile.mkdtemp(dir=work)
    dest = os.path.join(base, "dest")
    os.makedirs(dest)
    with open(os.path.join(base, "canary"), "w") as f:
        f.write("canary")
    before = _tree(base) - {p for p in _tree(base) if p.startswith("dest")}
    try:
        apply_layer(io.BytesIO(data), dest, whiteouts="delete", max_bytes=max_bytes)
        outcome = "applied"
    except Exception as exc:  # noqa: BLE001 - the property: only RctrError
        assert isinstance(exc, RctrError), f"{type(exc).__name__}: {exc}"
        outcome = "refused"
    outside = {p for p in _tree(base) if not p.startswith("dest")} - before
    with open(os.path.join(base, "canary")) as f:
        assert f.read() == "canary"
    return outcome, outside


_LAYER_TAR = tar_bytes([entry("etc", kind=tarfile.DIRTYPE), entry("etc/a", b"x" * 3000),
                        entry("etc/l", kind=tarfile.SYMTYPE, linkname="a"),
                        entry("etc/h", kind=tarfile.LNKTYPE, linkname="etc/a")])


@fuzz(500)
@given(codec=st.sampled_from(["plain", "gzip", "zstd"]), cut=st.integers(0, 12000),
       flips=st.lists(st.integers(0, 1 << 20), max_size=4))
def test_truncated_and_flipped_layers(work: str, codec: str, cut: int, flips: list[int]) -> None:
    data = bytearray({"plain": _LAYER_TAR, "gzip": gz(_LAYER_TAR),
                      "zstd": hostile.zst(_LAYER_TAR)}[codec][:cut])
    for at in flips:
        if data:
            data[at % len(data)] ^= 1 << (at % 8)
    _, outside = _apply(work, bytes(data))
    assert outside == set()
    try:
        diff_digest(io.BytesIO(bytes(data)), 1 << 20)
    except Exception as exc:  # noqa: BLE001
        assert isinstance(exc, RctrError), f"{type(exc).__name__}: {exc}"


names = st.lists(st.sampled_from(["..", ".", "", "a", "b", "etc", "/", "x" * 120]),
                 min_size=1, max_size=4).map("/".join)
members = st.tuples(names, st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE,
                                            tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE]),
                    st.sampled_from(["../..", "/", "/etc/passwd", "a", "../canary", "..", "b/../.."]))


@fuzz(500)
@given(spec=st.lists(members, min_size=1, max_size=6))
def test_random_entries_never_leave_the_layer(work: str, spec: list[Any]) -> None:
    data = tar_bytes([entry(n, b"data", kind=k, linkname=link) for n, k, link in spec])
    _, outside = _apply(work, data)
    assert outside == set()


HOSTILE_TARS = {
    "dotdot": [entry("../escaped", b"x")],
    "dotdot-deep": [entry("a/../../escaped", b"x")],
    "absolute": [entry("/escaped", b"x")],
    "symlink-then-write": [entry("d", kind=tarfile.SYMTYPE, linkname="/"),
                           entry("d/escaped", b"x")],
    "symlink-dir-then-write": [entry("d", kind=tarfile.SYMTYPE, linkname=".."),
                               entry("d/escaped", b"x")],
    "hardlink-outside": [entry("h", kind=tarfile.LNKTYPE, linkname="../canary")],
    "hardlink-absolute": [entry("h", kind=tarfile.LNKTYPE, linkname="/etc/passwd")],
    "symlink-climbs": [entry("s", kind=tarfile.SYMTYPE, linkname="../../canary")],
    "size-lie-bigger": [entry("f", b"short", size=1 << 20)],
    "huge-pax-header": [entry("f", b"x", pax={"comment": "y" * (4 << 20)})],
}


@pytest.mark.parametrize("case", sorted(HOSTILE_TARS))
def test_hostile_tars_are_refused(work: str, case: str) -> None:
    outcome, outside = _apply(work, gz(tar_bytes(HOSTILE_TARS[case])))
    assert outside == set()
    if case != "huge-pax-header":
        assert outcome == "refused"


def test_device_nodes_are_skipped(work: str) -> None:
    data = tar_bytes([entry("dev/sda", kind=tarfile.BLKTYPE, devmajor=8),
                      entry("dev/mem", kind=tarfile.CHRTYPE, devmajor=1, devminor=1)])
    base = tempfile.mkdtemp(dir=work)
    stats = apply_layer(io.BytesIO(data), base, whiteouts="delete")
    assert stats.devices_skipped == 2 and not os.path.exists(os.path.join(base, "dev", "mem"))


# -- the bombs and the lies, one unit test per fix -------------------------------------


def test_a_gzip_bomb_is_refused_at_the_bound_without_writing(work: str) -> None:
    bomb = hostile.gzip_bomb(128 << 20, header=entry("zeros", size=128 << 20)[0].tobuf())
    assert len(bomb) < 1 << 20
    with pytest.raises(InvalidArgument, match="larger than"):
        diff_digest(io.BytesIO(bomb), 16 << 20)
    outcome, _ = _apply(work, bomb, max_bytes=16 << 20)
    assert outcome == "refused"


def test_a_layer_lying_about_its_diff_id_is_refused(work: str) -> None:
    store = Store(os.path.join(work, "diff"))
    image = Image(layer=BASE.layer, diff_ids=["sha256:" + "b" * 64])
    with pytest.raises(DigestMismatch, match="decompresses to"):
        load_oci_layout(_layout_dir(work, _index(image.descriptor()), image.blobs()),
                        store.blobs, store.index)
    assert store.index.list() == []


def test_a_truncated_layer_is_refused_at_load(work: str) -> None:
    store = Store(os.path.join(work, "trunc"))
    image = Image(layer=BASE.layer[:-10], diff_ids=BASE.diff_ids)
    with pytest.raises(InvalidArgument, match="truncated layer"):
        load_oci_layout(_layout_dir(work, _index(image.descriptor()), image.blobs()),
                        store.blobs, store.index)


@pytest.mark.parametrize("desc, message", [
    ({"digest": "sha256:" + "a" * 64}, "bad or missing size"),
    ({"digest": "sha256:" + "a" * 64, "size": True}, "bad or missing size"),
    ({"digest": "sha256:" + "a" * 64, "size": "12"}, "bad or missing size"),
    ({"digest": "md5:abc", "size": 1}, "invalid digest"),
    ([], "not a JSON object"),
])
def test_descriptors_are_checked(desc: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        descriptor(desc, "x")


def test_documents_name_what_is_wrong() -> None:
    good = BASE.manifest_dict()
    with pytest.raises(InvalidArgument, match="schemaVersion"):
        parse_manifest(hostile.canonical(dict(good, schemaVersion=1)), "m")
    with pytest.raises(InvalidArgument, match="an image index, not a manifest"):
        parse_manifest(hostile.canonical(dict(good, mediaType=hostile.MT["index"])), "m")
    with pytest.raises(Unsupported, match="media type"):
        parse_manifest(hostile.canonical(dict(good, mediaType="text/html")), "m")
    bad_layer = dict(good, layers=[dict(good["layers"][0], mediaType="application/wasm")])
    with pytest.raises(Unsupported, match="application/wasm"):
        parse_manifest(hostile.canonical(bad_layer), "m")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        parse_manifest(b"[" * 100000, "m")
    with pytest.raises(InvalidArgument, match="bad platform"):
        parse_index(hostile.canonical({"schemaVersion": 2, "manifests": [
            dict(BASE.descriptor(), platform=["linux"])]}), "i")
    config = dict(BASE.config_obj, config={"Labels": []})
    with pytest.raises(InvalidArgument, match="config.Labels"):
        parse_config(hostile.canonical(config), "c", 1)
    with pytest.raises(InvalidArgument, match="2 diff ids for 1 layers"):
        parse_config(hostile.canonical(dict(BASE.config_obj, rootfs={
            "type": "layers", "diff_ids": BASE.diff_ids * 2})), "c", 1)


def test_a_nested_index_in_a_layout_is_refused(work: str) -> None:
    store = Store(os.path.join(work, "nest"))
    inner = hostile.canonical(hostile.index_for([BASE]))
    outer = hostile.canonical({"schemaVersion": 2, "mediaType": hostile.MT["index"], "manifests": [
        {"mediaType": hostile.MT["index"], "digest": sha256(inner), "size": len(inner),
         "platform": {"os": "linux", "architecture": ARCH}}]})
    blobs = {**BASE.blobs(), sha256(inner): inner, sha256(outer): outer}
    desc = {"mediaType": hostile.MT["index"], "digest": sha256(outer), "size": len(outer)}
    with pytest.raises(Unsupported, match="points to another index"):
        load_oci_layout(_layout_dir(work, _index(desc), blobs), store.blobs, store.index)


def test_a_blob_bigger_than_the_disk_is_refused_before_a_byte(work: str) -> None:
    store = Store(os.path.join(work, "space"))
    with pytest.raises(Unavailable, match="bytes free"):
        store.blobs.put(io.BytesIO(b""), "sha256:" + "c" * 64, 1 << 62)
    assert os.listdir(store.layout.tmp) == []


def test_an_oci_archive_unpacks_within_its_bound(work: str) -> None:
    path = os.path.join(work, "big.tar")
    with open(path, "wb") as f:
        f.write(hostile.image_archive(BASE))
    dest = tempfile.mkdtemp(dir=work)
    with pytest.raises(InvalidArgument, match="decompression bomb"):
        _unpack_oci_archive(path, dest, 100)


def test_a_docker_archive_naming_a_missing_file_says_so(work: str) -> None:
    store = Store(os.path.join(work, "dm"))
    path = os.path.join(work, "dm.tar")
    with open(path, "wb") as f:
        f.write(hostile.docker_archive([{"Config": "nope.json", "Layers": []}], {}))
    with pytest.raises(InvalidArgument, match="'nope.json' is missing"):
        load_docker_archive(path, store.blobs, store.index)


def test_a_manifest_cut_short_is_a_clear_error(work: str, fake: hostile.FakeRegistry) -> None:
    store = Store(os.path.join(work, "cut"))
    fake.routes.clear()
    fake.serve_image("fuzz/cut", "t", BASE)
    fake.routes["/v2/fuzz/cut/manifests/t"] = hostile.Reply(
        body=BASE.manifest[:40], length=len(BASE.manifest),
        headers={"Docker-Content-Digest": sha256(BASE.manifest),
                 "Content-Type": hostile.MT["manifest"]})
    with pytest.raises(DigestMismatch, match="hashes to"):
        pull(RegistryClient(retries=0, timeout=5), parse_reference(f"{fake.host}/fuzz/cut:t"),
             store.blobs, store.index)
    assert store.index.list() == []


def test_a_descriptor_lying_about_a_held_blob_is_refused(work: str) -> None:
    store = Store(os.path.join(work, "held"))
    digest = store.blobs.put_bytes(b"held")
    with pytest.raises(DigestMismatch, match="is 4 bytes, not the 1152921504606846976"):
        store.blobs.put(io.BytesIO(b""), digest, 1 << 60)
