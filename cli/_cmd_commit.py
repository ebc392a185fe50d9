"""``rctr commit``: a new image from a container's changes (``POST /commit``)."""

from __future__ import annotations

import click

from . import _complete
from ._context import CLIError, Env
from ._refs import split

__all__ = ["commit"]


@click.command()
@click.option("-a", "--author", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
@click.option("-c", "--change", multiple=True,
              help="Apply Dockerfile instruction to the created image")
@click.option("-m", "--message", help="Commit message")
@click.option("-p", "--pause/--no-pause", default=True,
              help="Pause container during commit (accepted; rctr copies it as it is)")
@click.argument("container", shell_complete=_complete.containers)
@click.argument("reference", required=False)
@click.pass_obj
def commit(env: Env, author: str | None, change: tuple[str, ...], message: str | None,
           pause: bool, container: str, reference: str | None) -> None:
    """Create a new image from a container's changes."""
    repo, tag, digest = split(reference) if reference else ("", "", "")
    if digest:
        raise CLIError(f"refusing to create a tag with a digest reference: {reference}")
    result = env.client.post("/commit", params={
        "container": container, "repo": repo or None, "tag": tag or None,
        "author": author, "comment": message, "changes": list(change) or None,
        "pause": pause})
    print(result["Id"])
