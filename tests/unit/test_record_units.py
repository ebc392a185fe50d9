"""daemon/_record.py: the typed container record, its forms on disk, Docker's inspect of it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from rctr.daemon._record import (RECORD_VERSION, ZERO_TIME, Endpoint, Record, State, Status,
                                 from_disk, inspect_json, to_disk)

CID = "ab" * 32
CDIR = f"/home/u/.local/share/rctr/containers/{CID}"


def legacy_record() -> dict[str, Any]:
    """A running container's record as rctrd wrote it before the version field (e48fd05)."""
    return {
        "Id": CID, "Created": "2026-12-08T01:00:00.123456789Z", "Path": "sleep", "Args": ["60"],
        "State": {"Status": "running", "Running": True, "Paused": False, "Restarting": False,
                  "OOMKilled": False, "Dead": False, "Pid": 4242, "ExitCode": 0, "Error": "",
                  "StartedAt": "2026-12-08T01:00:01.5Z", "FinishedAt": ZERO_TIME},
        "Image": "sha256:" + "cd" * 32,
        "ResolvConfPath": f"{CDIR}/resolv.conf", "HostnamePath": f"{CDIR}/hostname",
        "HostsPath": f"{CDIR}/hosts", "LogPath": f"{CDIR}/{CID}-json.log",
        "Name": "/web", "RestartCount": 2, "Driver": "overlay", "Platform": "linux",
        "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None,
        "HostConfig": {"NetworkMode": "front", "RestartPolicy": {"Name": "always",
                                                                  "MaximumRetryCount": 0},
                       "LogConfig": {"Type": "json-file", "Config": {}}, "Binds": None,
                       "AutoRemove": False, "Privileged": False, "ReadonlyRootfs": False,
                       "ShmSize": 67108864},
        "GraphDriver": {"Name": "overlay", "Data": {"MergedDir": "/m", "UpperDir": "/u",
                                                    "WorkDir": "/w"}},
        "Mounts": [{"Type": "volume", "Name": "v1", "Source": "/vol/v1", "Destination": "/data",
                    "Driver": "local", "Mode": "", "RW": True, "Propagation": "",
                    "NoCopy": True}],
        "Config": {"Image": "alpine", "Cmd": ["sleep", "60"], "Labels": {"a": "b"},
                   "Hostname": "abababababab", "Tty": False},
        "NetworkSettings": {"Networks": {"front": {"IPAddress": "10.89.1.2"}}, "Ports": {}},
        "_rctr": {"rw_mount": {"type": "overlay", "destination": "/m", "options": []},
                  "image_ref": "alpine", "anonymous": ["anon1"], "manually_stopped": False,
                  "runtime": "rctr", "cgroup": "/sys/fs/cgroup/u/c",
                  "networks": {"front": {"NetworkID": "ff" * 32, "Aliases": ["svc"],
                                         "IPv4Address": "", "_ifname": "eth0"}},
                  "health": {"Status": "healthy", "FailingStreak": 0, "Log": []},
                  "health_run": "2026-12-08T01:00:01.5Z"},
    }


def test_a_legacy_record_is_read_unchanged() -> None:
    old = legacy_record()
    r = from_disk(copy.deepcopy(old))
    assert (r.id, r.name, r.image_ref, r.runtime, r.cgroup) == (CID, "web", "alpine", "rctr",
                                                                  "/sys/fs/cgroup/u/c")
    assert r.state.running and r.state.pid == 4242 and r.restart_count == 2
    assert r.networks == {"front": Endpoint("ff" * 32, ["svc"], "", "eth0")}
    assert r.anonymous == ["anon1"] and r.rootfs == "/m" and not r.manually_stopped
    # Docker's inspect of it is what the old rctrd answered: the record less _rctr,
    # the health in State, NoCopy left out of Mounts.
    want = {k: v for k, v in old.items() if k != "_rctr"}
    want["State"]["Health"] = old["_rctr"]["health"]
    want["Mounts"] = [{k: v for k, v in m.items() if k != "NoCopy"} for m in old["Mounts"]]
    assert inspect_json(r) == want
    assert list(inspect_json(r)) == list(want)  # the same order of keys, too


def test_the_current_form_round_trips_and_carries_its_version() -> None:
    r = from_disk(legacy_record())
    disk = json.loads(json.dumps(to_disk(r)))
    assert disk["version"] == RECORD_VERSION and "_rctr" not in disk
    assert from_disk(disk) == r
    placeholder = Record(id=CID, name="x", placeholder=True)
    assert from_disk(json.loads(json.dumps(to_disk(placeholder)))) == placeholder


def test_an_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version 99"):
        from_disk({"version": 99, "id": CID})


def test_inspect_is_a_copy() -> None:
    r = from_disk(legacy_record())
    out = inspect_json(r, ["e1"])
    assert out["ExecIDs"] == ["e1"]
    out["Config"]["Labels"]["a"] = "changed"
    out["State"]["Health"]["Status"] = "changed"
    assert r.config["Labels"]["a"] == "b" and (r.state.health or {})["Status"] == "healthy"


def test_the_lifecycle() -> None:
    s = State()
    assert s.status is Status.CREATED and not s.running
    s.started(7)
    assert s.running and s.pid == 7 and s.started_at != ZERO_TIME and s.finished_at == ZERO_TIME
    s.exited(3, "2026-12-08T01:00:02Z", "")
    assert (s.status, s.pid, s.exit_code, s.running) == (Status.EXITED, 0, 3, False)
    s.restarting()
    assert inspect_json(Record(id=CID, name="x", state=s))["State"]["Restarting"] is True
    s.restart_failed("no")
    assert (s.status, s.error) == (Status.EXITED, "no")
    s.start_failed("exec: not found", 127)
    assert (s.status, s.exit_code) == (Status.EXITED, 127)
