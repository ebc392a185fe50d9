"""The click application: one group, subcommands loaded on first use."""

from __future__ import annotations

import click

__all__ = ["app"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rctr", prog_name="rctr")
def app() -> None:
    """rctr: run OCI containers as an ordinary user, with no root."""


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
