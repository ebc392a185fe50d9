"""Image verbs: pull, push, images, rmi, tag, load, save, import, and ``image …``.

Archives go up with a length (spooled from stdin when needed) and come down
as a raw stream; progress comes back as Docker's JSON messages (``_progress``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import IO, Any, TextIO

import click

from . import _complete
from ._auth import auth_header
from ._client import APIError, Response, qi
from ._context import CLIError, Env, confirm
from ._errors import EXIT_ERROR, report
from ._format import render_rows
from ._progress import show_stream
from ._refs import normalize, registry_of, split
from ._units import human_size, since

__all__ = ["image", "image_rows", "images", "import_", "load", "pull", "push", "rmi", "save",
           "tag"]

IMAGES_HEADERS = {"ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT"}


@click.command()
@click.option("--platform", help="Set platform if server is multi-platform capable")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.option("-a", "--all-tags", is_flag=True, hidden=True)
@click.argument("name")
@click.pass_obj
def pull(env: Env, platform: str | None, quiet: bool, all_tags: bool, name: str) -> None:
    """Download an image from a registry."""
    from ._ops import pull_image

    if all_tags:
        raise CLIError("--all-tags is not supported")
    pull_image(env.client, name, platform=platform, quiet=quiet)
    print(normalize(name))


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@click.argument("name", shell_complete=_complete.images)
@click.pass_obj
def push(env: Env, quiet: bool, name: str) -> None:
    """Upload an image to a registry."""
    repo, tag, digest = split(name)
    headers = {"X-Registry-Auth": auth_header(registry_of(repo))}
    stream = env.client.stream("POST", f"/images/{qi(repo)}/push",
                               params={"tag": digest or tag or None}, headers=headers)
    show_stream(stream, quiet=quiet)
    if quiet:
        print(name)


def image_rows(found: list[dict[str, Any]], trunc: bool = True,
               now: float | None = None) -> list[dict[str, str]]:
    """``GET /images/json`` as docker's images formatter sees it: one row per tag."""
    rows = []
    for img in found:
        iid = str(img.get("Id") or "")
        short = iid.removeprefix("sha256:")[:12] if trunc else iid
        created = img.get("Created") or 0
        base = {"ID": short, "CreatedSince": since(created, now),
                "CreatedAt": _local_time(created), "Size": human_size(img.get("Size") or 0, 3),
                "Containers": str(img.get("Containers", "N/A"))}
        digests = {split(d)[0]: d.partition("@")[2] for d in img.get("RepoDigests") or []}
        tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
        for ref in tags:
            repo, tag, _ = split(ref)
            rows.append(dict(base, Repository=repo, Tag=tag or "<none>",
                             Digest=digests.get(repo) or "<none>"))
        if not tags:
            for repo, digest in (digests.items() or [("<none>", "<none>")]):
                rows.append(dict(base, Repository=repo, Tag="<none>", Digest=digest))
    return rows


def _local_time(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(ts))


@click.command()
@click.option("-a", "--all", "all_", is_flag=True,
              help="Show all images (default hides intermediate)")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@click.option("--digests", is_flag=True, help="Show digests")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("-f", "--filter", "filter_", multiple=True, help="Filter output (key=value)")
@click.option("--format", "fmt", help="Format output using a Go template, or json")
@click.argument("reference", required=False, shell_complete=_complete.images)
@click.pass_obj
def images(env: Env, all_: bool, quiet: bool, digests: bool, no_trunc: bool,
           filter_: tuple[str, ...], fmt: str | None, reference: str | None) -> None:
    """List images."""
    from ._cmd_query import filters

    wanted = filters(filter_ + ((f"reference={reference}",) if reference else ()))
    found = env.client.get("/images/json", params={"all": all_ or None, "filters": wanted}) or []
    rows = image_rows(found, trunc=not no_trunc)
    if quiet:
        for iid in dict.fromkeys(r["ID"] for r in rows):
            print(iid)
        return
    fmt = fmt or ("table {{.Repository}}\t{{.Tag}}\t" + ("{{.Digest}}\t" if digests else "")
                  + "{{.ID}}\t{{.CreatedSince}}\t{{.Size}}")
    text = render_rows(fmt, rows, IMAGES_HEADERS)
    if text:
        print(text)


@click.command()
@click.option("-f", "--force", is_flag=True, help="Force removal of the image")
@click.option("--no-prune", is_flag=True, help="Do not delete untagged parents")
@click.argument("names", nargs=-1, required=True, shell_complete=_complete.images)
@click.pass_obj
def rmi(env: Env, force: bool, no_prune: bool, names: tuple[str, ...]) -> None:
    """Remove one or more images."""
    failed = False
    for name in names:
        try:
            result = env.client.delete(f"/images/{qi(name)}",
                                       params={"force": force or None, "noprune": no_prune or None})
        except APIError as exc:
            report(exc)
            failed = True
            continue
        for item in result or []:
            for key in ("Untagged", "Deleted"):
                if item.get(key):
                    print(f"{key}: {item[key]}")
    if failed:
        sys.exit(EXIT_ERROR)


@click.command()
@click.argument("source", shell_complete=_complete.images)
@click.argument("target", shell_complete=_complete.images)
@click.pass_obj
def tag(env: Env, source: str, target: str) -> None:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE."""
    repo, tag_, digest = split(target)
    if digest:
        raise CLIError(f"refusing to create a tag with a digest reference: {target}")
    env.client.post(f"/images/{qi(source)}/tag", params={"repo": repo, "tag": tag_ or "latest"})


def _spool_stdin() -> IO[bytes]:
    tmp = tempfile.TemporaryFile()
    shutil.copyfileobj(sys.stdin.buffer, tmp)
    tmp.seek(0)
    return tmp


def _open_input(path: str | None) -> IO[bytes]:
    if path and path != "-":
        try:
            return open(path, "rb")
        except OSError as exc:
            raise CLIError(f"open {path}: {exc.strerror}") from None
    if sys.stdin.isatty():
        raise CLIError("requested load from stdin, but stdin is empty")
    return _spool_stdin()


@click.command()
@click.option("-i", "--input", "input_", help="Read from tar archive file, instead of STDIN")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output")
@click.pass_obj
def load(env: Env, input_: str | None, quiet: bool) -> None:
    """Load an image from a tar archive or STDIN."""
    with _open_input(input_) as body:
        resp = env.client.open("POST", "/images/load", params={"quiet": quiet}, data=body)
    with resp:
        if "json" in (resp.getheader("Content-Type") or ""):
            from ._client import iter_json

            show_stream(iter_json(resp.read1), quiet=False)
        else:
            sys.stdout.write(resp.read().decode("utf-8", "replace"))


def _copy_showing_progress(source: Response | IO[bytes], target: IO[bytes],
                           terminal: TextIO | None) -> None:
    """Copy ``source`` to ``target``; on a ``terminal``, a byte count redrawn in place."""
    from ._units import human_size

    done = 0
    while block := source.read(1 << 20):
        target.write(block)
        done += len(block)
        if terminal is not None:
            terminal.write(f"\rSaving: {human_size(done)}\x1b[K")
            terminal.flush()
    if terminal is not None:
        terminal.write(f"\rSaved: {human_size(done)}\x1b[K\n")


@click.command()
@click.option("-o", "--output", help="Write to a file, instead of STDOUT")
@click.argument("names", nargs=-1, required=True, shell_complete=_complete.images)
@click.pass_obj
def save(env: Env, output: str | None, names: tuple[str, ...]) -> None:
    """Save one or more images to a tar archive (streamed to STDOUT by default)."""
    if not output and sys.stdout.isatty():
        raise CLIError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    resp = env.client.open("GET", "/images/get", params={"names": list(names)})
    with resp:
        if not output:
            shutil.copyfileobj(resp, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        tmp = f"{output}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                _copy_showing_progress(resp, f, sys.stderr if sys.stderr.isatty() else None)
            os.rename(tmp, output)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


@click.command("import")
@click.option("-c", "--change", multiple=True, help="Apply Dockerfile instruction to the image")
@click.option("-m", "--message", help="Set commit message for imported image")
@click.option("--platform", help="Set platform if server is multi-platform capable")
@click.argument("source")
@click.argument("reference", required=False)
@click.pass_obj
def import_(env: Env, change: tuple[str, ...], message: str | None, platform: str | None,
            source: str, reference: str | None) -> None:
    """Import the contents from a tarball (file, URL or -) to create a filesystem image."""
    repo, tag_, _ = split(reference) if reference else ("", "", "")
    params: dict[str, object] = {"repo": repo or None, "tag": tag_ or None, "message": message,
                              "changes": list(change) or None, "platform": platform}
    if source.startswith(("http://", "https://")):
        result = show_stream(env.client.stream("POST", "/images/create",
                                               params=dict(params, fromSrc=source)), quiet=True)
    else:
        with _open_input(source) as body:
            result = show_stream(env.client.stream("POST", "/images/create",
                                                   params=dict(params, fromSrc="-"), data=body),
                                 quiet=True)
    if result.statuses:
        print(result.statuses[-1])


@click.command("prune")
@click.option("-a", "--all", "all_", is_flag=True,
              help="Remove all unused images, not just dangling")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filter_", multiple=True,
              help="Provide filter values (until=…, label=…)")
@click.pass_obj
def image_prune(env: Env, all_: bool, force: bool, filter_: tuple[str, ...]) -> None:
    """Remove unused images."""
    from ._cmd_query import filters

    warning = ("WARNING! This will remove all images without at least one container associated"
               " to them." if all_ else "WARNING! This will remove all dangling images.")
    if not force and not confirm(warning):
        return
    wanted = dict(filters(filter_) or {}, dangling=["false" if all_ else "true"])
    result = env.client.post("/images/prune", params={"filters": wanted}) or {}
    deleted = result.get("ImagesDeleted") or []
    if deleted:
        print("Deleted Images:")
        for item in deleted:
            for key in ("Untagged", "Deleted"):
                if item.get(key):
                    print(f"{key.lower()}: {item[key]}")
        print()
    print(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed') or 0)}")


@click.command("inspect")
@click.option("-f", "--format", "fmt", help="Format output using a Go template")
@click.argument("names", nargs=-1, required=True, shell_complete=_complete.images)
@click.pass_obj
def image_inspect(env: Env, fmt: str | None, names: tuple[str, ...]) -> None:
    """Display detailed information on one or more images."""
    from ._cmd_query import inspect_objects

    inspect_objects(env, names, fmt, "image")


@click.group()
def image() -> None:
    """Manage images."""


for _name, _cmd in (("ls", images), ("list", images), ("rm", rmi), ("remove", rmi),
                    ("prune", image_prune), ("inspect", image_inspect), ("tag", tag),
                    ("pull", pull), ("push", push), ("load", load), ("save", save),
                    ("import", import_)):
    image.add_command(_cmd, _name)
