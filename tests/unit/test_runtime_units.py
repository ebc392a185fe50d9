"""Unit tests of the runtime's pure parts: no namespaces, no privileges needed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from rctr.core.atomic import remove_tree, write_json_atomic
from rctr.core.errors import InvalidArgument, NotFound
from rctr.core.linux import MS_BIND, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC
from rctr.core.proc import Process
from rctr.core.securejoin import secure_join
from rctr.core.subid import subid_ranges
from rctr.rootless import default_spec, exit_code
from rctr.rootless._bundle import load_config
from rctr.core.mountopts import parse_options
from rctr.rootless._state import StateDir, check_id


def test_parse_options_splits_flags_propagation_and_data() -> None:
    flags, prop, data = parse_options(["rbind", "ro", "nosuid", "rprivate", "mode=755", "size=1k"])
    assert flags == MS_BIND | MS_REC | MS_RDONLY | MS_NOSUID
    assert prop == [MS_PRIVATE | MS_REC]
    assert data == "mode=755,size=1k"
    assert parse_options(["ro", "rw"])[0] == 0  # a later option clears an earlier one


def test_secure_join_never_leaves_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/", root / "abs")
    os.symlink("../../..", root / "etc" / "up")
    assert secure_join(str(root), "/../../etc/passwd") == str(root / "etc/passwd")
    assert secure_join(str(root), "abs/etc") == str(root / "etc")
    assert secure_join(str(root), "etc/up/tmp") == str(root / "tmp")
    os.symlink("loop", root / "loop")
    with pytest.raises(OSError):
        secure_join(str(root), "loop/x")


def test_atomic_write_and_remove(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_json_atomic(str(target), {"a": 1})
    write_json_atomic(str(target), {"a": 2}, sync=False)
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    nested = tmp_path / "dir" / "sub"
    nested.mkdir(parents=True)
    (nested / "f").write_text("x")
    remove_tree(str(tmp_path / "dir"))
    assert list(tmp_path.iterdir()) == [target]


def test_process_identity_survives_only_for_the_same_process() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        proc = Process.of(child.pid)
        assert proc is not None and proc.alive()
        stale = Process(child.pid, proc.start_time + 1)
        assert not stale.alive() and not stale.signal(9)
        assert proc.signal(9)
        child.wait()
        assert not proc.alive()
    finally:
        child.kill()
        child.wait()


def test_subid_ranges_by_name_or_uid(tmp_path: Path) -> None:
    f = tmp_path / "subuid"
    f.write_text(f"someone:1:2\n{os.getuid()}:100000:65536\nbad line\n")
    assert subid_ranges(str(f), os.getuid()) == [(100000, 65536)]
    assert subid_ranges(str(tmp_path / "missing"), os.getuid()) == []


def test_ids_are_checked() -> None:
    assert check_id("web-1.a_b+c") == "web-1.a_b+c"
    for bad in ("", "..", "a/b", "x y"):
        with pytest.raises(InvalidArgument):
            check_id(bad)


def test_exit_code_of_signals() -> None:
    assert exit_code(3 << 8) == 3
    assert exit_code(9) == 137


def test_default_spec_rootless_has_a_user_namespace() -> None:
    spec = default_spec(rootless=True)
    kinds = [ns["type"] for ns in spec["linux"]["namespaces"]]
    assert kinds == ["pid", "network", "ipc", "uts", "mount", "cgroup", "user"]
    assert spec["linux"]["uidMappings"][0]["containerID"] == 0
    devpts = next(m for m in spec["mounts"] if m["type"] == "devpts")
    assert not any(o.startswith("gid=") for o in devpts["options"])


def _bundle(tmp_path: Path, config: object) -> str:
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config))
    return str(tmp_path)


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    good = default_spec(rootless=True)
    assert load_config(_bundle(tmp_path, good))["root"]["path"] == str(tmp_path / "rootfs")
    bad = json.loads(json.dumps(good))
    bad["process"]["args"] = []
    with pytest.raises(InvalidArgument, match="process.args"):
        load_config(_bundle(tmp_path, bad))
    bad = json.loads(json.dumps(good))
    bad["process"]["capabilities"]["bounding"].append("CAP_BOGUS")
    with pytest.raises(InvalidArgument, match="CAP_BOGUS"):
        load_config(_bundle(tmp_path, bad))
    bad = json.loads(json.dumps(good))
    bad["linux"]["namespaces"] = [{"type": "pid"}]
    with pytest.raises(InvalidArgument, match="mount namespace is required"):
        load_config(_bundle(tmp_path, bad))
    os.unlink(tmp_path / "config.json")
    with pytest.raises(NotFound, match="no config.json"):
        load_config(str(tmp_path))


def test_state_dir_lists_only_whole_records(tmp_path: Path) -> None:
    states = StateDir(str(tmp_path / "root"))
    d = states.reserve("a")
    states.reserve("half")  # a create that crashed before state.json
    states.save(d, {"id": "a", "pid": 0, "init_start_time": 0})
    assert [c.id for c in states.list()] == ["a"]
    assert states.load("a").status() == "stopped"
