"""Shell completion: click's scripts, command and flag names, and names from a fake daemon.

Completion is driven as the shells' scripts drive it: ``_RCTR_COMPLETE=bash_complete``
with ``COMP_WORDS`` and ``COMP_CWORD`` in the environment, through ``main``.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest
from test_cli_client import FakeDaemon

from rctr.cli import _complete, _daemon
from rctr.cli.main import main

CONTAINERS = [
    {"Id": "a1" * 32, "Names": ["/web-1"], "Image": "nginx:1", "State": "running"},
    {"Id": "b2" * 32, "Names": ["/web-2"], "Image": "nginx:1", "State": "exited"},
    {"Id": "c3" * 32, "Names": ["/db"], "Image": "pg:16", "State": "running"},
]
IMAGES = [{"Id": "sha256:1", "RepoTags": ["nginx:1", "nginx:latest"]},
          {"Id": "sha256:2", "RepoTags": ["<none>:<none>"]},
          {"Id": "sha256:3", "RepoTags": None}]


@pytest.fixture
def fake(tmp_path: Path) -> Any:
    daemon = FakeDaemon(str(tmp_path / "rctr.sock"))
    daemon.route("GET", "/containers/json", lambda r: CONTAINERS)
    daemon.route("GET", "/images/json", lambda r: IMAGES)
    daemon.route("GET", "/volumes", lambda r: {"Volumes": [{"Name": "data", "Driver": "local"}],
                                               "Warnings": []})
    daemon.route("GET", "/networks", lambda r: [{"Name": "bridge"}, {"Name": "backend"}])
    yield daemon
    daemon.close()


@pytest.fixture(autouse=True)
def no_daemon_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """A private runtime dir with no daemon; starting one fails the test."""
    started: list[str] = []
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("RCTR_HOST", raising=False)
    monkeypatch.setattr(_daemon, "ensure_running", lambda rundir, **kw: started.append(rundir))
    yield started
    assert not started, "a completion started the daemon"


def complete(monkeypatch: pytest.MonkeyPatch, capsys: Any, line: str,
             argv: list[str] | None = None) -> list[str]:
    """The values bash would be offered for the last word of ``line`` (may be empty)."""
    words = line.split(" ")
    monkeypatch.setenv("_RCTR_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", line)
    monkeypatch.setenv("COMP_CWORD", str(len(words) - 1))
    assert main(argv or []) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return [row.partition(",")[2] for row in out.splitlines() if row.startswith("plain,")]


# -- the scripts -----------------------------------------------------------------------------


@pytest.mark.parametrize("shell, marks", [
    ("bash", ["_RCTR_COMPLETE=bash_complete", "complete -o nosort -F _rctr_completion rctr"]),
    ("zsh", ["#compdef rctr", "_RCTR_COMPLETE=zsh_complete", "compdef _rctr_completion rctr"]),
    ("fish", ["_RCTR_COMPLETE=fish_complete", "complete --no-files --command rctr"]),
])
def test_script_for_each_shell(shell: str, marks: list[str], capsys: Any,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    for mark in marks:
        assert mark in script
    # The same script that click prints for _RCTR_COMPLETE=<shell>_source.
    monkeypatch.setenv("_RCTR_COMPLETE", f"{shell}_source")
    assert main([]) == 0
    assert capsys.readouterr().out == script


def test_unknown_shell_is_a_usage_error(capsys: Any) -> None:
    assert main(["completion", "tcsh"]) == 125
    assert "tcsh" in capsys.readouterr().err


# -- commands and flags ----------------------------------------------------------------------


def test_command_names(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    assert complete(monkeypatch, capsys, "rctr sto") == ["stop"]
    assert set(complete(monkeypatch, capsys, "rctr st")) == {"start", "stop", "stats"}
    assert complete(monkeypatch, capsys, "rctr comp") == ["completion"]
    assert set(complete(monkeypatch, capsys, "rctr container re")) == {"restart", "rename"}
    assert set(complete(monkeypatch, capsys, "rctr network c")) == {"create", "connect"}
    assert complete(monkeypatch, capsys, "rctr completion ") == ["bash", "zsh", "fish"]


def test_flags(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    assert {"--time", "--signal"} <= set(complete(monkeypatch, capsys, "rctr stop --"))
    assert complete(monkeypatch, capsys, "rctr run --rm --na") == ["--name"]
    assert complete(monkeypatch, capsys, "rctr --ho") == ["--host"]


def test_a_completion_request_bypasses_the_fast_path(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: Any) -> None:
    # Whatever the arguments, click answers and no container is run.
    assert complete(monkeypatch, capsys, "rctr ru", argv=["run", "--rm", "img", "true"]) == \
        ["run", "runtime"]


# -- names from the daemon -------------------------------------------------------------------


def test_container_names_by_state(fake: FakeDaemon, monkeypatch: pytest.MonkeyPatch,
                                  capsys: Any) -> None:
    host = f"rctr -H {fake.host}"
    assert complete(monkeypatch, capsys, f"{host} stop ") == ["web-1", "db"]
    assert complete(monkeypatch, capsys, f"{host} stop we") == ["web-1"]
    assert complete(monkeypatch, capsys, f"{host} start ") == ["web-2"]
    assert complete(monkeypatch, capsys, f"{host} rm web-1 we") == ["web-1", "web-2"]
    assert complete(monkeypatch, capsys, f"{host} container logs ") == ["web-1", "web-2", "db"]
    assert complete(monkeypatch, capsys, f"{host} exec -it d") == ["db"]
    assert complete(monkeypatch, capsys, f"{host} rm c3") == ["c3" * 6]  # no name: an id
    assert fake.find("GET", "/containers/json")[-1].arg("all") == "1"


def test_rctr_host_names_the_daemon_too(fake: FakeDaemon, monkeypatch: pytest.MonkeyPatch,
                                        capsys: Any) -> None:
    monkeypatch.setenv("RCTR_HOST", fake.host)
    assert complete(monkeypatch, capsys, "rctr kill d") == ["db"]


def test_images_volumes_networks(fake: FakeDaemon, monkeypatch: pytest.MonkeyPatch,
                                 capsys: Any) -> None:
    host = f"rctr -H {fake.host}"
    assert complete(monkeypatch, capsys, f"{host} run -d ") == ["nginx:1", "nginx:latest"]
    assert complete(monkeypatch, capsys, f"{host} rmi nginx:l") == ["nginx:latest"]
    assert complete(monkeypatch, capsys, f"{host} image inspect ng") == ["nginx:1", "nginx:latest"]
    assert complete(monkeypatch, capsys, f"{host} tag ") == ["nginx:1", "nginx:latest"]
    assert complete(monkeypatch, capsys, f"{host} volume rm ") == ["data"]
    assert complete(monkeypatch, capsys, f"{host} network rm b") == ["bridge", "backend"]
    assert complete(monkeypatch, capsys, f"{host} network connect backend w") == ["web-1", "web-2"]
    assert complete(monkeypatch, capsys, f"{host} inspect --type volume ") == ["data"]
    assert complete(monkeypatch, capsys, f"{host} inspect ") == \
        ["web-1", "web-2", "db", "nginx:1", "nginx:latest"]
    assert complete(monkeypatch, capsys, f"{host} cp ./f d") == ["db:"]


def test_cp_leaves_local_paths_to_the_shell(fake: FakeDaemon, monkeypatch: pytest.MonkeyPatch,
                                            capsys: Any) -> None:
    monkeypatch.setenv("_RCTR_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", f"rctr -H {fake.host} cp ./")
    monkeypatch.setenv("COMP_CWORD", "4")
    assert main([]) == 0
    assert capsys.readouterr().out.strip() == "file,./"


# -- no daemon, a broken one, a stalled one --------------------------------------------------


def test_no_daemon_offers_nothing_and_starts_none(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: Any, tmp_path: Path) -> None:
    for line in ("rctr stop ", "rctr run ", "rctr volume rm ", "rctr network rm ",
                 "rctr inspect ", "rctr cp x"):
        assert complete(monkeypatch, capsys, line) == []
    assert not (tmp_path / "run").exists()  # not even the runtime dir


def test_a_bad_host_or_answer_offers_nothing(fake: FakeDaemon, monkeypatch: pytest.MonkeyPatch,
                                            capsys: Any) -> None:
    assert complete(monkeypatch, capsys, "rctr -H tcp://x:1 stop ") == []
    fake.route("GET", "/containers/json", lambda r: (500, {"message": "boom"}))
    fake.route("GET", "/images/json", lambda r: {"not": "a list"})
    assert complete(monkeypatch, capsys, f"rctr -H {fake.host} stop ") == []
    assert complete(monkeypatch, capsys, f"rctr -H {fake.host} rmi ") == []


def test_a_stalled_daemon_costs_one_timeout(monkeypatch: pytest.MonkeyPatch, capsys: Any,
                                            tmp_path: Path) -> None:
    path = str(tmp_path / "stalled.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)  # never accepts: connect succeeds, no answer comes
    monkeypatch.setattr(_complete, "TIMEOUT", 0.2)
    try:
        start = time.monotonic()
        assert complete(monkeypatch, capsys, f"rctr -H unix://{path} stop ") == []
        assert time.monotonic() - start < 2
    finally:
        listener.close()
