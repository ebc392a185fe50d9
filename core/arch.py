"""The host's architecture as OCI and Docker name it (Go's GOARCH): ``amd64``, ``arm64``…"""

from __future__ import annotations

import os

__all__ = ["go_arch"]

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def go_arch(machine: str | None = None) -> str:
    """``uname -m`` (or ``machine``) in Go's spelling; an unknown name as it is."""
    machine = machine or os.uname().machine
    return _GOARCH.get(machine, machine)
