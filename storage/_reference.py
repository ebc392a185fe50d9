"""Image references, normalised the way Docker does it.

``busybox`` is ``docker.io/library/busybox:latest``; a first component with a
dot, a colon or ``localhost`` names a registry; ``@sha256:...`` pins a digest.
"""

from __future__ import annotations

import re

from rctr.core.errors import InvalidArgument

__all__ = ["Reference", "familiar", "parse_reference"]

DEFAULT_REGISTRY = "docker.io"
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


class Reference:
    __slots__ = ("registry", "repository", "tag", "digest")

    def __init__(self, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
        self.registry, self.repository, self.tag, self.digest = registry, repository, tag, digest

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag}"


def parse_reference(text: str) -> Reference:
    original = text
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not re.match(r"^sha256:[0-9a-f]{64}$", digest):
            raise InvalidArgument(f"invalid reference {original!r}: bad digest")
    tag = None
    last = text.rsplit("/", 1)[-1]
    if ":" in last:
        text, tag = text.rsplit(":", 1)
        if not _TAG.match(tag):
            raise InvalidArgument(f"invalid reference {original!r}: bad tag {tag!r}")
    parts = text.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry, path = parts[0], parts[1:]
    else:
        registry, path = DEFAULT_REGISTRY, parts
    if registry == DEFAULT_REGISTRY and len(path) == 1:
        path = ["library", *path]
    if not path or not all(_COMPONENT.match(p) for p in path):
        raise InvalidArgument(
            f"invalid reference {original!r}: repository names are lowercase letters, "
            "digits and separators")
    return Reference(registry, "/".join(path), tag or (None if digest else "latest"), digest)


def familiar(name: str) -> str:
    """``docker.io/library/busybox:latest`` → ``busybox:latest``, as Docker shows and saves it."""
    for prefix in (f"{DEFAULT_REGISTRY}/library/", f"{DEFAULT_REGISTRY}/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name
