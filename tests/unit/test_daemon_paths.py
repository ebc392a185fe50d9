"""daemon._paths.DaemonPaths.ensure: rctrd's two trees are private, whoever made them first."""

from __future__ import annotations

import os
import stat
from pathlib import Path

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
