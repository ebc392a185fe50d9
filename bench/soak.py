"""The soak, long form: parallel clients against one rctrd for several minutes.

Run as root (it runs rctr as the unprivileged ``rctr-bench`` user, made if missing):

    sudo /opt/rctr/venv/bin/python bench/soak.py [--clients 8] [--periods 5] [--seconds 60] [--json out.json]

Each period is ``tests/support/soak.py``'s soak for ``--seconds``: every client,
in a loop, runs a detached container that prints, reads its logs, execs into
it, runs a ``--rm`` container in the foreground and removes the first, all
through the ``rctr`` CLI.  After each period it reports the containers
handled, the errors (must be 0), what was left (must be nothing) and rctrd's
memory (PSS), fds and threads, so that growth shows as a trend over the
periods rather than one number.  The short form runs in CI as
``tests/faults/test_soak.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline  # noqa: E402  (puts tests/support on sys.path)

from daemonenv import RctrUser  # noqa: E402
from harness import UserShell  # noqa: E402
from soak import soak  # noqa: E402

USER = "rctr-bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--periods", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    pipeline.ensure_user(USER)
    shell = UserShell.create(USER)
    try:
        rc = RctrUser(shell)
        image = shell.base / "image"
        pipeline.testimage.build_oci_layout(str(image))
        for d in (image, *image.rglob("*")):
            d.chmod(0o755 if d.is_dir() else 0o644)
        rc.load_image(str(image))
        periods = []
        for i in range(args.periods):
            figures = soak(rc, clients=args.clients, seconds=args.seconds)
            periods.append(figures)
            after = figures["daemon_after"]
            print(f"period {i + 1}: {figures['containers']} containers "
                  f"({figures['containers_per_minute']}/min), {figures['errors']} errors, "
                  f"rctrd PSS {after['pss_kib'] / 1024:.1f} MiB, {after['fds']} fds, "
                  f"{after['threads']} threads, left: {len(figures['leftover_problems'])} "
                  f"problems, {len(figures['leftover_processes'])} processes, "
                  f"{len(figures['leftover_mounts'])} mounts", flush=True)
            for e in figures["first_errors"]:
                print(f"  error: {e}")
        first = periods[0]["daemon_before"]
        total = {
            "clients": args.clients,
            "containers": sum(p["containers"] for p in periods),
            "seconds": round(sum(p["seconds"] for p in periods), 1),
            "errors": sum(p["errors"] for p in periods),
            "rctrd_pss_mib": [round(first["pss_kib"] / 1024, 1)]
            + [round(p["daemon_after"]["pss_kib"] / 1024, 1) for p in periods],
            "rctrd_fds": [first["fds"]] + [p["daemon_after"]["fds"] for p in periods],
            "leftovers": sum(len(p["leftover_problems"]) + len(p["leftover_processes"])
                             + len(p["leftover_mounts"]) for p in periods),
            "periods": periods,
        }
        print(f"total: {total['containers']} containers in {total['seconds']} s from "
              f"{args.clients} clients, {total['errors']} errors, {total['leftovers']} leftovers; "
              f"rctrd PSS MiB by period {total['rctrd_pss_mib']}")
        if args.json:
            Path(args.json).write_text(json.dumps(total, indent=2))
    finally:
        shell.cleanup()


if __name__ == "__main__":
    main()
