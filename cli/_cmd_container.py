"""``rctr container …``: docker's management-command names for the container verbs."""

from __future__ import annotations

import click

from ._app import LazyGroup

__all__ = ["container"]

_VERBS = {
    "run": ("_cmd_run", "run"), "create": ("_cmd_run", "create"),
    "start": ("_cmd_lifecycle", "start"), "stop": ("_cmd_lifecycle", "stop"),
    "restart": ("_cmd_lifecycle", "restart"), "kill": ("_cmd_lifecycle", "kill"),
    "rm": ("_cmd_lifecycle", "rm"), "wait": ("_cmd_lifecycle", "wait"),
    "rename": ("_cmd_lifecycle", "rename"), "update": ("_cmd_lifecycle", "update"),
    "exec": ("_cmd_exec", "exec_"),
    "attach": ("_cmd_exec", "attach"), "ls": ("_cmd_query", "ps"),
    "inspect": ("_cmd_query", "inspect"), "logs": ("_cmd_query", "logs"),
    "top": ("_cmd_query", "top"), "port": ("_cmd_query", "port"),
    "stats": ("_cmd_stats", "stats"), "cp": ("_cmd_cp", "cp"),
    "commit": ("_cmd_commit", "commit"),
    "prune": ("_cmd_system", "container_prune"),
}


def _table() -> dict[str, tuple[str, str, str]]:
    from ._app import COMMANDS

    helps = {f"{m}:{a}": h for m, a, h in COMMANDS.values()}
    table = {name: (m, a, helps.get(f"{m}:{a}", "")) for name, (m, a) in _VERBS.items()}
    table["ls"] = ("_cmd_query", "ps", "List containers")
    table["prune"] = ("_cmd_system", "container_prune", "Remove all stopped containers")
    return table


@click.group(cls=LazyGroup, lazy=_table())
def container() -> None:
    """Manage containers."""
