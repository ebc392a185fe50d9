"""``rctr runtime``: runc's command line over the runtime library.

Each verb parses its flags, makes one library call and maps errors to an
exit code.  It uses argparse, not click, on purpose: this command is on the
start-up path of every container, and importing click costs more than the
whole rest of the runtime (see bench/runtime_start.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from rctr.core.errors import RctrError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rctr.core.oci import Process, State

__all__ = ["main"]


def _default_root() -> str:
    from rctr.core.paths import runtime_dir

    return os.path.join(runtime_dir(), "runtime")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rctr runtime",
                                description="A rootless OCI runtime with runc's command line.")
    p.add_argument("--root", default=None, help="state directory (default: $XDG_RUNTIME_DIR/rctr/runtime)")
    p.add_argument("--log", default=None, help="also write errors to this file")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true", help="accepted for runc compatibility")
    p.add_argument("--rootless", default="auto", help="accepted for runc compatibility")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", required=True)

    s = sub.add_parser("spec", help="write a default config.json")
    s.add_argument("--rootless", action="store_true", dest="spec_rootless")
    s.add_argument("--bundle", "-b", default=".")

    for name in ("create", "run"):
        s = sub.add_parser(name, help=f"{name} a container from a bundle")
        s.add_argument("--bundle", "-b", default=".")
        s.add_argument("--pid-file")
        s.add_argument("--console-socket")
        s.add_argument("--preserve-fds", type=int, default=0)
        s.add_argument("--no-pivot", action="store_true", help="accepted; pivot_root is always used")
        s.add_argument("--no-new-keyring", action="store_true", help="accepted; no keyring is made")
        if name == "run":
            s.add_argument("--detach", "-d", action="store_true")
            s.add_argument("--keep", action="store_true")
        s.add_argument("id")

    for name in ("start", "state"):
        sub.add_parser(name).add_argument("id")

    s = sub.add_parser("kill", help="send a signal to the container's init")
    s.add_argument("--all", "-a", action="store_true")
    s.add_argument("id")
    s.add_argument("signal", nargs="?", default="SIGTERM")

    s = sub.add_parser("delete", help="delete a stopped container")
    s.add_argument("--force", "-f", action="store_true")
    s.add_argument("id")

    s = sub.add_parser("list", help="list containers")
    s.add_argument("--format", "-f", choices=("table", "json"), default="table")
    s.add_argument("--quiet", "-q", action="store_true")

    s = sub.add_parser("exec", help="run a process in a running container")
    s.add_argument("--tty", "-t", action="store_true")
    s.add_argument("--detach", "-d", action="store_true")
    s.add_argument("--pid-file")
    s.add_argument("--console-socket")
    s.add_argument("--process", "-p")
    s.add_argument("--cwd")
    s.add_argument("--env", "-e", action="append", default=[])
    s.add_argument("--user", "-u")
    s.add_argument("--additional-gids", "-g", action="append", type=int, default=[])
    s.add_argument("--cap", "-c", action="append", default=[])
    s.add_argument("--no-new-privs", action="store_true")
    s.add_argument("--preserve-fds", type=int, default=0)
    s.add_argument("id")
    s.add_argument("command", nargs=argparse.REMAINDER)
    return p


def parse_signal(text: str) -> int:
    if text.isdigit():
        return int(text)
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        from rctr.core.errors import InvalidArgument

        raise InvalidArgument(f"unknown signal {text!r}") from None


def _print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _table(states: list[State]) -> None:
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"])
             for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        sys.stdout.write("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def _exec_process(args: argparse.Namespace, base: Process) -> Process:
    process: Process
    if args.process:
        with open(args.process, "rb") as f:
            process = json.loads(f.read())
        return process
    if not args.command:
        from rctr.core.errors import InvalidArgument

        raise InvalidArgument("exec needs a command or --process FILE")
    process = json.loads(json.dumps(base))
    process["args"] = args.command
    process["terminal"] = args.tty
    process["env"] = list(process.get("env") or []) + args.env
    if args.cwd:
        process["cwd"] = args.cwd
    if args.user:
        uid, _, gid = args.user.partition(":")
        process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if args.additional_gids:
        process.setdefault("user", {})["additionalGids"] = args.additional_gids
    if args.cap:
        caps = process.setdefault("capabilities", {})
        for kind in ("bounding", "effective", "permitted", "ambient"):
            caps[kind] = list(dict.fromkeys(list(caps.get(kind) or []) + args.cap))
    if args.no_new_privs:
        process["noNewPrivileges"] = True
    return process


def _dispatch(args: argparse.Namespace) -> int:
    if args.verb == "spec":
        return _spec(args)
    from ._runtime import Runtime

    runtime = Runtime(args.root or _default_root())
    verb = args.verb
    if verb == "create":
        runtime.create(args.id, args.bundle, pid_file=args.pid_file,
                       console_socket=args.console_socket, preserve_fds=args.preserve_fds)
    elif verb == "run":
        return runtime.run(args.id, args.bundle, pid_file=args.pid_file,
                           console_socket=args.console_socket, detach=args.detach,
                           keep=args.keep, preserve_fds=args.preserve_fds)
    elif verb == "start":
        runtime.start(args.id)
    elif verb == "state":
        _print_json(runtime.state(args.id))
    elif verb == "kill":
        runtime.kill(args.id, parse_signal(args.signal), args.all)
    elif verb == "delete":
        runtime.delete(args.id, args.force)
    elif verb == "list":
        states = runtime.list()
        if args.quiet:
            sys.stdout.write("".join(s["id"] + "\n" for s in states))
        elif args.format == "json":
            _print_json(states)
        else:
            _table(states)
    elif verb == "exec":
        base = runtime.states.load(args.id).config["process"]
        return runtime.exec(args.id, _exec_process(args, base), pid_file=args.pid_file,
                            console_socket=args.console_socket, detach=args.detach,
                            preserve_fds=args.preserve_fds)
    return 0


def _spec(args: argparse.Namespace) -> int:
    from ._default_spec import default_spec

    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        from rctr.core.errors import AlreadyExists

        raise AlreadyExists(f"{path} exists already", hint="remove it to write a new one")
    spec = default_spec(args.spec_rootless, warn=lambda m: sys.stderr.write(f"warning: {m}\n"))
    with open(path, "w") as f:
        f.write(json.dumps(spec, indent=2) + "\n")
    return 0


def _log_error(args: argparse.Namespace | None, message: str) -> None:
    sys.stderr.write(f"rctr runtime: {message}\n")
    if args is None or not args.log:
        return
    import time

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = (json.dumps({"level": "error", "msg": message, "time": stamp})
            if args.log_format == "json" else f"{stamp} error: {message}")
    try:
        with open(args.log, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = _parser().parse_args(argv)
        return _dispatch(args)
    except RctrError as exc:
        _log_error(args, str(exc))
        return exc.exit_code
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename and str(exc.filename) not in str(exc) else ""
        _log_error(args, f"{exc.strerror or exc}{where}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
