"""``rctr cp``: tar streams through ``/containers/{id}/archive`` (GET, PUT, HEAD).

The daemon only moves archives; the CLI decides names, as docker's does:
copying ``SRC`` onto an existing directory puts ``basename(SRC)`` inside it,
onto a missing path renames the copy's root to that path's name, and
``SRC/.`` copies a directory's contents.  ``-`` is a tar stream on stdin or
stdout, passed through untouched.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable
from typing import IO, Any, Literal

import click

from . import _complete
from ._client import APIError, Client, Response, q
from ._context import CLIError, Env

__all__ = ["cp", "rename_root", "split_arg"]

_GO_MODE_DIR = 1 << 31  # os.ModeDir in the stat header's Go FileMode


def split_arg(arg: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` → (container, path); a local path → (None, path)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    container, _, path = arg.partition(":")
    return container, path if path.startswith("/") else "/" + path


def _stat(header: str | None) -> dict[str, Any]:
    if not header:
        return {}
    try:
        stat: dict[str, Any] = json.loads(base64.b64decode(header))
        return stat
    except ValueError:
        return {}


def _is_dir(stat: dict[str, Any]) -> bool:
    return bool(int(stat.get("mode") or 0) & _GO_MODE_DIR)


def rename_root(name: str, root: str, new_root: str) -> str | None:
    """An archive member's name with its first component ``root`` replaced.

    ``new_root`` "." drops the root (copying contents); the root entry itself
    then maps to None: skip it.  A root of "." or "" means the members are the
    contents already.
    """
    norm = (name[2:] if name.startswith("./") else name).strip("/")
    norm = "" if norm == "." else norm
    root = root.strip("/")
    if root in ("", "."):
        rest = norm
    else:
        first, _, rest = norm.partition("/")
        if first != root:
            return norm or None
    if new_root == ".":
        return rest or None
    return f"{new_root}/{rest}" if rest else new_root


# Python 3.11.4 added extraction filters; older 3.11s get the same checks from _check.
_FILTER: dict[str, Literal["tar"]] = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}


def _check(name: str, dest_dir: str) -> None:
    """Refuse names that would land outside ``dest_dir`` (``..``, or through a symlink)."""
    if ".." in name.split("/"):
        raise CLIError(f"refusing to extract {name!r}: it leaves the destination")
    base = os.path.realpath(dest_dir)
    parent = os.path.realpath(os.path.join(base, os.path.dirname(name)))
    if parent != base and not parent.startswith(base + os.sep):
        raise CLIError(f"refusing to extract {name!r}: it leaves the destination")


def _extract(stream: Response, dest_dir: str, root: str, new_root: str) -> None:
    # A stream mode only reads its file object (tarfile._Stream); typeshed asks for a whole file.
    with tarfile.open(fileobj=stream, mode="r|*") as tar:  # type: ignore[call-overload]  # see above
        for member in tar:
            name = rename_root(member.name, root, new_root)
            if name is None:
                continue
            _check(name, dest_dir)
            member.name = name
            if member.islnk():
                member.linkname = rename_root(member.linkname, root, new_root) or member.linkname
            tar.extract(member, dest_dir, **_FILTER)


def copy_from(client: Client, container: str, src: str, dest: str) -> None:
    resp = client.open("GET", f"/containers/{q(container)}/archive", params={"path": src})
    with resp:
        if dest == "-":
            shutil.copyfileobj(resp, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        stat = _stat(resp.getheader("X-Docker-Container-Path-Stat"))
        root = stat.get("name") or os.path.basename(src.rstrip("/")) or "/"
        contents = src.endswith("/.")
        if os.path.isdir(dest):
            _extract(resp, dest, root, "." if contents else root)
            return
        if os.path.exists(dest) and _is_dir(stat):
            raise CLIError(f"cannot copy directory {src} onto file {dest}")
        if dest.endswith("/"):
            raise CLIError(f"destination directory {dest} must exist")
        parent = os.path.dirname(os.path.abspath(dest))
        if not os.path.isdir(parent):
            raise CLIError(f"no such directory: {parent}")
        _extract(resp, parent, root, os.path.basename(dest))


def _spool(add: Callable[[tarfile.TarFile], None]) -> IO[bytes]:
    tmp = tempfile.TemporaryFile()
    with tarfile.open(fileobj=tmp, mode="w") as tar:
        add(tar)
    tmp.seek(0)
    return tmp


def _path_stat(client: Client, archive_path: str, path: str) -> dict[str, Any] | None:
    """``HEAD /containers/{id}/archive``: the stat of ``path`` in the container, None if absent."""
    try:
        resp = client.open("HEAD", archive_path, params={"path": path})
    except APIError as exc:
        if exc.status != 404:
            raise
        return None
    resp.close()
    return _stat(resp.getheader("X-Docker-Container-Path-Stat"))


def copy_to(client: Client, src: str, container: str, dest: str, follow: bool,
            archive: bool = False) -> None:
    path = f"/containers/{q(container)}/archive"
    ids = {"copyUIDGID": True} if archive else {}
    if src == "-":
        tmp = tempfile.TemporaryFile()
        shutil.copyfileobj(sys.stdin.buffer, tmp)
        tmp.seek(0)
        with tmp:
            client.call("PUT", path, params={"path": dest, **ids}, data=tmp)
        return
    local = os.path.realpath(src) if follow else src
    if not os.path.lexists(local):
        raise CLIError(f"stat {src}: no such file or directory")
    dest_stat = _path_stat(client, path, dest)
    src_dir = os.path.isdir(local)
    if dest_stat is not None and _is_dir(dest_stat):
        target = dest
        if src.endswith("/.") and src_dir:
            def add(tar: tarfile.TarFile) -> None:
                for child in sorted(os.listdir(local)):
                    tar.add(os.path.join(local, child), arcname=child)
        else:
            def add(tar: tarfile.TarFile) -> None:
                tar.add(local, arcname=os.path.basename(os.path.normpath(src)))
    else:
        if dest_stat is not None and src_dir:
            raise CLIError(f"cannot copy directory {src} onto file {dest}")
        target = os.path.dirname(dest.rstrip("/")) or "/"

        def add(tar: tarfile.TarFile) -> None:
            tar.add(local, arcname=os.path.basename(dest.rstrip("/")))
    with _spool(add) as spooled:
        client.call("PUT", path, params={"path": target, "noOverwriteDirNonDir": True, **ids},
                    data=spooled)


@click.command()
@click.option("-a", "--archive", is_flag=True, help="Archive mode (copy all uid/gid information)")
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output")
@click.argument("src", shell_complete=_complete.cp_operand)
@click.argument("dest", shell_complete=_complete.cp_operand)
@click.pass_obj
def cp(env: Env, archive: bool, follow_link: bool, quiet: bool, src: str, dest: str) -> None:
    """Copy files/folders between a container and the local filesystem.

    \b
    rctr cp CONTAINER:SRC_PATH DEST_PATH|-
    rctr cp SRC_PATH|- CONTAINER:DEST_PATH
    """
    src_container, src_path = split_arg(src)
    dest_container, dest_path = split_arg(dest)
    if (src_container is None) == (dest_container is None):
        raise CLIError("copying between containers or between local paths is not supported:"
                       " exactly one of SRC and DEST must be CONTAINER:PATH")
    if src_container is not None:
        copy_from(env.client, src_container, src_path, dest_path)
    else:
        copy_to(env.client, src_path, str(dest_container), dest_path, follow_link, archive)
