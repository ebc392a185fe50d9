"""``rctr run`` and ``rctr create`` without importing click.

click and what it pulls in (re, inspect, uuid, enum, typing) cost about 15 ms of
imports on every command, a fifth of ``rctr run --rm IMG true``.  These two
verbs start every container, so an argument list made only of the flags in
``_run_flags``'s table is parsed here, into the same dict click would pass, and
handed to the same implementation.  Anything else (a global option before the
verb, an unknown or malformed flag, ``--help``, a number that does not parse, no
image) returns None and goes to click, which owns help and error messages.
tests/unit/test_cli_run_fastpath.py compares this parser's results with click's.

The modules this path imports keep off other costly imports too, measured
with ``python -X importtime``: no ``dataclasses`` (it imports ``inspect``,
6 ms), no ``urllib.parse`` (2 ms; ``_client`` quotes by itself), ``typing``
only for the type checker (3 ms), ``datetime`` and ``csv`` only where used.
"""

from __future__ import annotations


from ._run_flags import CREATE_FLAGS, FLAG, INT, MULTI, RUN_FLAGS, SWITCH, VALUE, Flag, defaults

# For the type checker only (start-up imports: see above).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["main", "parse"]

_TABLES = {"run": RUN_FLAGS, "create": CREATE_FLAGS}


def _index(flags: tuple[Flag, ...]) -> dict[str, tuple[Flag, bool]]:
    """Every spelling -> (flag, the value a bare switch spelling gives)."""
    out: dict[str, tuple[Flag, bool]] = {}
    for f in flags:
        if f.kind == SWITCH:
            on, off = f.names
            out[on], out[off] = (f, True), (f, False)
        else:
            for name in f.names:
                out[name] = (f, True)
    return out


def parse(verb: str, args: list[str]) -> dict[str, Any] | None:
    """click's keyword arguments for ``rctr VERB ARGS``, or None to let click decide."""
    flags = _TABLES.get(verb)
    if flags is None:
        return None
    index = _index(flags)
    opts = defaults(flags)
    i: int | None = 0
    while i is not None and i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        read = _long_option if arg.startswith("--") else _short_options
        i = read(index, opts, args, i + 1)
    if i is None or i >= len(args):
        return None  # click's error, or no image: click says so
    opts["image"] = args[i]
    opts["command"] = tuple(args[i + 1:])
    return opts


def _long_option(index: dict[str, tuple[Flag, bool]], opts: dict[str, Any], args: list[str],
                 i: int) -> int | None:
    """``--name X``, ``--name=X`` or ``--rm`` at ``args[i - 1]`` into ``opts``: the index of
    the next argument, or None to let click decide."""
    name, eq, attached = args[i - 1].partition("=")
    found = index.get(name)
    if found is None:
        return None
    f, switch_value = found
    if f.kind in (FLAG, SWITCH):
        if eq:
            return None  # click's error
        opts[f.dest] = switch_value
        return i
    if not eq:
        if i >= len(args):
            return None
        attached = args[i]
        i += 1
    return i if _store(opts, f, attached) else None


def _short_options(index: dict[str, tuple[Flag, bool]], opts: dict[str, Any], args: list[str],
                   i: int) -> int | None:
    """A cluster of short options at ``args[i - 1]`` (-it, -dit, -e FOO=1, -eFOO=1, -itv /a:/b)
    into ``opts``: the index of the next argument, or None to let click decide."""
    arg = args[i - 1]
    j = 1
    while j < len(arg):
        found = index.get("-" + arg[j])
        if found is None:
            return None
        f, switch_value = found
        j += 1
        if f.kind in (FLAG, SWITCH):
            opts[f.dest] = switch_value
            continue
        value = arg[j:]  # the rest of the cluster is the value, else the next argument
        if not value:
            if i >= len(args):
                return None
            value = args[i]
            i += 1
        return i if _store(opts, f, value) else None
    return i


def _store(opts: dict[str, Any], f: Flag, value: str) -> bool:
    if f.kind == MULTI:
        opts[f.dest] = (*opts[f.dest], value)
    elif f.kind == INT:
        try:
            opts[f.dest] = int(value)
        except ValueError:
            return False
    else:
        assert f.kind == VALUE
        opts[f.dest] = value
    return True


def main(args: list[str]) -> int | None:
    """Run ``rctr ARGS`` here if it is a plain run or create; None: not handled."""
    if not args:
        return None
    opts = parse(args[0], args[1:])
    if opts is None:
        return None
    from ._context import Env
    from ._errors import run_guarded
    from ._run_flow import create_container_only, run_container

    env = Env.from_options(None)
    if args[0] == "create":
        return run_guarded(lambda: create_container_only(env, opts))
    detach, keys, proxy = opts.pop("detach"), opts.pop("detach_keys"), opts.pop("sig_proxy")
    return run_guarded(lambda: run_container(env, detach, keys, proxy, opts))
