"""``rctr run`` and ``rctr create`` as click commands, built from ``_run_flags``'s table.

Argument lists that ``_run_fastpath`` can parse never reach these; they serve
``--help``, the error messages, and everything the fast path leaves to click.
What the verbs do is in ``_run_flow``, shared with the fast path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from . import _complete
from ._context import Env
from ._run_flags import CREATE_FLAGS, FLAG, INT, MULTI, RUN_FLAGS, SWITCH, Flag
from ._run_flow import create_container_only, run_container

__all__ = ["create", "create_options", "run"]


def _option(f: Flag) -> Callable[[Any], Any]:
    if f.kind == FLAG:
        return click.option(*f.names, f.dest, is_flag=True, help=f.help)
    if f.kind == SWITCH:
        return click.option("/".join(f.names), f.dest, default=f.default, help=f.help)
    if f.kind == MULTI:
        return click.option(*f.names, f.dest, multiple=True, metavar="LIST", help=f.help)
    extra: dict[str, Any] = {"type": int} if f.kind == INT else {}
    if f.default is not None:
        extra.update(default=f.default, show_default=True)
    return click.option(*f.names, f.dest, help=f.help, **extra)


def _options(flags: tuple[Flag, ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        func = click.argument("command", nargs=-1, type=click.UNPROCESSED)(func)
        func = click.argument("image", shell_complete=_complete.images)(func)
        for f in reversed(flags):
            func = _option(f)(func)
        return func
    return decorate


create_options = _options(CREATE_FLAGS)

# Flags after the image belong to the container's command, as with docker.
_SETTINGS = {"allow_interspersed_args": False, "help_option_names": ["--help"]}


@click.command(context_settings=_SETTINGS)
@_options(RUN_FLAGS)
@click.pass_obj
def run(obj: Env, /, detach: bool, detach_keys: str | None, sig_proxy: bool, **opts: Any) -> None:
    """Create and run a new container from an image."""
    run_container(obj, detach, detach_keys, sig_proxy, opts)


@click.command(context_settings=_SETTINGS)
@create_options
@click.pass_obj
def create(obj: Env, /, **opts: Any) -> None:
    """Create a new container (and print its id)."""
    create_container_only(obj, opts)
