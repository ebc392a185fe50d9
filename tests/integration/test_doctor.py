"""``rctr doctor`` as the unprivileged users: one with subordinate ranges, one without."""

from __future__ import annotations

import json

import pytest
from harness import UserShell

from rctr.core.doctor import NAMES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def _doctor(shell: UserShell, *args: str) -> tuple[int, list[dict[str, str]], str]:
    """Run doctor with no rctr state at all (fresh XDG dirs); (status, checks, text)."""
    env = shell.env(XDG_DATA_HOME=str(shell.base / "data"),
                    XDG_CONFIG_HOME=str(shell.base / "config"))
    text = shell.rctr("doctor", *args, env=env, timeout=60)
    assert text.stderr == "", text.stderr
    r = shell.rctr("doctor", "--format", "json", env=env, timeout=60)
    checks = json.loads(r.stdout)
    assert r.returncode == text.returncode
    # No daemon was started and no state was written.
    assert not (shell.base / "data").exists() and not (shell.base / "config").exists()
    assert not (shell.runtime_dir / "rctr").exists()
    return text.returncode, checks, text.stdout


def _by_name(checks: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in checks}


@pytest.mark.requires("root", "user", "subuid", "newuidmap", "userns")
def test_doctor_as_a_user_with_ranges(user: UserShell) -> None:
    status, checks, text = _doctor(user)
    assert [c["name"] for c in checks] == list(NAMES)
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in checks)
    by_name = _by_name(checks)
    for name in ("newuidmap", "newgidmap", "subuid", "subgid", "userns", "idmap"):
        assert by_name[name]["status"] == "ok", by_name[name]
    assert f"{user.name}: " in by_name["subuid"]["detail"]
    assert by_name["runtime-dir"]["status"] == "ok"  # the harness's dir is the user's, 0700
    failed = [c for c in checks if c["status"] == "fail"]
    assert status == (1 if failed else 0), failed
    # One line per check, then each fix indented under its warn or fail line.
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["ok", "newuidmap"]
    for c in checks:
        if c["status"] != "ok":
            line = next(i for i, s in enumerate(lines) if s.split()[1:2] == [c["name"]])
            assert lines[line + 1] == "      fix: " + c["fix"].splitlines()[0]


@pytest.mark.requires("root", "nosub-user")
def test_doctor_as_a_user_without_ranges(nosub_user: UserShell) -> None:
    status, checks, text = _doctor(nosub_user)
    by_name = _by_name(checks)
    for kind in ("uid", "gid"):
        check = by_name[f"sub{kind}"]
        assert check["status"] == "fail"
        assert check["fix"].startswith(f"sudo usermod --add-sub{kind}s ")
        assert check["fix"].endswith(f" {nosub_user.name}")
    assert by_name["idmap"]["status"] == "warn"
    assert status == 1
    assert "fail  subuid" in text and "fix: sudo usermod --add-subuids" in text


@pytest.mark.requires("root", "user")
def test_doctor_without_xdg_runtime_dir_warns_with_the_fallback(user: UserShell) -> None:
    env = user.env(XDG_DATA_HOME=str(user.base / "data"))
    del env["XDG_RUNTIME_DIR"]
    fallback = f"/tmp/rctr-{user.uid}"
    r = user.rctr("doctor", "--format", "json", env=env, timeout=60)
    check = _by_name(json.loads(r.stdout))["runtime-dir"]
    assert check["status"] == "warn"
    assert fallback in check["detail"]
    assert check["fix"].endswith(f"export XDG_RUNTIME_DIR=/run/user/{user.uid}")
