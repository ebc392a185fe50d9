"""Tests of rctr.storage._commit: --change parsing, Docker's config merge, the overlay
whiteout conversion (the inverse of _extract's overlay form), the vfs diff, and a full
disk while the layer is written (runs as root: it makes 0:0 devices and chowns)."""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from rctr.core.errors import InvalidArgument, Unavailable
from rctr.storage import Store
from rctr.storage import _blobs
from rctr.storage._commit import merge_config, overlay_changes, parse_changes, vfs_changes
from rctr.storage._extract import apply_layer

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="makes whiteout devices: needs root")


# --------------------------------------------------------------------------
# --change
# --------------------------------------------------------------------------


def test_changes_cmd_entrypoint_json_and_shell_form() -> None:
    config = parse_changes(['CMD ["cat","/hello"]', "ENTRYPOINT echo hi there"], {})
    assert config["Cmd"] == ["cat", "/hello"]
    assert config["Entrypoint"] == ["/bin/sh", "-c", "echo hi there"]


def test_changes_env_label_expose_volume_workdir_user() -> None:
    base = {"Env": ["PATH=/bin", "A=old"], "WorkingDir": "/srv", "Labels": {"x": "1"}}
    config = parse_changes(["ENV A=b C=\"d e\"", "ENV LEGACY some value", "LABEL y=2 z=\"3 4\"",
                            "EXPOSE 80 53/udp 8000-8001", 'VOLUME ["/data", "/logs"]',
                            "VOLUME /a /b", "WORKDIR app", "USER 1000:1000",
                            "STOPSIGNAL SIGINT", "# a comment", ""], base)
    assert config["Env"] == ["PATH=/bin", "A=b", "C=d e", "LEGACY=some value"]
    assert config["Labels"] == {"x": "1", "y": "2", "z": "3 4"}
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
    assert set(config["Volumes"]) == {"/data", "/logs", "/a", "/b"}
    assert config["WorkingDir"] == "/srv/app"
    assert config["User"] == "1000:1000"
    assert config["StopSignal"] == "SIGINT"
    assert base["Env"] == ["PATH=/bin", "A=old"], "the input is not changed"


def test_changes_one_value_with_several_lines() -> None:
    assert parse_changes(["ENV A=1\nUSER nobody"], {}) == {"Env": ["A=1"], "User": "nobody"}


@pytest.mark.parametrize("change, words", [
    ("RUN rm -rf /", "RUN is not a valid change command"),
    ("FROM busybox", "FROM is not a valid change command"),
    ("EXPOSE http", "invalid port"),
    ("EXPOSE 70000", "invalid port"),
    ("ENV A", "needs"),
    ("LABEL novalue", "is not KEY=VALUE"),
    ("CMD", "needs an argument"),
    ('ENV A="unterminated', "No closing quotation"),
])
def test_bad_change_is_a_clear_invalid_argument(change: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_changes([change], {})
    assert words in str(err.value)
    assert change.split()[0] in str(err.value)
    assert "CMD, ENTRYPOINT, ENV" in str(err.value)  # the hint lists what is valid


def test_merge_keeps_the_containers_config_under_the_request() -> None:
    container = {"Env": ["PATH=/bin", "A=a", "K=k"], "Cmd": ["sh"], "Hostname": "abc",
                 "Labels": {"l": "1"}, "WorkingDir": "/w", "Image": "busybox"}
    out = merge_config({"Env": ["A=b"], "Labels": {"m": "2"}}, container)
    assert out["Env"] == ["A=b", "PATH=/bin", "K=k"]
    assert out["Cmd"] == ["sh"] and out["WorkingDir"] == "/w"
    assert out["Labels"] == {"l": "1", "m": "2"}
    assert "Hostname" not in out and "Image" not in out  # the container's own
    # An entrypoint from the request drops the container's command (Docker's merge).
    assert "Cmd" not in merge_config({"Entrypoint": ["top"]}, container)


# --------------------------------------------------------------------------
# The layer: walking and writing
# --------------------------------------------------------------------------


def _members(store: Store, digest: str) -> dict[str, tarfile.TarInfo]:
    with gzip.open(store.blobs.path(digest)) as f, tarfile.open(fileobj=f) as tar:
        return {m.name: m for m in tar.getmembers()}


def _layer(store: Store, changes) -> tuple[dict[str, tarfile.TarInfo], bytes]:  # type: ignore[no-untyped-def]
    from rctr.storage._commit import write_layer

    digest, size, diff_id = write_layer(changes, store.blobs)
    assert os.path.getsize(store.blobs.path(digest)) == size
    raw = gzip.decompress(Path(store.blobs.path(digest)).read_bytes())
    assert "sha256:" + __import__("hashlib").sha256(raw).hexdigest() == diff_id
    return _members(store, digest), raw


@needs_root
def test_overlay_upper_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "new").write_text("x")
    os.setxattr(upper / "etc", "user.overlay.opaque", b"y")
    (upper / "var").mkdir()
    os.setxattr(upper / "var", "trusted.overlay.opaque", b"y")
    os.setxattr(upper / "var", "user.overlay.origin", b"junk")  # overlay's: dropped
    os.mknod(upper / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    (upper / "bin").mkdir()
    os.mknod(upper / "bin" / "rm", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    (upper / "bin" / ".wh.ls").write_bytes(b"")  # fuse-overlayfs's own form: kept as it is
    (upper / "hello").write_text("hello\n")
    os.chown(upper / "hello", 1000, 1001)
    os.setxattr(upper / "hello", "user.note", b"\xff\x00bin")
    os.symlink("/etc/new", upper / "link")
    (upper / "etc" / "hosts").write_text("")  # a mount target the runtime made: left out
    store = Store(str(tmp_path / "store"))
    members, _ = _layer(store, overlay_changes(str(upper)))
    only = tmp_path / "only"
    (only / "etc").mkdir(parents=True)
    for name in ("hosts", "hostname", "resolv.conf"):
        (only / "etc" / name).write_text("")
    assert list(overlay_changes(str(only))) == [], "an /etc copied up for mount targets only"
    assert set(members) == {"etc", "etc/new", "etc/.wh..wh..opq", "var", "var/.wh..wh..opq",
                            ".wh.gone", "bin", "bin/.wh.rm", "bin/.wh.ls", "hello", "link"}
    assert members["hello"].uid == 1000 and members["hello"].gid == 1001
    assert members["hello"].pax_headers["SCHILY.xattr.user.note"].encode(
        "utf-8", "surrogateescape") == b"\xff\x00bin"
    assert not any("overlay" in k for m in members.values() for k in m.pax_headers)
    assert members["link"].issym() and members["link"].linkname == "/etc/new"
    assert members[".wh.gone"].isfile() and members[".wh.gone"].size == 0


def _tar(entries: list[tuple[str, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@needs_root
def test_overlay_form_round_trips_through_extract(tmp_path: Path) -> None:
    """_extract writes a layer's whiteouts in overlay form; commit reads them back to the
    same tar names."""
    layer = _tar([("etc", None), ("etc/.wh..wh..opq", b""), ("etc/new", b"x"),
                  (".wh.gone", b""), ("usr", None), ("usr/.wh.lib", b""), ("f", b"data")])
    diff = tmp_path / "diff"
    diff.mkdir()
    apply_layer(io.BytesIO(layer), str(diff), whiteouts="overlay")
    assert stat.S_ISCHR(os.lstat(diff / "gone").st_mode)
    store = Store(str(tmp_path / "store"))
    members, _ = _layer(store, overlay_changes(str(diff)))
    assert set(members) == {"etc", "etc/.wh..wh..opq", "etc/new", ".wh.gone", "usr",
                            "usr/.wh.lib", "f"}


@needs_root
def test_vfs_diff_against_the_image_tree(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    for d in ("etc", "bin", "keep"):
        (lower / d).mkdir(parents=True)
    (lower / "etc" / "passwd").write_text("root\n")
    (lower / "etc" / "group").write_text("root\n")
    (lower / "bin" / "sh").write_text("#!")
    (lower / "bin" / "ls").write_text("ls")
    (lower / "keep" / "same").write_text("same")
    (lower / "owned").write_text("o")
    rootfs = tmp_path / "rootfs"
    subprocess.run(["cp", "-a", str(lower), str(rootfs)], check=True)
    store = Store(str(tmp_path / "store"))
    assert next(vfs_changes(str(rootfs), str(lower)), None) is None, "a fresh copy: no diff"
    subprocess.run(["rm", "-rf", str(rootfs / "etc")], check=True)
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "new").write_text("x")
    (rootfs / "bin" / "ls").unlink()
    (rootfs / "bin" / "sh").write_text("#!changed")
    os.chown(rootfs / "owned", 1000, 1000)
    (rootfs / "hello").write_text("hello\n")
    members, _ = _layer(store, vfs_changes(str(rootfs), str(lower)))
    assert set(members) == {"etc/.wh.group", "etc/.wh.passwd", "etc/new", "bin/.wh.ls",
                            "bin/sh", "owned", "hello"}
    assert members["owned"].uid == 1000


@needs_root
def test_running_container_swap_to_symlink_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "f").write_text("x")
    store = Store(str(tmp_path / "store"))
    changes = overlay_changes(str(upper))
    first = next(changes)  # the walk has seen a regular file...
    (upper / "f").unlink()
    os.symlink(str(secret), upper / "f")  # ...that the container swaps for a symlink

    def again():  # type: ignore[no-untyped-def]
        yield first
        yield from changes

    _, raw = _layer(store, again())
    assert b"host secret" not in raw


# --------------------------------------------------------------------------
# The image, and a full disk
# --------------------------------------------------------------------------


def _store_with_image(tmp_path: Path) -> tuple[Store, str]:
    store = Store(str(tmp_path / "data" / "storage"))
    tar = tmp_path / "rootfs.tar"
    tar.write_bytes(_tar([("etc", None), ("etc/passwd", b"root\n")]))
    record = store.import_rootfs(str(tar), "base:1", cmd=["sh"])
    return store, record["id"]


def _container(store: Store, cid: str) -> Path:
    upper = Path(store.rw.path(cid)) / "upper"
    upper.mkdir(parents=True)
    (upper / "hello").write_bytes(os.urandom(200_000))  # incompressible: the writes are real
    return upper


CID = "c" * 64


@needs_root
def test_commit_indexes_an_image_with_history(tmp_path: Path) -> None:
    store, base = _store_with_image(tmp_path)
    _container(store, CID)
    record = store.commit(CID, base, "overlay", config={"Cmd": ["cat", "/hello"]},
                          created_by="sh -c echo", name="new:tag", comment="msg", author="me")
    assert store.images.get("new:tag")["id"] == record["id"]
    config = json.loads(store.blobs.read(record["config"]))
    assert config["config"] == {"Cmd": ["cat", "/hello"]}
    assert len(config["rootfs"]["diff_ids"]) == 2 and len(record["layers"]) == 2
    assert config["history"][-1]["created_by"] == "sh -c echo"
    assert config["history"][-1]["comment"] == "msg" and config["author"] == "me"
    assert config["container"] == CID


@needs_root
def test_commit_of_no_changes_is_an_empty_layer(tmp_path: Path) -> None:
    store, base = _store_with_image(tmp_path)
    (Path(store.rw.path(CID)) / "upper").mkdir(parents=True)
    record = store.commit(CID, base, "overlay", config={}, created_by="sh")
    config = json.loads(store.blobs.read(record["config"]))
    assert len(config["rootfs"]["diff_ids"]) == 1
    assert config["history"][-1]["empty_layer"] is True


@needs_root
def test_full_disk_while_writing_the_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC from the blob writer: a clear error, nothing in tmp/, no new blob, no image."""
    store, base = _store_with_image(tmp_path)
    _container(store, CID)
    blobs_before = set(os.listdir(store.layout.blobs))
    images_before = [i["id"] for i in store.images.list()]
    real_open = open

    class Full:
        def __init__(self, f):  # type: ignore[no-untyped-def]
            self.f, self.n = f, 0

        def write(self, data: bytes) -> int:
            self.n += len(data)
            if self.n > 1000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(data)  # type: ignore[no-any-return]

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(self.f, name)

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc):  # type: ignore[no-untyped-def]
            self.f.close()

    monkeypatch.setattr(_blobs, "open", lambda p, m="r", *a, **k: Full(real_open(p, m, *a, **k))
                        if "w" in m else real_open(p, m, *a, **k), raising=False)
    with pytest.raises(Unavailable) as err:
        store.commit(CID, base, "overlay", config={}, created_by="sh", name="full:1")
    text = str(err.value)
    assert text.startswith(f"no space left on device while committing container {CID[:12]}")
    assert f"free space in {tmp_path / 'data'}" in text
    assert "rctr image prune, rctr system prune" in text
    assert os.listdir(store.layout.tmp) == []
    assert set(os.listdir(store.layout.blobs)) == blobs_before
    assert [i["id"] for i in store.images.list()] == images_before


@needs_root
def test_full_disk_while_writing_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The layer is in, the config is not: the layer blob goes again."""
    store, base = _store_with_image(tmp_path)
    _container(store, CID)
    blobs_before = set(os.listdir(store.layout.blobs))

    def full(data: bytes, digest: str | None = None) -> str:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store.blobs, "put_bytes", full)
    with pytest.raises(Unavailable, match="no space left on device"):
        store.commit(CID, base, "overlay", config={}, created_by="sh")
    assert set(os.listdir(store.layout.blobs)) == blobs_before
    assert os.listdir(store.layout.tmp) == []
