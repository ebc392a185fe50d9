"""Atomic file writes and deletes (write, fsync, rename, fsync the directory).

A crash at any point leaves either the old or the new content, never a torn
file.  Deletion renames to a dot-name first so loaders, which skip dot-entries,
never see a half-deleted directory.
"""

from __future__ import annotations

import os

__all__ = ["write_atomic", "write_json_atomic", "remove_tree", "fsync_dir"]


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes, mode: int = 0o644, *, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` so that readers see old or new, never a mix."""
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)
    if sync:
        fsync_dir(directory)


def write_json_atomic(path: str, obj: object, mode: int = 0o644, *, sync: bool = True) -> None:
    import json

    write_atomic(path, json.dumps(obj, separators=(",", ":")).encode(), mode, sync=sync)


def remove_tree(path: str) -> None:
    """Remove a directory tree, renaming it to a dot-name first.

    After the rename the tree is invisible to loaders; if we crash during the
    removal, the dot-named leftover is garbage that the next start collects.
    """
    parent, name = os.path.split(path.rstrip("/"))
    doomed = os.path.join(parent, f".deleting-{name}-{os.getpid()}")
    try:
        os.rename(path, doomed)
    except FileNotFoundError:
        return
    # Flat directories (the runtime's state) are the common case; shutil costs
    # an import on the start-up path of every container.
    try:
        with os.scandir(doomed) as entries:
            for entry in entries:
                os.unlink(entry.path)
        os.rmdir(doomed)
    except OSError:
        import shutil

        shutil.rmtree(doomed, ignore_errors=True)
