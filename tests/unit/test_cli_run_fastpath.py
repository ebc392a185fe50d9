"""cli._run_fastpath: the click-free parse of ``run``/``create`` must equal click's, or defer to it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rctr.cli import _cmd_run, _run_fastpath

SAMPLES = [
    ["img"],
    ["--rm", "img", "true"],
    ["-it", "--rm", "img", "sh"],
    ["-dit", "--name", "web", "img"],
    ["-itd", "--name=web", "img", "sh", "-c", "echo -e hi"],
    ["-e", "A=1", "-eB=2", "--env", "C=3", "--env=D=4", "img", "env"],
    ["-v", "/a:/b:ro", "-itv", "/c:/d", "--mount", "type=tmpfs,dst=/t", "img"],
    ["-p", "8080:80", "-p", "53:53/udp", "-P", "--expose", "90", "img"],
    ["--network", "none", "--net", "host", "-h", "box", "-w", "/tmp", "-u", "1000:1000", "img"],
    ["--stop-timeout", "3", "--pids-limit", "-1", "--health-retries=2", "img"],
    ["--memory", "64m", "-m", "32m", "--cpus", "0.5", "--shm-size", "1g", "img"],
    ["--no-sig-proxy", "--sig-proxy", "--detach-keys", "ctrl-x", "img"],
    ["--init", "--read-only", "--privileged", "--cap-add", "NET_ADMIN", "--cap-drop=ALL", "img"],
    ["--label", "a=b", "-l", "c=d", "--pull", "never", "--platform", "linux/amd64", "img"],
    ["--", "img", "--rm"],
    ["--entrypoint", "", "img", "-x"],
    ["--name", "-weird-", "img"],
    ["-i", "--", "img", "-x"],
    ["-eA=1", "-it", "-w/srv", "img", "--rm"],
    ["--cpus=", "-e", "", "img"],
    ["--log-opt", "max-size=1k", "--security-opt", "no-new-privileges", "--ulimit", "nofile=10",
     "--sysctl", "net.ipv4.ip_forward=1", "--add-host", "h:1.2.3.4", "--dns", "1.1.1.1",
     "--group-add", "audio", "--tmpfs", "/run", "--env-file", "f", "--no-healthcheck", "img"],
]

DEFERRED = [
    [],                                   # no image
    ["--rm"],                             # no image after the flags
    ["--help"],
    ["--bogus", "img"],
    ["-Z", "img"],
    ["--rm=yes", "img"],                  # a flag with a value
    ["--stop-timeout", "soon", "img"],    # not a number
    ["--name"],                           # a value missing
    ["-e"],
    ["-iZ", "img"],                       # an unknown letter in a cluster
    ["--env", "A=1"],                     # flags, and no image
    ["--rm", "--"],                       # no image after --
    ["-it", "--pids-limit=x", "img"],     # an attached value that does not parse
]


def _click_params(verb: str, args: list[str]) -> dict:
    command = _cmd_run.run if verb == "run" else _cmd_run.create
    return command.make_context(verb, list(args)).params


@pytest.mark.parametrize("args", SAMPLES, ids=lambda a: " ".join(a) or "empty")
@pytest.mark.parametrize("verb", ["run", "create"])
def test_the_fast_parse_equals_clicks(verb: str, args: list[str]) -> None:
    if verb == "create" and any(a in args for a in ("-dit", "-itd", "--no-sig-proxy")):
        assert _run_fastpath.parse(verb, args) is None  # run-only flags: click's error for create
        return
    assert _run_fastpath.parse(verb, args) == _click_params(verb, args)


@pytest.mark.parametrize("args", DEFERRED, ids=lambda a: " ".join(a) or "empty")
def test_anything_unusual_is_left_to_click(args: list[str]) -> None:
    assert _run_fastpath.parse("run", args) is None


def test_other_verbs_are_left_to_click() -> None:
    assert _run_fastpath.parse("ps", ["-a"]) is None
    assert _run_fastpath.main(["-H", "unix:///x", "run", "img"]) is None


# Imports that cost milliseconds and that rctr run's path does without (see _run_fastpath).
HEAVY = ("click", "dataclasses", "inspect", "typing", "urllib.parse", "datetime", "csv")


def test_the_run_path_imports_nothing_heavy() -> None:
    code = ("import sys\n"
            "from rctr.cli import _run_fastpath, _run_flow, _ops, _create_request, _attach_io, _client, _errors, _daemon\n"
            "assert _run_fastpath.parse('run', ['--rm', 'img', 'true'])\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r}))\n")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_clients_quoting_equals_urllib() -> None:
    import random
    import urllib.parse

    from rctr.cli._client import quote, urlencode

    rng = random.Random(7)
    alphabet = "ab/:@ ?&=+%#~._-é中\x00\n{}\"'"
    for _ in range(2000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        for safe in ("", "/", "/:@"):
            assert quote(s, safe) == urllib.parse.quote(s, safe=safe), (s, safe)
        pairs = [(s, s[::-1]), ("filters", '{"label":["a=b"]}')]
        assert urlencode(pairs) == urllib.parse.urlencode(pairs), s
