"""Loading the test image from an OCI layout and from a docker-archive."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from rctr.core.errors import InvalidArgument, NotFound
from rctr.storage._blobs import BlobStore, DigestMismatch
from rctr.storage._images import ImageIndex, chain_ids
from rctr.storage._layout import StoreLayout
from rctr.storage._load import choose_manifest, load_docker_archive, load_oci_layout
from rctr.storage._reference import parse_reference

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
import testimage  # noqa: E402


def _store(tmp_path: Path) -> tuple[BlobStore, ImageIndex]:
    layout = StoreLayout(str(tmp_path / "store"))
    return BlobStore(layout), ImageIndex(layout)


def test_oci_layout_and_docker_archive_give_the_same_image(tmp_path: Path) -> None:
    built = testimage.build_oci_layout(str(tmp_path / "oci"))
    testimage.build_docker_archive(str(tmp_path / "img.tar"))
    blobs, index = _store(tmp_path)
    [from_oci] = load_oci_layout(str(tmp_path / "oci"), blobs, index, name="rctr-test/busybox:latest")
    [from_tar] = load_docker_archive(str(tmp_path / "img.tar"), blobs, index)
    assert from_oci["id"] == from_tar["id"] == built["config_digest"]
    assert from_oci["diff_ids"] == from_tar["diff_ids"] == built["diff_ids"]
    assert from_oci["chain_ids"] == chain_ids(built["diff_ids"])
    assert all(blobs.has(layer["digest"]) for layer in from_oci["layers"] + from_tar["layers"])
    image = index.get("rctr-test/busybox")
    assert image["id"] == built["config_digest"]
    assert image["names"] == ["docker.io/rctr-test/busybox:latest"]
    assert index.get(built["config_digest"][7:19])["id"] == image["id"]
    with pytest.raises(NotFound):
        index.get("nothing-here")


def test_a_tampered_blob_is_refused_and_nothing_is_indexed(tmp_path: Path) -> None:
    built = testimage.build_oci_layout(str(tmp_path / "oci"))
    victim = tmp_path / "oci" / "blobs" / "sha256" / built["layers"][1][7:]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    os.chmod(victim, 0o644)
    victim.write_bytes(bytes(data))
    blobs, index = _store(tmp_path)
    with pytest.raises(DigestMismatch):
        load_oci_layout(str(tmp_path / "oci"), blobs, index, name="x/y:z")
    assert index.list() == []


def test_platform_choice() -> None:
    idx = {"manifests": [
        {"digest": "sha256:" + "a" * 64, "platform": {"os": "linux", "architecture": "arm64"}},
        {"digest": "sha256:" + "b" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
    ]}
    assert choose_manifest(idx, "linux/arm64")["digest"].endswith("a" * 64)
    assert choose_manifest(idx, "linux/amd64")["digest"].endswith("b" * 64)
    with pytest.raises(InvalidArgument, match="linux/amd64, linux/arm64|linux/arm64, linux/amd64"):
        choose_manifest(idx, "linux/s390x")


@pytest.mark.parametrize("text,expected", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("rctr-test/busybox:1", "docker.io/rctr-test/busybox:1"),
    ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest"),
    ("localhost/x@sha256:" + "c" * 64, "localhost/x@sha256:" + "c" * 64),
])
def test_references_normalise_like_docker(text: str, expected: str) -> None:
    assert str(parse_reference(text)) == expected


@pytest.mark.parametrize("bad", ["UPPER", "a:b:c", "x@sha256:zz", ""])
def test_bad_references(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_reference(bad)


def test_index_json_is_not_trusted(tmp_path: Path) -> None:
    (tmp_path / "oci").mkdir()
    (tmp_path / "oci" / "index.json").write_text(json.dumps({"manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:../../x"}]}))
    blobs, index = _store(tmp_path)
    with pytest.raises(InvalidArgument):
        load_oci_layout(str(tmp_path / "oci"), blobs, index)


@pytest.mark.parametrize("form", ["dir", "tar"])
def test_save_then_load_keeps_every_digest(tmp_path: Path, form: str) -> None:
    from rctr.storage import Store

    built = testimage.build_oci_layout(str(tmp_path / "oci"))
    first = Store(str(tmp_path / "a"))
    [original] = first.load(str(tmp_path / "oci"), name="rctr-test/busybox:latest")
    out = str(tmp_path / ("saved.tar" if form == "tar" else "saved"))
    first.save(["rctr-test/busybox"], out)
    second = Store(str(tmp_path / "b"))
    [again] = second.load(out)
    assert again["id"] == original["id"] == built["config_digest"]
    assert again["manifest"] == original["manifest"]
    assert [lay["digest"] for lay in again["layers"]] == built["layers"]
    assert again["names"] == ["docker.io/rctr-test/busybox:latest"]


def test_a_saved_archive_is_also_a_docker_archive(tmp_path: Path) -> None:
    """The manifest.json beside the layout is enough for a docker-archive reader alone."""
    import tarfile

    from rctr.storage import Store

    testimage.build_oci_layout(str(tmp_path / "oci"))
    store = Store(str(tmp_path / "a"))
    [original] = store.load(str(tmp_path / "oci"), name="busybox:1")
    store.save(["busybox:1"], str(tmp_path / "saved.tar"))
    with tarfile.open(tmp_path / "saved.tar") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert manifest == [{"Config": f"blobs/sha256/{original['config'][7:]}",
                             "RepoTags": ["busybox:1"],
                             "Layers": [f"blobs/sha256/{lay['digest'][7:]}"
                                        for lay in original["layers"]]}]
        # Without the OCI files, only Docker's view is left.
        with tarfile.open(tmp_path / "docker.tar", "w") as out:
            for info in tar.getmembers():
                if info.name not in ("oci-layout", "index.json"):
                    out.addfile(info, tar.extractfile(info))
    blobs, index = _store(tmp_path)
    [again] = load_docker_archive(str(tmp_path / "docker.tar"), blobs, index)
    assert again["id"] == original["id"]
    assert again["names"] == ["docker.io/library/busybox:1"]


def test_rmi_of_a_repositorys_last_tag_takes_its_digest_references_along(tmp_path: Path) -> None:
    """Docker's image delete: ``repo@sha256:…`` (what a pull records) does not keep an
    image alive once the last tag of that repository is gone; another repository's does."""
    _, index = _store(tmp_path)
    digest = "sha256:" + "d" * 64
    image_id = "sha256:" + "1" * 64
    index.add({"id": image_id}, ["reg.example/r/a:1", "reg.example/r/a:2",
                                 f"reg.example/r/a@{digest}", "reg.example/r/b:1"])
    assert index.get(f"reg.example/r/a@{digest}")["id"] == image_id
    assert index.remove("reg.example/r/a:1") == ["Untagged: reg.example/r/a:1"]
    assert index.remove("reg.example/r/a:2") == [
        "Untagged: reg.example/r/a:2", f"Untagged: reg.example/r/a@{digest}"]
    assert index.get("reg.example/r/b:1")["names"] == ["reg.example/r/b:1"]
    assert index.remove("reg.example/r/b:1") == ["Untagged: reg.example/r/b:1",
                                                 f"Deleted: {image_id}"]
    # A digest reference alone is untagged by itself.
    index.add({"id": image_id}, ["reg.example/r/a:1", f"reg.example/r/a@{digest}"])
    assert index.remove(f"reg.example/r/a@{digest}") == [f"Untagged: reg.example/r/a@{digest}"]
    assert index.get("reg.example/r/a:1")["names"] == ["reg.example/r/a:1"]
