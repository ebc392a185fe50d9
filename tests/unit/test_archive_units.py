"""docker cp's pieces without a daemon: the stat header, path resolution, tar in and out.

The "container" here is a temporary directory holding hostile symlinks; a
"host" directory beside it holds what must never be read or written.
"""

from __future__ import annotations

import base64
import errno
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from rctr.core.errors import InvalidArgument, NotFound
from rctr.daemon._archive import (Mount, Tree, Upload, encode_stat, extract, go_mode, path_stat,
                                  prepare_upload, split_request_path, write_tar)


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    root, host = tmp_path / "rootfs", tmp_path / "host"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0\n")
    (root / "data").mkdir()
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "sub" / "f").write_text("in sub\n")
    host.mkdir()
    (host / "secret").write_text("host secret\n")
    (root / "to-root").symlink_to("/")
    (root / "to-host").symlink_to(str(host))             # absolute: means /<host path> inside
    (root / "climb").symlink_to("../../../../../../host")  # relative: stops at the root
    (root / "etc-link").symlink_to("/etc")
    return root, host


def _tree(root: Path, mounts: list[Mount] | None = None) -> Tree:
    return Tree(str(root), mounts or [])


def _tar(entries: list[tuple[str, bytes | None, str]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            info.uid = info.gid = 1234
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, (data or b"").decode()
                tar.addfile(info)
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
                tar.addfile(info)
            else:
                info.size, info.mode = len(data or b""), 0o644
                tar.addfile(info, io.BytesIO(data or b""))
    buf.seek(0)
    return buf


def _names(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


# -- the stat header --------------------------------------------------------------------------


def test_go_mode_bits() -> None:
    assert go_mode(stat.S_IFDIR | 0o755) == (1 << 31) | 0o755
    assert go_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert go_mode(stat.S_IFREG | 0o4755) == (1 << 23) | 0o755
    assert go_mode(stat.S_IFCHR | 0o666) == (1 << 26) | (1 << 21) | 0o666
    assert go_mode(stat.S_IFREG | 0o1644) == (1 << 20) | 0o644


def test_stat_header_is_base64_json(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"12345")
    os.utime(f, ns=(0, 1_500_000_000_250_000_000))
    info = path_stat("f", os.lstat(f))
    decoded = json.loads(base64.b64decode(encode_stat(info)))
    assert decoded == {"name": "f", "size": 5, "mode": os.lstat(f).st_mode & 0o777,
                       "mtime": "2017-07-14T02:40:00.25Z", "linkTarget": ""}


@pytest.mark.parametrize("raw,expected", [
    ("/etc/passwd", ("/etc/passwd", "passwd", False)),
    ("etc/passwd", ("/etc/passwd", "passwd", False)),
    ("/etc/", ("/etc", "etc", True)),
    ("/etc/.", ("/etc", ".", True)),
    ("/", ("/", "/", True)),
    ("/a/../../b", ("/b", "b", False)),
])
def test_split_request_path(raw: str, expected: tuple[str, str, bool]) -> None:
    assert split_request_path(raw) == expected


# -- resolution -------------------------------------------------------------------------------


def test_symlinks_resolve_inside_the_root(world: tuple[Path, Path]) -> None:
    root, host = world
    with _tree(root) as tree:
        for path, expected in [("/to-root/etc/passwd", "/etc/passwd"),
                               ("/etc-link/passwd", "/etc/passwd"),
                               ("/climb", "/host")]:
            try:
                entry = tree.resolve(path, follow=True)
            except NotFound as exc:
                assert expected == "/host", exc  # /host does not exist inside: not the host's
                continue
            assert entry.path == expected
            entry.close()
        with pytest.raises(NotFound):
            tree.resolve("/to-host/secret", follow=True)  # the host path, not inside the root
        with pytest.raises(NotFound):
            tree.resolve("/climb/secret", follow=True)


def test_last_symlink_is_kept_unless_followed(world: tuple[Path, Path]) -> None:
    root, _ = world
    with _tree(root) as tree:
        entry = tree.resolve("/etc-link")
        assert stat.S_ISLNK(entry.st.st_mode)
        assert tree.link_target(entry) == "/etc"
        entry.close()
        entry = tree.resolve("/etc-link", follow=True)
        assert stat.S_ISDIR(entry.st.st_mode) and entry.path == "/etc"
        entry.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_loops_dotdot_and_files_on_the_way(world: tuple[Path, Path]) -> None:
    root, _ = world
    (root / "loop").symlink_to("loop")
    (root / "dir" / "up").symlink_to("../etc/../dir/./sub")
    before = _open_fds()
    with _tree(root) as tree:
        with pytest.raises(OSError) as exc:
            tree.resolve("/loop/x")
        assert exc.value.errno == errno.ELOOP
        with pytest.raises(NotADirectoryError):
            tree.resolve("/etc/passwd/x")
        entry = tree.resolve("/dir/up/f", follow=True)
        assert entry.path == "/dir/sub/f"
        entry.close()
        entry = tree.resolve("/../../dir/sub/../sub")
        assert entry.path == "/dir/sub"
        entry.close()
    assert _open_fds() == before  # every handle of every walk closed, failed or not


def test_mounts_longest_destination_first(world: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = world
    vol, inner = tmp_path / "vol", tmp_path / "inner"
    vol.mkdir()
    inner.mkdir()
    (vol / "v").write_text("volume\n")
    (inner / "i").write_text("inner\n")
    mounts = [Mount.at("/data", str(vol)), Mount.at("/data/deep", str(inner), rw=False)]
    with _tree(root, mounts) as tree:
        entry = tree.resolve("/data/v")
        assert entry.mount == mounts[0] and entry.st.st_ino == os.stat(vol / "v").st_ino
        entry.close()
        entry = tree.resolve("/data/deep/i")
        assert entry.mount == mounts[1] and entry.st.st_ino == os.stat(inner / "i").st_ino
        entry.close()
        # A symlink in the rootfs that leads into a volume lands in the volume.
        (root / "to-data").symlink_to("/data")
        entry = tree.resolve("/to-data/v", follow=True)
        assert entry.st.st_ino == os.stat(vol / "v").st_ino
        entry.close()


# -- reading ----------------------------------------------------------------------------------


def test_tar_of_a_directory_keeps_symlinks_as_links(world: tuple[Path, Path]) -> None:
    root, _ = world
    with _tree(root) as tree:
        entry = tree.resolve("/")
        out = io.BytesIO()
        write_tar(tree, entry, "/", out)
        entry.close()
    members = _names(out.getvalue())
    assert members["/to-host"].issym() and members["/to-host"].linkname.endswith("host")
    assert "/to-host/secret" not in members and not any("secret" in n for n in members)
    assert members["/dir/sub/f"].isfile()
    with _tree(root) as tree:
        entry = tree.resolve("/dir")
        out = io.BytesIO()
        write_tar(tree, entry, "dir", out)
        entry.close()
    assert sorted(_names(out.getvalue())) == ["dir", "dir/sub", "dir/sub/f"]


# -- writing ----------------------------------------------------------------------------------


def _upload(root: Path, path: str, data: io.BytesIO, mounts: list[Mount] | None = None,
            **kw: bool) -> None:
    with _tree(root, mounts) as tree:
        entry = tree.resolve(path, follow=True)
        try:
            with Upload(entry, list(tree.mounts.values())) as upload:
                prepare_upload(data, upload, copy_ids=kw.get("copy_ids", False),
                               no_overwrite_dir_non_dir=kw.get("no_overwrite", False))
                extract(upload, lambda u, g: True)
        finally:
            entry.close()


def test_upload_refuses_dotdot_before_writing(world: tuple[Path, Path]) -> None:
    root, host = world
    data = _tar([("ok", b"fine", "file"), ("../../host/secret", b"owned", "file")])
    with pytest.raises(InvalidArgument, match="leaves the destination"):
        _upload(root, "/dir", data)
    assert not (root / "dir" / "ok").exists()
    assert (host / "secret").read_text() == "host secret\n"


def test_upload_through_planted_symlinks_stays_inside(world: tuple[Path, Path]) -> None:
    root, host = world
    # The destination itself is a symlink to the host path: resolved inside the root.
    with pytest.raises(NotFound):
        _upload(root, "/to-host", _tar([("secret", b"owned", "file")]))
    # A symlink inside the destination is replaced, never written through.
    (root / "dir" / "secret").symlink_to(str(host / "secret"))
    _upload(root, "/dir", _tar([("secret", b"new", "file")]))
    assert (host / "secret").read_text() == "host secret\n"
    assert (root / "dir" / "secret").read_text() == "new"
    # A symlink made by the archive itself, then written through: refused up front.
    with pytest.raises(InvalidArgument, match="through the symlink"):
        _upload(root, "/dir", _tar([("l2", str(host).encode(), "sym"), ("l2/secret", b"x", "file")]))
    assert not (root / "dir" / "l2").is_symlink()
    # A parent that is a symlink is refused.
    (root / "dir" / "out").symlink_to(str(host))
    with pytest.raises(InvalidArgument, match="symlink"):
        _upload(root, "/dir", _tar([("out/secret", b"owned", "file")]))
    assert (host / "secret").read_text() == "host secret\n"


def test_upload_owners_devices_and_overwrite(world: tuple[Path, Path]) -> None:
    root, _ = world
    _upload(root, "/dir", _tar([("new", None, "dir"), ("new/f", b"x", "file"),
                                ("null", None, "chr")]))
    assert os.lstat(root / "dir" / "new" / "f").st_uid == 0
    assert not (root / "dir" / "null").exists()
    _upload(root, "/dir", _tar([("g", b"y", "file")]), copy_ids=True)
    assert os.lstat(root / "dir" / "g").st_uid == 1234
    with pytest.raises(InvalidArgument, match="cannot overwrite directory"):
        _upload(root, "/dir", _tar([("sub", b"file now", "file")]), no_overwrite=True)
    assert (root / "dir" / "sub").is_dir()


def test_upload_entries_under_a_volume_go_to_the_volume(world: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    root, _ = world
    vol = tmp_path / "vol"
    vol.mkdir()
    _upload(root, "/", _tar([("data/x", b"into the volume", "file"), ("top", b"t", "file")]),
            mounts=[Mount.at("/data", str(vol))])
    assert (vol / "x").read_bytes() == b"into the volume"
    assert not (root / "data" / "x").exists()
    assert (root / "top").read_bytes() == b"t"


def _spooled(root: Path, path: str, data: io.BytesIO,
             mounts: list[Mount] | None = None) -> dict[str, dict[str, tarfile.TarInfo]]:
    """What prepare_upload spools for each target directory, by container path."""
    with _tree(root, mounts) as tree:
        entry = tree.resolve(path, follow=True)
        try:
            with Upload(entry, list(tree.mounts.values())) as upload:
                prepare_upload(data, upload, copy_ids=False, no_overwrite_dir_non_dir=False)
                return {"/" + "/".join(parts): _names(part.spool.read())
                        for parts, part in upload.targets.items()}
        finally:
            entry.close()


def _with(entries: list[tarfile.TarInfo]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in entries:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    buf.seek(0)
    return buf


def test_upload_hardlinks_stay_within_their_directory(world: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    root, _ = world
    vol = tmp_path / "vol"
    vol.mkdir()
    mounts = [Mount.at("/data", str(vol))]
    f = tarfile.TarInfo("data/f")
    f.size = 1
    link = tarfile.TarInfo("data/l")
    link.type, link.linkname = tarfile.LNKTYPE, "data/f"
    spools = _spooled(root, "/", _with([f, link]), mounts)
    # Both land in the volume, the link's target named as in the volume.
    assert spools["/"] == {}
    assert spools["/data"]["l"].linkname == "f" and spools["/data"]["l"].islnk()
    across = tarfile.TarInfo("top")
    across.type, across.linkname = tarfile.LNKTYPE, "data/f"
    with pytest.raises(InvalidArgument, match="hardlink across a mount point"):
        _spooled(root, "/", _with([f, across]), mounts)


def test_upload_keeps_only_user_xattrs_and_drops_owner_names(world: tuple[Path, Path]) -> None:
    root, _ = world
    f = tarfile.TarInfo("f")
    f.size, f.uname, f.gname = 1, "alice", "staff"
    f.pax_headers = {"SCHILY.xattr.user.tag": "kept", "SCHILY.xattr.security.capability": "no",
                     "comment": "dropped"}
    # A symlink the archive makes, then replaced by a directory: entries under it pass.
    sym = tarfile.TarInfo("s")
    sym.type, sym.linkname = tarfile.SYMTYPE, "/etc"
    d = tarfile.TarInfo("s")
    d.type = tarfile.DIRTYPE
    under = tarfile.TarInfo("s/g")
    fifo = tarfile.TarInfo("p")
    fifo.type = tarfile.FIFOTYPE
    spool = _spooled(root, "/dir", _with([f, sym, d, under, fifo]))["/dir"]
    assert spool["f"].pax_headers == {"SCHILY.xattr.user.tag": "kept"}
    assert (spool["f"].uname, spool["f"].gname, spool["f"].uid) == ("", "", 0)
    assert spool["s"].isdir() and "s/g" in spool and spool["p"].isfifo()
