"""Image references as docker's CLI splits them before it calls the API.

``POST /images/create`` pulls *every* tag when ``tag`` is empty, so the CLI
always splits the reference and sends ``tag`` (``latest`` by default, or the
digest).  The registry host picks the credentials for ``X-Registry-Auth``.
"""

from __future__ import annotations

__all__ = ["DEFAULT_REGISTRY", "normalize", "registry_of", "split"]

DEFAULT_REGISTRY = "docker.io"


def split(ref: str) -> tuple[str, str, str]:
    """``host:5000/a/b:tag@sha256:…`` → (``host:5000/a/b``, ``tag``, ``sha256:…``)."""
    name, _, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest


def registry_of(repo: str) -> str:
    """The registry host of a repository name; docker.io when it names none."""
    first, sep, _ = repo.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return DEFAULT_REGISTRY


def normalize(ref: str) -> str:
    """The fully qualified form docker prints: ``docker.io/library/busybox:latest``."""
    repo, tag, digest = split(ref)
    if registry_of(repo) == DEFAULT_REGISTRY and not repo.startswith(DEFAULT_REGISTRY + "/"):
        repo = f"{DEFAULT_REGISTRY}/{repo if '/' in repo else 'library/' + repo}"
    if digest:
        return f"{repo}@{digest}" if not tag else f"{repo}:{tag}@{digest}"
    return f"{repo}:{tag or 'latest'}"
