"""The tree stays clean under the project's ruff rules (pyproject.toml)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff", path=os.path.dirname(sys.executable)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is missing: scripts/setup.sh installs it with rctr[test]")
    r = subprocess.run([ruff, "check", "--no-cache", str(REPO)], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


# Every top-level folder that installs as rctr.<folder>: pyproject.toml's list, so a new
# package is checked from the day it is added there.
PACKAGES = tuple(tomllib.loads((REPO / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["package-dir"].values())
_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[^\]]*\])?(?P<rest>.*)$")


def test_mypy_strict_passes(tmp_path: Path) -> None:
    """mypy, strict, over the installed layout: each top-level folder as ``rctr.<folder>``."""
    mypy = shutil.which("mypy", path=os.path.dirname(sys.executable)) or shutil.which("mypy")
    if mypy is None:
        pytest.fail("mypy is missing: scripts/setup.sh installs it with rctr[test]")
    tree = tmp_path / "rctr"
    tree.mkdir()
    for package in PACKAGES:
        (tree / package).symlink_to(REPO / package)
    r = subprocess.run([mypy, "--config-file", str(REPO / "pyproject.toml"),
                        "--cache-dir", str(tmp_path / "cache"), "-p", "rctr"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_type_ignores_say_why() -> None:
    """Every ``type: ignore`` names its error code and gives a reason."""
    bare = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                m = _IGNORE.search(line)
                if m and (not m.group("codes") or not m.group("rest").strip().lstrip("#").strip()):
                    bare.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not bare, ("each type: ignore needs [code] and '# why' after it:\n" + "\n".join(bare))
