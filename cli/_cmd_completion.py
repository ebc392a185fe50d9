"""``rctr completion bash|zsh|fish``: the script a shell loads for rctr's completions.

The scripts are click's own (``_RCTR_COMPLETE=bash_source rctr`` prints the same
one): on every TAB the shell calls ``rctr`` back with ``_RCTR_COMPLETE=<shell>_complete``
and the words so far, and click answers from the command table, the options, and
the names that ``_complete`` asks the daemon for.
"""

from __future__ import annotations

import click

__all__ = ["COMPLETE_VAR", "SHELLS", "completion"]

SHELLS = ("bash", "zsh", "fish")
PROG_NAME = "rctr"
# What click derives from the program name (Command._main_shell_completion).
COMPLETE_VAR = "_RCTR_COMPLETE"


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL, to be loaded by the shell.

    \b
    bash:  eval "$(rctr completion bash)"    in ~/.bashrc (bash 4.4 or later)
    zsh:   source <(rctr completion zsh)     in ~/.zshrc, after compinit
    fish:  rctr completion fish | source     in ~/.config/fish/config.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # click registers all three
    click.echo(cls(ctx.find_root().command, {}, PROG_NAME, COMPLETE_VAR).source(), nl=False)
