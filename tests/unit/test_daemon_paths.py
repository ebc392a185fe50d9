"""daemon._paths.DaemonPaths.ensure: rctrd's two trees are private, whoever made them first."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rctr.daemon._paths import DaemonPaths


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_trees_are_private(tmp_path: Path) -> None:
    paths = DaemonPaths(str(tmp_path / "run" / "rctr"), str(tmp_path / "share" / "rctr"))
    paths.ensure()
    for d in (paths.rundir, paths.datadir, paths.shims, paths.runtime_root, paths.containers,
              paths.volumes):
        assert _mode(d) == 0o700, d


def test_existing_open_trees_are_closed(tmp_path: Path) -> None:
    # The store (or an older rctr) made the data dir first, with the umask's 0755.
    paths = DaemonPaths(str(tmp_path / "run"), str(tmp_path / "share"))
    for d in (paths.rundir, paths.datadir, os.path.join(paths.datadir, "storage")):
        os.makedirs(d)
        os.chmod(d, 0o755)
    paths.ensure()
    assert _mode(paths.rundir) == _mode(paths.datadir) == 0o700
    assert _mode(os.path.join(paths.datadir, "storage")) == 0o755  # the store's own business


def test_a_tree_of_someone_else_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # /tmp/rctr-UID taken first by another user (here: the files' owner is not "us").
    paths = DaemonPaths(str(tmp_path / "run"), str(tmp_path / "share"))
    os.makedirs(paths.rundir)
    monkeypatch.setattr(os, "getuid", lambda: os.stat(paths.rundir).st_uid + 1)
    with pytest.raises(PermissionError) as err:
        paths.ensure()
    assert err.value.filename == paths.rundir and "belongs to uid" in err.value.strerror


def test_a_symlink_of_someone_else_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to make a symlink owned by another uid")
    mine = tmp_path / "mine"
    mine.mkdir()
    link = tmp_path / "run"
    link.symlink_to(mine)
    os.lchown(link, 65534, 65534)
    with pytest.raises(PermissionError):
        DaemonPaths(str(link), str(tmp_path / "share")).ensure()
