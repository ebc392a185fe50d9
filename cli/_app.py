"""The click application: one group, subcommands loaded on first use.

``rctr --help`` must stay fast, so the command table below carries each
command's one-line help and the module that defines it; a module is imported
only when its command runs (or its own ``--help`` is asked for).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

__all__ = ["LazyGroup", "app"]

# name -> (module under rctr.cli, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("_cmd_run", "run", "Create and run a new container from an image"),
    "create": ("_cmd_run", "create", "Create a new container"),
    "start": ("_cmd_lifecycle", "start", "Start one or more stopped containers"),
    "stop": ("_cmd_lifecycle", "stop", "Stop one or more running containers"),
    "restart": ("_cmd_lifecycle", "restart", "Restart one or more containers"),
    "kill": ("_cmd_lifecycle", "kill", "Kill one or more running containers"),
    "rm": ("_cmd_lifecycle", "rm", "Remove one or more containers"),
    "wait": ("_cmd_lifecycle", "wait", "Block until containers stop, then print their exit codes"),
    "rename": ("_cmd_lifecycle", "rename", "Rename a container"),
    "update": ("_cmd_lifecycle", "update", "Update configuration of one or more containers"),
    "exec": ("_cmd_exec", "exec_", "Execute a command in a running container"),
    "attach": ("_cmd_exec", "attach", "Attach local standard input, output and error"),
    "ps": ("_cmd_query", "ps", "List containers"),
    "inspect": ("_cmd_query", "inspect", "Return low-level information on rctr objects"),
    "logs": ("_cmd_query", "logs", "Fetch the logs of a container"),
    "top": ("_cmd_query", "top", "Display the running processes of a container"),
    "port": ("_cmd_query", "port", "List port mappings of a container"),
    "stats": ("_cmd_stats", "stats", "Display a live stream of container resource usage"),
    "cp": ("_cmd_cp", "cp", "Copy files between a container and the local filesystem"),
    "commit": ("_cmd_commit", "commit", "Create a new image from a container's changes"),
    "container": ("_cmd_container", "container", "Manage containers"),
    "images": ("_cmd_image", "images", "List images"),
    "image": ("_cmd_image", "image", "Manage images"),
    "pull": ("_cmd_image", "pull", "Download an image from a registry"),
    "push": ("_cmd_image", "push", "Upload an image to a registry"),
    "rmi": ("_cmd_image", "rmi", "Remove one or more images"),
    "tag": ("_cmd_image", "tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    "load": ("_cmd_image", "load", "Load an image from a tar archive or STDIN"),
    "save": ("_cmd_image", "save", "Save one or more images to a tar archive"),
    "import": ("_cmd_image", "import_", "Import a tarball's contents as a filesystem image"),
    "volume": ("_cmd_volume", "volume", "Manage volumes"),
    "network": ("_cmd_network", "network", "Manage networks"),
    "info": ("_cmd_system", "info", "Display system-wide information"),
    "version": ("_cmd_system", "version", "Show the rctr version information"),
    "events": ("_cmd_system", "events", "Get real time events from the daemon"),
    "system": ("_cmd_system", "system", "Manage rctr (prune, df, reset, service)"),
    "login": ("_cmd_auth", "login", "Log in to a registry"),
    "logout": ("_cmd_auth", "logout", "Log out from a registry"),
    "unshare": ("_cmd_system", "unshare", "Run a command in rctr's user namespace"),
    "doctor": ("_cmd_doctor", "doctor", "Check that this host and user can run rootless containers"),
    "completion": ("_cmd_completion", "completion", "Print a shell completion script (bash, zsh, fish)"),
}


class LazyGroup(click.Group):
    """A group whose subcommands live in a table of (module, attribute, help)."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str, str]], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in self.lazy:
            return None
        from importlib import import_module

        module, attr, _ = self.lazy[cmd_name]
        command: click.Command = getattr(import_module(f"rctr.cli.{module}"), attr)
        return command

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """Command names from the table, without importing their modules (click's own
        would load every command for its help text)."""
        from click.shell_completion import CompletionItem

        rows = [(name, entry[2]) for name, entry in self.lazy.items()]
        rows += [(name, cmd.get_short_help_str()) for name, cmd in self.commands.items()
                 if not cmd.hidden]
        items = [CompletionItem(name, help=help_) for name, help_ in sorted(rows)
                 if name.startswith(incomplete)]
        return items + click.Command.shell_complete(self, ctx, incomplete)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands from the table, without importing their modules."""
        rows = [(name, self.lazy[name][2]) for name in sorted(self.lazy)]
        rows += [(name, cmd.get_short_help_str(80)) for name, cmd in sorted(self.commands.items())
                 if not cmd.hidden]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


class RootGroup(LazyGroup):
    """Maps every failure to one line on stderr and docker's exit codes."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> NoReturn:
        from ._errors import run_guarded

        sys.exit(run_guarded(lambda: super(RootGroup, self).main(
            args, prog_name, complete_var, standalone_mode=False, **extra)))


@click.group(cls=RootGroup, lazy=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-H", "--host", metavar="URL",
              help="Daemon socket to connect to (unix:///path); default: the per-user rctrd,"
                   " started on demand. Env: RCTR_HOST.")
@click.version_option(package_name="rctr", prog_name="rctr")
@click.pass_context
def app(ctx: click.Context, host: str | None) -> None:
    """rctr: run OCI containers as an ordinary user, with no root."""
    from ._context import Env

    ctx.obj = Env.from_options(host)


@app.command(
    "runtime",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                      "help_option_names": []},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def runtime(args: tuple[str, ...]) -> None:
    """The OCI runtime with runc's command line (create, start, state, kill, delete, run, exec, list, spec)."""
    from rctr.rootless.cli import main as runtime_main

    raise SystemExit(runtime_main(list(args)))
