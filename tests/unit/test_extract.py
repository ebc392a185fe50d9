"""Tests of rctr.storage._extract: applying layer tars safely (runs as root: it chowns)."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import sys
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from rctr.core.errors import InvalidArgument, Unsupported
from rctr.storage._extract import WHITEOUT_STYLES, LayerStats, apply_layer

SUPPORT = Path(__file__).parents[1] / "support"
sys.path.insert(0, str(SUPPORT))

import testimage  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="applying layers chowns: needs root")

MTIME = 1_700_000_000


# --------------------------------------------------------------------------
# Building layers
# --------------------------------------------------------------------------


class Entry:
    """One member to put in a test tar: its TarInfo and, for files, the data."""

    def __init__(self, info: tarfile.TarInfo, data: bytes | None = None) -> None:
        self.info, self.data = info, data


def _info(name: str, kind: bytes, mode: int, uid: int, gid: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, mtime
    return info


def f(name: str, data: bytes | str = b"", mode: int = 0o644, uid: int = 0, gid: int = 0,
      mtime: int = MTIME, xattrs: dict[str, str] | None = None) -> Entry:
    raw = data.encode() if isinstance(data, str) else data
    info = _info(name, tarfile.REGTYPE, mode, uid, gid, mtime)
    info.size = len(raw)
    if xattrs:
        info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    return Entry(info, raw)


def d(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: int = MTIME) -> Entry:
    return Entry(_info(name, tarfile.DIRTYPE, mode, uid, gid, mtime))


def sym(name: str, target: str, uid: int = 0, gid: int = 0, mtime: int = MTIME) -> Entry:
    info = _info(name, tarfile.SYMTYPE, 0o777, uid, gid, mtime)
    info.linkname = target
    return Entry(info)


def hl(name: str, target: str) -> Entry:
    info = _info(name, tarfile.LNKTYPE, 0o644, 0, 0, MTIME)
    info.linkname = target
    return Entry(info)


def special(name: str, kind: bytes, mode: int = 0o644) -> Entry:
    info = _info(name, kind, mode, 0, 0, MTIME)
    info.devmajor, info.devminor = 1, 3
    return Entry(info)


def layer(*entries: Entry) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            tar.addfile(e.info, io.BytesIO(e.data) if e.data is not None else None)
    return buf.getvalue()


class Pipe:
    """A read-only, unseekable stream, like a registry download."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)


def apply(data: bytes, dest: Path, whiteouts: str = "delete", **kw: object) -> LayerStats:
    dest.mkdir(exist_ok=True)
    return apply_layer(Pipe(data), str(dest), whiteouts=whiteouts, **kw)  # type: ignore[arg-type]


def snapshot(top: Path, exclude: Path) -> dict[str, tuple[int, bytes | str | None]]:
    """Every path under ``top`` but outside ``exclude``, with its mode and content."""
    seen: dict[str, tuple[int, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [n for n in dirnames if Path(dirpath, n) != exclude]
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            st = os.lstat(p)
            content: bytes | str | None = None
            if stat.S_ISREG(st.st_mode):
                content = p.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(p)
            seen[str(p)] = (st.st_mode, content)
    return seen


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "dest"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A sentinel directory next to dest that no layer may touch."""
    out = tmp_path / "outside"
    out.mkdir()
    (out / "keep").write_text("keep\n")
    return out


# --------------------------------------------------------------------------
# Normal layers
# --------------------------------------------------------------------------


def test_normal_layer(dest: Path) -> None:
    data = layer(
        d("etc", mtime=MTIME - 10),
        f("etc/passwd", "root:x:0:0\n", mode=0o644),
        f("etc/shadow", "secret\n", mode=0o640, uid=0, gid=42),
        d("home", mode=0o755),
        d("home/user", mode=0o700, uid=1000, gid=1000, mtime=MTIME - 20),
        f("home/user/notes", "hi\n", mode=0o600, uid=1000, gid=1000, mtime=MTIME - 30),
        f("bin/su", "ELF", mode=0o4755, uid=0, gid=0),
        f("bin/wall", "ELF", mode=0o2755, uid=0, gid=5),
        f("bin/both", "ELF", mode=0o6750, uid=1000, gid=1000),
        d("tmp", mode=0o1777),
        sym("bin/sh", "/bin/busybox", uid=1000, gid=1000, mtime=MTIME - 40),
        sym("etc/mtab", "../proc/self/mounts"),
        hl("etc/passwd-link", "etc/passwd"),
        special("run-fifo", tarfile.FIFOTYPE, mode=0o620),
        f("etc/xattr", "x", xattrs={"user.rctr.test": "value"}),
    )
    stats = apply(data, dest)

    assert (dest / "etc/passwd").read_text() == "root:x:0:0\n"
    st = os.lstat(dest / "etc/shadow")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, 42)
    st = os.lstat(dest / "home/user")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o700, 1000, 1000)
    assert st.st_mtime == MTIME - 20  # set after its child was written
    assert os.lstat(dest / "etc").st_mtime == MTIME - 10
    assert os.lstat(dest / "home/user/notes").st_mtime == MTIME - 30
    # setuid/setgid survive the chown
    assert stat.S_IMODE(os.lstat(dest / "bin/su").st_mode) == 0o4755
    st = os.lstat(dest / "bin/wall")
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o2755, 5)
    st = os.lstat(dest / "bin/both")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o6750, 1000, 1000)
    assert stat.S_IMODE(os.lstat(dest / "tmp").st_mode) == 0o1777
    # implicit parent: a plain 0755 directory
    assert stat.S_IMODE(os.lstat(dest / "bin").st_mode) == 0o755
    # symlinks: not followed, lchowned, mtime on the link itself
    st = os.lstat(dest / "bin/sh")
    assert stat.S_ISLNK(st.st_mode) and os.readlink(dest / "bin/sh") == "/bin/busybox"
    assert (st.st_uid, st.st_gid, st.st_mtime) == (1000, 1000, MTIME - 40)
    assert os.readlink(dest / "etc/mtab") == "../proc/self/mounts"
    # hardlink shares the inode
    assert os.lstat(dest / "etc/passwd-link").st_ino == os.lstat(dest / "etc/passwd").st_ino
    st = os.lstat(dest / "run-fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620
    assert os.getxattr(dest / "etc/xattr", "user.rctr.test") == b"value"

    assert stats.files == 15
    assert stats.bytes == len("root:x:0:0\n") + len("secret\n") + 3 + 3 * 3 + 1
    assert stats.overflow_owners == [] and stats.devices_skipped == 0


def test_entries_replace_existing_ones(dest: Path) -> None:
    apply(layer(d("a"), f("a/x", "x"), f("b", "b"), d("c", mode=0o700), f("c/keep", "k"),
                sym("s", "b"), f("t", "t")), dest)
    apply(layer(f("a", "now a file"), d("b", mode=0o750), d("c", mode=0o755, uid=7),
                f("s", "was a symlink"), sym("t", "b")), dest)
    assert (dest / "a").read_text() == "now a file"
    assert stat.S_ISDIR(os.lstat(dest / "b").st_mode)
    assert stat.S_IMODE(os.lstat(dest / "b").st_mode) == 0o750
    st = os.lstat(dest / "c")  # a dir over a dir: kept, metadata updated
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o755, 7)
    assert (dest / "c/keep").read_text() == "k"
    assert not os.path.islink(dest / "s") and (dest / "s").read_text() == "was a symlink"
    assert os.readlink(dest / "t") == "b"


def test_a_file_replaces_a_planted_symlink_instead_of_writing_through(
        dest: Path, outside: Path, tmp_path: Path) -> None:
    apply(layer(sym("pwn", str(outside / "keep"))), dest)
    before = snapshot(tmp_path, dest)
    apply(layer(f("pwn", "mine")), dest)
    assert (dest / "pwn").read_text() == "mine" and not os.path.islink(dest / "pwn")
    assert snapshot(tmp_path, dest) == before


# --------------------------------------------------------------------------
# Whiteouts
# --------------------------------------------------------------------------


def test_vfs_whiteouts_and_opaque_directory(dest: Path) -> None:
    apply(layer(f("gone", "g"), d("gonedir"), f("gonedir/x", "x"), d("opq"), f("opq/lower-a"),
                d("opq/sub"), f("opq/sub/lower-b"), f("stays", "s")), dest)
    apply(layer(
        d("opq"),
        f("opq/early", "added before the marker"),  # same layer: survives the opaque marker
        f("opq/.wh..wh..opq"),
        f(".wh.gone"),
        f(".wh.gonedir"),
        f(".wh.never-existed"),
        f("opq/sub/late", "added after the marker"),
    ), dest)
    assert not os.path.lexists(dest / "gone")
    assert not os.path.lexists(dest / "gonedir")
    assert (dest / "stays").read_text() == "s"
    assert sorted(os.listdir(dest / "opq")) == ["early", "sub"]
    assert os.listdir(dest / "opq/sub") == ["late"]
    assert not any(n.startswith(".wh.") for _, ds, fs in os.walk(dest) for n in ds + fs)


def test_vfs_whiteout_of_a_name_the_same_layer_made_keeps_it(dest: Path) -> None:
    apply(layer(d("dir"), f("dir/lower")), dest)
    apply(layer(d("dir"), f("dir/upper"), f(".wh.dir")), dest)
    assert os.listdir(dest / "dir") == ["upper"]


def test_overlay_whiteouts(dest: Path) -> None:
    stats = apply(layer(
        f(".wh.gone"),
        d("dir"),
        f("dir/.wh..wh..opq"),
        f("dir/new", "n"),
        f("deep/er/.wh.x"),
        f("forged", "f", xattrs={"user.overlay.redirect": "/etc", "user.ok": "1"}),
    ), dest, whiteouts="overlay")
    for path in (dest / "gone", dest / "deep/er/x"):
        st = os.lstat(path)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0, 0, 0)
    assert os.getxattr(dest / "dir", "user.overlay.opaque") == b"y"
    assert (dest / "dir/new").read_text() == "n"
    assert not os.path.lexists(dest / "dir/.wh..wh..opq")
    assert os.listxattr(dest / "forged") == ["user.ok"]  # overlay's own xattrs are dropped
    assert stats.files == 3


def test_overlay_directory_over_its_own_whiteout_becomes_opaque(dest: Path) -> None:
    apply(layer(f(".wh.etc"), d("etc"), f("etc/new")), dest, whiteouts="overlay")
    assert stat.S_ISDIR(os.lstat(dest / "etc").st_mode)
    assert os.getxattr(dest / "etc", "user.overlay.opaque") == b"y"


def test_whiteout_style_is_checked(dest: Path) -> None:
    assert WHITEOUT_STYLES == ("overlay", "delete")
    with pytest.raises(InvalidArgument):
        apply(layer(f("x")), dest, whiteouts="aufs")


# --------------------------------------------------------------------------
# Hostile layers
# --------------------------------------------------------------------------

# Each case: the layers, built from the sentinel's path; the last one must be refused,
# naming the entry given.
Case = Callable[[Path], tuple[Sequence[bytes], str]]

HOSTILE: dict[str, Case] = {
    "absolute name": lambda out: ([layer(f(str(out / "pwn"), "x"))], str(out / "pwn")),
    "dotdot name": lambda out: ([layer(f("../outside/pwn", "x"))], "../outside/pwn"),
    "dotdot inside name": lambda out: ([layer(d("a"), f("a/../../pwn", "x"))], "a/../../pwn"),
    "symlink escape relative": lambda out: (
        [layer(sym("up", "../outside"))], "up"),
    "symlink escape relative deep": lambda out: (
        [layer(d("a"), sym("a/up", "../../../../.."))], "a/up"),
    "symlink escape absolute, then a file through it": lambda out: (
        [layer(sym("abs", str(out)), f("abs/pwn", "x"))], "abs/pwn"),
    "symlinked dir then a file through it, same layer": lambda out: (
        [layer(d("real"), sym("lnk", "real"), f("lnk/pwn", "x"))], "lnk/pwn"),
    "symlinked dir then a dir through it": lambda out: (
        [layer(sym("lnk", str(out)), d("lnk/sub"))], "lnk/sub"),
    "symlinked dir then a file through it, two layers": lambda out: (
        [layer(sym("lnk", str(out))), layer(f("lnk/pwn", "x"))], "lnk/pwn"),
    "symlinked dir then a whiteout through it": lambda out: (
        [layer(sym("lnk", str(out))), layer(f("lnk/.wh.keep"))], "lnk/.wh.keep"),
    "symlinked dir then an opaque marker through it": lambda out: (
        [layer(sym("lnk", str(out))), layer(f("lnk/.wh..wh..opq"))], "lnk/.wh..wh..opq"),
    "hardlink escape dotdot": lambda out: ([layer(hl("hl", "../outside/keep"))], "hl"),
    "hardlink escape absolute": lambda out: ([layer(hl("hl", str(out / "keep")))], "hl"),
    "hardlink through a symlink, same layer": lambda out: (
        [layer(sym("s", str(out)), hl("hl", "s/keep"))], "hl"),
    "hardlink through a symlink, two layers": lambda out: (
        [layer(sym("s", str(out))), layer(hl("hl", "s/keep"))], "hl"),
    "hardlink to a directory": lambda out: ([layer(d("dir"), hl("hl", "dir"))], "hl"),
    "hardlink to nothing": lambda out: ([layer(hl("hl", "missing"))], "hl"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("whiteouts", WHITEOUT_STYLES)
def test_hostile_layer_is_refused(case: str, whiteouts: str, dest: Path, outside: Path,
                                  tmp_path: Path) -> None:
    layers, entry = HOSTILE[case](outside)
    before = snapshot(tmp_path, dest)
    for data in layers[:-1]:
        apply(data, dest, whiteouts)
    with pytest.raises(InvalidArgument) as exc:
        apply(layers[-1], dest, whiteouts)
    assert repr(entry) in str(exc.value)
    assert snapshot(tmp_path, dest) == before
    assert (outside / "keep").read_text() == "keep\n"


def test_device_nodes_are_skipped(dest: Path) -> None:
    stats = apply(layer(special("dev/null", tarfile.CHRTYPE), special("dev/sda", tarfile.BLKTYPE),
                        hl("dev/null-link", "dev/null"), f("dev/ok", "ok")), dest)
    assert stats.devices_skipped == 3
    assert sorted(os.listdir(dest / "dev")) == ["ok"]


def _big_layer(size: int) -> bytes:
    return layer(f("big", os.urandom(size)), f("after", "a"))


def test_truncated_gzip_is_refused(dest: Path) -> None:
    data = gzip.compress(_big_layer(256 << 10))
    with pytest.raises(InvalidArgument, match="truncated layer"):
        apply(data[: len(data) // 2], dest)
    with pytest.raises(InvalidArgument, match="truncated layer"):
        apply(data[:-4], dest)  # only the trailer's size field missing


# a: header at 0, data 512..1536; b: header at 1536, data at 2048; then zero blocks
@pytest.mark.parametrize("cut", [100, 512 + 300, 1536, 1536 + 200, 2048])
def test_truncated_tar_is_refused(cut: int, dest: Path, tmp_path: Path) -> None:
    data = layer(f("a", "a" * 600), f("b", "b"))
    apply(data[:3072], tmp_path / "ok")  # a cut after the first zero block is harmless
    with pytest.raises(InvalidArgument, match="truncated layer"):
        apply(data[:cut], dest)


def test_empty_input_is_refused(dest: Path) -> None:
    with pytest.raises(InvalidArgument, match="truncated layer"):
        apply(b"", dest)


def test_file_over_max_bytes_is_refused_before_writing(dest: Path) -> None:
    data = gzip.compress(layer(f("small", "s"), f("huge", bytes(8 << 20))))
    assert len(data) < 64 << 10  # a decompression bomb
    with pytest.raises(InvalidArgument, match="layer larger than 1048576 bytes"):
        apply(data, dest, max_bytes=1 << 20)
    assert not os.path.lexists(dest / "huge")


def test_decompressed_stream_over_max_bytes_is_refused(dest: Path) -> None:
    data = gzip.compress(layer(f("small", "s")) + bytes(8 << 20))  # zero padding after the end
    with pytest.raises(InvalidArgument, match="layer larger than"):
        apply(data, dest, max_bytes=1 << 20)


def test_within_max_bytes_is_fine(dest: Path) -> None:
    stats = apply(gzip.compress(layer(f("a", bytes(1000)))), dest, max_bytes=1 << 20)
    assert stats.bytes == 1000


# --------------------------------------------------------------------------
# Owners
# --------------------------------------------------------------------------


def test_owner_outside_the_mapped_range_overflows(dest: Path) -> None:
    stats = apply(layer(f("mine", uid=1000, gid=1000), f("theirs", uid=70000, gid=5),
                        sym("link", "mine", uid=5, gid=80000), d("dir", uid=99999, gid=99999)),
                  dest, id_ok=lambda u, g: u < 65536 and g < 65536, overflow_id=65534)
    assert os.lstat(dest / "mine").st_uid == 1000
    for name in ("theirs", "link", "dir"):
        st = os.lstat(dest / name)
        assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert stats.overflow_owners == ["theirs (uid 70000, gid 5)", "link (uid 5, gid 80000)",
                                     "dir (uid 99999, gid 99999)"]


def test_chown_einval_overflows(dest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.chown

    def chown(path: str, uid: int, gid: int, **kw: object) -> None:
        if uid == 4242:
            raise OSError(22, "Invalid argument")
        real(path, uid, gid, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "chown", chown)
    stats = apply(layer(f("x", uid=4242, gid=4242, mode=0o4755)), dest, overflow_id=12345)
    st = os.lstat(dest / "x")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12345, 12345, 0o4755)
    assert stats.overflow_owners == ["x (uid 4242, gid 4242)"]


# --------------------------------------------------------------------------
# Compression, progress
# --------------------------------------------------------------------------


def test_gzip_is_detected(dest: Path, tmp_path: Path) -> None:
    data = layer(d("etc"), f("etc/motd", "hello\n"))
    apply(gzip.compress(data), dest)
    assert (dest / "etc/motd").read_text() == "hello\n"
    plain = tmp_path / "plain"
    apply(data, plain)
    assert (plain / "etc/motd").read_text() == "hello\n"


def test_zstd_without_the_module_is_unsupported(dest: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(Unsupported) as exc:
        apply(b"\x28\xb5\x2f\xfd" + bytes(100), dest)
    assert exc.value.hint is not None and "pip install zstandard" in exc.value.hint


def test_zstd_with_the_module(dest: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    data = zstandard.ZstdCompressor().compress(layer(f("z", "zstd\n")))
    apply(data, dest)
    assert (dest / "z").read_text() == "zstd\n"


def test_progress_every_mib(dest: Path) -> None:
    data = _big_layer(3 << 20)
    seen: list[int] = []
    apply(data, dest, on_progress=seen.append)
    assert len(seen) >= 3
    assert seen == sorted(seen) and seen[-1] == len(data)


# --------------------------------------------------------------------------
# The shared test image
# --------------------------------------------------------------------------


def test_testimage_layers_in_order(tmp_path: Path, dest: Path) -> None:
    layout = tmp_path / "oci"
    testimage.build_oci_layout(str(layout))

    def blob(digest: str) -> bytes:
        return (layout / "blobs/sha256" / digest.split(":", 1)[1]).read_bytes()

    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    assert len(manifest["layers"]) == 3
    for desc in manifest["layers"]:
        stats = apply(blob(desc["digest"]), dest, "delete", max_bytes=64 << 20)
        assert stats.overflow_owners == []

    assert not os.path.lexists(dest / "deleted-later")
    assert os.listdir(dest / "opaque") == ["upper-c"]
    assert (dest / "etc/motd").read_text() == "layer 2\n"
    st, link = os.lstat(dest / "etc/layer3"), os.lstat(dest / "etc/layer3-link")
    assert st.st_ino == link.st_ino and st.st_nlink == 2
    assert stat.S_IMODE(os.lstat(dest / "bin/setuid-marker").st_mode) == 0o4755
    assert os.readlink(dest / "bin/sh") == "/bin/busybox"
    assert stat.S_IMODE(os.lstat(dest / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.lstat(dest / "root").st_mode) == 0o700
    assert os.lstat(dest / "home/user").st_uid == 1000
