"""Names for shell completion: containers, images, volumes and networks, from the daemon.

Each function here is a click ``shell_complete=`` callback.  A completion runs on
every TAB in the middle of a command line, so it asks the daemon only if one
already answers on the socket (``Env.client`` would start one: never here), with
a short timeout, and on any failure offers nothing and prints nothing.  The
command modules import this one for the callbacks' names at their start, so it
imports nothing itself until a completion is asked for.
"""

from __future__ import annotations

# For the type checker only (start-up imports: see _run_fastpath).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    import click
    from click.shell_completion import CompletionItem

__all__ = [
    "containers",
    "cp_operand",
    "images",
    "inspect_names",
    "networks",
    "running_containers",
    "stopped_containers",
    "volumes",
]

# Seconds for each request: a daemon slower than this is not worth a stalled TAB.
TIMEOUT = 1.0


def _quiet(find: Callable[[click.Context, str], list[CompletionItem]],
           ) -> Callable[[click.Context, click.Parameter, str], list[CompletionItem]]:
    """A callback that offers nothing rather than fail: a traceback would land in the shell's line."""
    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        try:
            return find(ctx, incomplete)
        except Exception:
            return []
    return complete


def _get(ctx: click.Context, path: str, params: Mapping[str, object] | None = None) -> Any:
    """``GET path`` from the daemon that ``-H``/``RCTR_HOST`` or the default names; never started."""
    from ._client import Client
    from ._context import Env

    env = Env.from_options(ctx.find_root().params.get("host"))
    return Client(env.socket_path).get(path, params=params, timeout=TIMEOUT)


def _item(value: str, help: str | None = None) -> CompletionItem:
    from click.shell_completion import CompletionItem

    return CompletionItem(value, help=help or None)


def _containers(ctx: click.Context, incomplete: str, running: bool | None) -> list[CompletionItem]:
    """Names that start with ``incomplete``; if none does, short ids that do."""
    found = [c for c in _get(ctx, "/containers/json", {"all": True}) or []
             if running is None or (c.get("State") == "running") == running]
    names = [_item(name.lstrip("/"), c.get("Image")) for c in found for name in c.get("Names") or []
             if name.lstrip("/").startswith(incomplete) and "/" not in name.lstrip("/")]
    if names or not incomplete:
        return names
    return [_item(c["Id"][:12], c.get("Image")) for c in found
            if c.get("Id", "").startswith(incomplete)]


@_quiet
def containers(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    return _containers(ctx, incomplete, None)


@_quiet
def running_containers(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    return _containers(ctx, incomplete, True)


@_quiet
def stopped_containers(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    return _containers(ctx, incomplete, False)


def _images(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    """``repo:tag`` references (untagged images have none to offer)."""
    tags = {tag for img in _get(ctx, "/images/json") or [] for tag in img.get("RepoTags") or []}
    return [_item(tag) for tag in sorted(tags)
            if tag.startswith(incomplete) and not tag.startswith("<none>")]


def _volumes(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    found = (_get(ctx, "/volumes") or {}).get("Volumes") or []
    return [_item(v["Name"], v.get("Driver")) for v in found if v["Name"].startswith(incomplete)]


def _networks(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    found = _get(ctx, "/networks") or []
    return [_item(n["Name"], n.get("Driver")) for n in found if n["Name"].startswith(incomplete)]


images = _quiet(_images)
volumes = _quiet(_volumes)
networks = _quiet(_networks)

_BY_KIND = {"container": containers, "image": images, "volume": volumes, "network": networks}


def inspect_names(ctx: click.Context, param: click.Parameter,
                  incomplete: str) -> list[CompletionItem]:
    """``rctr inspect``: the objects of ``--type``; without it containers and images, as docker's."""
    kind = ctx.params.get("kind")
    kinds = [kind] if kind in _BY_KIND else ["container", "image"]
    return [item for k in kinds for item in _BY_KIND[k](ctx, param, incomplete)]


@_quiet
def cp_operand(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    """``CONTAINER:`` for a word that could start one, else the shell's own file names."""
    from click.shell_completion import CompletionItem

    if ":" in incomplete:
        return []  # a path inside the container: nothing here can list it
    local = [CompletionItem(incomplete, type="file")]
    if incomplete.startswith(("/", ".", "~")):
        return local
    named = [_item(f"{i.value}:", i.help) for i in _containers(ctx, incomplete, None)]
    return named or local
