"""``rctr doctor``: the host checks of ``rctr.core.doctor``, one line each.

No daemon and no rctr state: it runs as a plain process of the user.
"""

from __future__ import annotations

import json

import click

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rctr.core.doctor import Check

__all__ = ["doctor", "format_checks"]


def format_checks(checks: list[Check]) -> str:
    """``STATUS NAME DETAIL`` in columns, each fix indented under its line."""
    width = max((len(c.name) for c in checks), default=0) + 2
    lines = []
    for c in checks:
        lines.append(f"{c.status:<6}{c.name:<{width}}{c.detail}")
        for i, fix in enumerate(c.fix.splitlines()):
            lines.append(" " * 6 + ("fix: " if i == 0 else "     ") + fix)
    return "\n".join(lines)


@click.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Print lines, or a JSON list of the checks")
def doctor(fmt: str) -> None:
    """Check that this host and user can run rootless containers.

    Each check prints ok, warn or fail; a warn or fail line is followed by the
    command that fixes it. Exits 1 if any check fails.
    """
    from rctr.core.doctor import FAIL, run_checks
    # The storage probe mounts for real in a throw-away user namespace; core cannot import it.
    from rctr.storage._choose import probe_driver

    checks = run_checks(probe_driver)
    if fmt == "json":
        click.echo(json.dumps([c.as_dict() for c in checks], indent=2))
    else:
        click.echo(format_checks(checks))
    if any(c.status == FAIL for c in checks):
        raise SystemExit(1)
