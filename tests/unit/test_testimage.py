"""Tests for tests/support/testimage.py: determinism, layout validity, safe unpacking."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SUPPORT = Path(__file__).parents[1] / "support"
sys.path.insert(0, str(SUPPORT))

import testimage  # noqa: E402

UID_MAP = [(0, 1001, 1), (1, 200000, 65536)]
GID_MAP = [(0, 1001, 1), (1, 200000, 65536)]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking chowns: needs root")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def layer_tars(layout: Path) -> list[tarfile.TarFile]:
    manifest = json.loads(blob(layout, json.loads((layout / "index.json").read_text())
                               ["manifests"][0]["digest"]))
    return [tarfile.open(fileobj=io.BytesIO(blob(layout, d["digest"])), mode="r:gz")
            for d in manifest["layers"]]


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("layout") / "oci"
    return out, testimage.build_oci_layout(str(out))


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory, layout: tuple[Path, dict]) -> Path:
    if os.geteuid() != 0:
        pytest.skip("unpacking chowns: needs root")
    dest = tmp_path_factory.mktemp("unpack") / "rootfs"
    testimage.unpack_rootfs(str(layout[0]), str(dest), UID_MAP, GID_MAP)
    return dest


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------


def test_digests_stable_across_builds(tmp_path: Path, layout: tuple[Path, dict]) -> None:
    first_dir, first = layout
    second = testimage.build_oci_layout(str(tmp_path / "again"))
    assert second == first
    names = sorted(p.name for p in (first_dir / "blobs" / "sha256").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "again" / "blobs" / "sha256").iterdir())
    index = (first_dir / "index.json").read_bytes()
    assert index == (tmp_path / "again" / "index.json").read_bytes()


def test_docker_archive_stable_across_builds(tmp_path: Path) -> None:
    a = testimage.build_docker_archive(str(tmp_path / "a.tar"))
    b = testimage.build_docker_archive(str(tmp_path / "b.tar"))
    assert a == b
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_layout_validates(layout: tuple[Path, dict]) -> None:
    out, result = layout
    assert json.loads((out / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    for path in (out / "blobs" / "sha256").iterdir():
        assert sha256(path.read_bytes()) == "sha256:" + path.name
    index = json.loads((out / "index.json").read_text())
    assert index["schemaVersion"] == 2
    [desc] = index["manifests"]
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "latest"
    assert desc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert desc["digest"] == result["manifest_digest"]
    manifest_bytes = blob(out, desc["digest"])
    assert desc["size"] == len(manifest_bytes)
    manifest = json.loads(manifest_bytes)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert manifest["config"]["digest"] == result["config_digest"]
    assert manifest["config"]["size"] == len(blob(out, result["config_digest"]))
    assert [d["digest"] for d in manifest["layers"]] == result["layers"]
    assert len(manifest["layers"]) == 3
    config = json.loads(blob(out, result["config_digest"]))
    assert config["rootfs"] == {"type": "layers", "diff_ids": result["diff_ids"]}
    for desc, diff_id in zip(manifest["layers"], result["diff_ids"], strict=True):
        assert desc["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
        data = blob(out, desc["digest"])
        assert desc["size"] == len(data)
        assert sha256(gzip.decompress(data)) == diff_id


def test_config_content(layout: tuple[Path, dict]) -> None:
    out, result = layout
    config = json.loads(blob(out, result["config_digest"]))
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    assert config["architecture"] == arch
    assert config["os"] == "linux"
    assert config["config"] == {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
        "WorkingDir": "/",
        "ExposedPorts": {"80/tcp": {}},
        "Labels": {"org.rctr.test": "busybox"},
    }
    assert len(config["history"]) == 3


def test_layer_entries(layout: tuple[Path, dict]) -> None:
    l1, l2, l3 = layer_tars(layout[0])
    names1 = l1.getnames()
    assert names1 == sorted(names1)
    assert l1.getmember("bin/busybox").mode == 0o755
    assert l1.getmember("bin/sh").issym()
    assert l1.getmember("usr/bin/env").linkname == "/bin/busybox"
    assert l1.getmember("tmp").mode == 0o1777
    assert l1.getmember("root").mode == 0o700
    owned = l1.getmember("home/user/owned-by-1000")
    assert (owned.uid, owned.gid, owned.uname) == (1000, 1000, "user")
    assert all(m.mtime == testimage.MTIME for m in l1.getmembers())
    assert {".wh.deleted-later", "opaque/.wh..wh..opq", "opaque/upper-c"} <= set(l2.getnames())
    assert l2.getmember("bin/setuid-marker").mode == 0o4755
    link = l3.getmember("etc/layer3-link")
    assert link.islnk() and link.linkname == "etc/layer3"


def test_docker_archive_manifest(tmp_path: Path, layout: tuple[Path, dict]) -> None:
    result = testimage.build_docker_archive(str(tmp_path / "img.tar"))
    assert result["config_digest"] == layout[1]["config_digest"]
    assert result["diff_ids"] == layout[1]["diff_ids"]
    with tarfile.open(tmp_path / "img.tar") as tar:
        [entry] = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert entry["RepoTags"] == ["rctr-test/busybox:latest"]
        config_bytes = tar.extractfile(entry["Config"]).read()  # type: ignore[union-attr]
        assert sha256(config_bytes) == result["config_digest"]
        assert entry["Config"] == result["config_digest"].split(":", 1)[1] + ".json"
        config = json.loads(config_bytes)
        assert entry["Layers"] == result["layers"]
        layer_digests = [
            sha256(tar.extractfile(p).read())  # type: ignore[union-attr]
            for p in entry["Layers"]
        ]
        assert layer_digests == config["rootfs"]["diff_ids"]
        repos = json.loads(tar.extractfile("repositories").read())  # type: ignore[union-attr]
        assert repos == {"rctr-test/busybox": {"latest": entry["Layers"][-1].split("/")[0]}}


def test_cli_runs_under_system_python(tmp_path: Path, layout: tuple[Path, dict]) -> None:
    script = SUPPORT / "testimage.py"
    proc = subprocess.run(["/usr/bin/python3", "-I", str(script), "oci", str(tmp_path / "oci")],
                          check=True, capture_output=True, text=True)
    assert json.loads(proc.stdout) == layout[1]


# --------------------------------------------------------------------------
# Id maps
# --------------------------------------------------------------------------


def test_subid_map(tmp_path: Path) -> None:
    sub = tmp_path / "subuid"
    sub.write_text("other:300000:65536\nalice:100000:200000\n1234:500000:1000\n")
    assert testimage.subid_map("alice", 1001, path=str(sub)) == [(0, 1001, 1), (1, 100000, 65536)]
    assert testimage.subid_map("bob", 1234, path=str(sub)) == [(0, 1234, 1), (1, 500000, 1000)]
    assert testimage.subid_map("carol", 1002, path=str(sub)) == [(0, 1002, 1)]
    assert testimage.subid_map("x", 5, path=str(tmp_path / "missing")) == [(0, 5, 1)]
    with pytest.raises(ValueError):
        testimage.subid_map("alice", 1001, kind="pid")


def test_host_id_fallbacks() -> None:
    assert testimage._host_id(1000, UID_MAP) == 200999
    assert testimage._host_id(0, UID_MAP) == 1001
    assert testimage._host_id(70000, UID_MAP) == 265533  # unmapped -> 65534
    assert testimage._host_id(1000, [(0, 1001, 1)]) == 1001  # neither -> 0


# --------------------------------------------------------------------------
# Unpacking
# --------------------------------------------------------------------------


@needs_root
def test_unpack_whiteouts_and_content(rootfs: Path) -> None:
    assert not (rootfs / "deleted-later").exists()
    assert not (rootfs / ".wh.deleted-later").exists()
    assert sorted(os.listdir(rootfs / "opaque")) == ["upper-c"]
    assert (rootfs / "etc/motd").read_text() == "layer 2\n"
    assert (rootfs / "www/index.html").read_text() == "<h1>hello from rctr</h1>\n"
    assert (rootfs / "etc/passwd").read_text().startswith("root:x:0:0:root:/root:/bin/sh\n")


@needs_root
def test_unpack_ownership(rootfs: Path) -> None:
    owned = (rootfs / "home/user/owned-by-1000").stat()
    assert (owned.st_uid, owned.st_gid) == (200999, 200999)
    nobody = (rootfs / "var/owned-by-65534").stat()
    assert (nobody.st_uid, nobody.st_gid) == (265533, 265533)
    for path in ("", "etc", "etc/passwd", "bin/busybox", "etc/layer3"):
        st = (rootfs / path).stat()
        assert (st.st_uid, st.st_gid) == (1001, 1001), path
    sh = os.lstat(rootfs / "bin/sh")
    assert (sh.st_uid, sh.st_gid) == (1001, 1001)
    assert (rootfs / "home/user").stat().st_uid == 200999


@needs_root
def test_unpack_modes_links_mtimes(rootfs: Path) -> None:
    marker = (rootfs / "bin/setuid-marker").stat()
    assert marker.st_mode & stat.S_ISUID
    assert stat.S_IMODE(marker.st_mode) == 0o4755
    assert not (rootfs / "bin/busybox").stat().st_mode & stat.S_ISUID
    assert stat.S_IMODE((rootfs / "bin/busybox").stat().st_mode) == 0o755
    assert stat.S_IMODE((rootfs / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((rootfs / "root").stat().st_mode) == 0o700
    assert (rootfs / "etc/layer3-link").stat().st_ino == (rootfs / "etc/layer3").stat().st_ino
    assert (rootfs / "etc/layer3").stat().st_nlink == 2
    assert (rootfs / "bin/sh").is_symlink()
    assert os.readlink(rootfs / "bin/sh") == "/bin/busybox"
    assert (rootfs / "www/index.html").stat().st_mtime == testimage.MTIME
    assert (rootfs / "www").stat().st_mtime == testimage.MTIME
    assert os.lstat(rootfs / "bin/sh").st_mtime == testimage.MTIME


@needs_root
def test_make_bundle(tmp_path: Path, layout: tuple[Path, dict]) -> None:
    bundle = tmp_path / "bundle"
    got = testimage.make_bundle(str(layout[0]), str(bundle), 1001, 1001, UID_MAP, GID_MAP)
    assert got == str(bundle / "rootfs")
    assert (bundle.stat().st_uid, bundle.stat().st_gid) == (1001, 1001)
    assert (bundle / "rootfs" / "etc/layer3").read_text() == "3\n"


# --------------------------------------------------------------------------
# Hostile layers
# --------------------------------------------------------------------------


def make_tar(*members: tuple[str, str, str]) -> tarfile.TarFile:
    """An in-memory tar from (name, kind, payload-or-linkname) triples."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, extra in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o755 if kind == "dir" else 0o644
            if kind == "file":
                info.size = len(extra)
                tar.addfile(info, io.BytesIO(extra.encode()))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                         "hardlink": tarfile.LNKTYPE}[kind]
            info.linkname = extra
            tar.addfile(info)
    buf.seek(0)
    return tarfile.open(fileobj=buf, mode="r")


def apply(tar: tarfile.TarFile, dest: Path) -> None:
    testimage._apply_layer(tar, str(dest), UID_MAP, GID_MAP)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("unpacking chowns: needs root")
    d = tmp_path / "dest"
    d.mkdir()
    return d


def test_refuses_dotdot_entry(dest: Path) -> None:
    with pytest.raises(ValueError, match=r"\.\./escape"):
        apply(make_tar(("ok", "file", "x"), ("../escape", "file", "pwned")), dest)
    assert not (dest.parent / "escape").exists()
    assert os.listdir(dest) == []  # names are checked before anything is written


def test_refuses_absolute_entry(dest: Path) -> None:
    with pytest.raises(ValueError, match="rctr-abs-escape"):
        apply(make_tar(("/tmp/rctr-abs-escape", "file", "pwned")), dest)
    assert not Path("/tmp/rctr-abs-escape").exists()


def test_refuses_write_through_symlink_to_root(dest: Path) -> None:
    assert not Path("/etc/x").exists()
    with pytest.raises(ValueError, match="evil/etc/x"):
        apply(make_tar(("evil", "symlink", "/"), ("evil/etc/x", "file", "pwned")), dest)
    assert not Path("/etc/x").exists()


def test_refuses_write_through_symlink_outside(dest: Path) -> None:
    outside = dest.parent / "outside"
    outside.mkdir()
    with pytest.raises(ValueError, match="evil/x"):
        apply(make_tar(("evil", "symlink", str(outside)), ("evil/x", "file", "pwned")), dest)
    assert os.listdir(outside) == []
    with pytest.raises(ValueError, match="rel/x"):
        apply(make_tar(("rel", "symlink", "../outside"), ("rel/x", "dir", "")), dest)
    assert os.listdir(outside) == []


def test_refuses_hardlink_out_of_dest(dest: Path) -> None:
    with pytest.raises(ValueError, match=r"\.\./secret"):
        apply(make_tar(("link", "hardlink", "../secret")), dest)
    with pytest.raises(ValueError, match="evil"):
        apply(make_tar(("evil", "symlink", "/"), ("link", "hardlink", "evil/etc/passwd")), dest)
    assert not (dest / "link").exists()


def test_whiteouts_do_not_follow_symlinks(dest: Path) -> None:
    outside = dest.parent / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep\n")
    apply(make_tar(("evil", "symlink", str(outside))), dest)
    with pytest.raises(ValueError, match="evil"):
        apply(make_tar(("evil/.wh.victim", "file", "")), dest)
    with pytest.raises(ValueError, match="evil"):
        apply(make_tar(("evil/.wh..wh..opq", "file", "")), dest)
    assert (outside / "victim").read_text() == "keep\n"


def test_replacing_symlink_does_not_write_through(dest: Path) -> None:
    outside = dest.parent / "outside"
    outside.write_text("keep\n")
    apply(make_tar(("f", "symlink", str(outside))), dest)
    apply(make_tar(("f", "file", "new\n")), dest)
    assert outside.read_text() == "keep\n"
    assert not (dest / "f").is_symlink() and (dest / "f").read_text() == "new\n"


def test_opaque_keeps_same_layer_content_in_any_order(dest: Path) -> None:
    apply(make_tar(("d", "dir", ""), ("d/old", "file", "1"), ("d/sub", "dir", "")), dest)
    apply(make_tar(("d", "dir", ""), ("d/new", "file", "2"), ("d/.wh..wh..opq", "file", "")), dest)
    assert os.listdir(dest / "d") == ["new"]
