"""Plugins: a dockerd with no managed plugins (rctr has none: no plugin store, no v2 plugins)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rctr.core.errors import NotFound

from ._http import Request

if TYPE_CHECKING:
    from ._main import Daemon

__all__ = ["plugin_list", "plugin_inspect"]


def plugin_list(daemon: Daemon, req: Request) -> None:
    req.send_json([])


def plugin_inspect(daemon: Daemon, req: Request) -> None:
    raise NotFound(f'plugin "{req.params["name"]}" not found')
