"""Shared fixtures: capabilities, the unprivileged test user, bundles.

pytest runs as root (scripts/test.sh); rctr under test runs as the
unprivileged user that scripts/setup.sh made, through ``UserShell``.  Root is
only the harness: it makes bundles, inspects host-side ownership and cleans
up (processes, files) even when a test fails.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "support"))

import caps  # noqa: E402
import harness  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: runs rctr as an unprivileged user")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers(name="requires"):
        missing = [c for c in mark.args if not caps.has(c)]
        if not missing:
            continue
        why = "; ".join(f"{c}: {caps.why_missing(c)}" for c in missing)
        if os.environ.get("CI"):
            # In CI a missing capability is a broken machine, never a silent skip.
            pytest.fail(f"required capability missing in CI: {why}", pytrace=False)
        pytest.skip(f"missing capability: {why}")


@pytest.fixture(scope="session")
def test_image() -> str:
    """The busybox test image as an OCI layout that every test user can read."""
    import shutil
    import tempfile

    import testimage

    base = tempfile.mkdtemp(prefix="rctr-test-image-")
    os.chmod(base, 0o755)
    out = os.path.join(base, "oci")
    testimage.build_oci_layout(out)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            os.chmod(os.path.join(dirpath, name), 0o755 if name in dirnames else 0o644)
    yield out
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def user() -> harness.UserShell:
    """The unprivileged user with subordinate ids, with a fresh private state."""
    shell = harness.UserShell.create(os.environ.get("RCTR_TEST_USER", "rctr-test"))
    yield shell
    shell.cleanup()


@pytest.fixture
def nosub_user() -> harness.UserShell:
    """An unprivileged user with no /etc/subuid range."""
    shell = harness.UserShell.create(os.environ.get("RCTR_TEST_NOSUB_USER", "rctr-nosub"))
    yield shell
    shell.cleanup()


@pytest.fixture
def bundle(user: harness.UserShell, test_image: str) -> harness.Bundle:
    return harness.Bundle.make(user, test_image)


@pytest.fixture(scope="module")
def rc(test_image: str):
    """The whole pipeline as the test user, shared by a module: rctr, docker, the API."""
    from daemonenv import RctrUser

    shell = harness.UserShell.create(os.environ.get("RCTR_TEST_USER", "rctr-test"))
    try:
        user = RctrUser(shell)
        user.load_image(test_image)
        yield user
    finally:
        shell.cleanup()
