"""rctr.toml: parsing, precedence (flag > env > file > default), errors that name file and key;
rctrd's side of it (settings checked, socket activation, the default network recorded) and the
registry client's mirrors."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from rctr.core.config import (DEFAULT_SOURCE, FLAGS, LOG_LEVELS, RUNTIMES, Config, config_path,
                              load_config, parse_config)
from rctr.core.errors import InvalidArgument, Unavailable
from rctr.daemon._main import activation_socket, parser, settings
from rctr.daemon._container_network import resolve_default
from rctr.storage import RegistryClient
from rctr.storage._reference import parse_reference

FULL = """
[storage]
driver = "vfs"

[network]
default = "none"

[registries]
insecure = ["myreg:5000", "10.0.0.0/8"]

[registries.mirrors]
"docker.io" = ["127.0.0.1:5000", "mirror.example"]

[daemon]
log_level = "debug"
runtime = "crun"
"""


def _write(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "rctr" / "rctr.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return {"XDG_CONFIG_HOME": str(tmp_path), "HOME": "/nonexistent"}


# -- where the file is -------------------------------------------------------------------------

def test_path_policy() -> None:
    assert config_path({"HOME": "/h"}) == "/h/.config/rctr/rctr.toml"
    assert config_path({"HOME": "/h", "XDG_CONFIG_HOME": "/x"}) == "/x/rctr/rctr.toml"
    assert config_path({"HOME": "/h", "XDG_CONFIG_HOME": "/x", "RCTR_CONFIG": "/c.toml"}) == \
        "/c.toml"


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config({"XDG_CONFIG_HOME": str(tmp_path)})
    assert config == Config(path=str(tmp_path / "rctr" / "rctr.toml"), file_found=False)
    assert config.storage_driver is None and config.network is None
    assert config.runtime == "rctr" and config.log_level == "info"
    assert config.source("runtime") == DEFAULT_SOURCE


def test_missing_file_named_by_rctr_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="RCTR_CONFIG"):
        load_config({"RCTR_CONFIG": str(tmp_path / "nope.toml")})


# -- parsing -------------------------------------------------------------------------------------

def test_full_file(tmp_path: Path) -> None:
    env = _write(tmp_path, FULL)
    config = load_config(env)
    assert config.file_found
    assert config.storage_driver == "vfs"
    assert config.network == "none"
    assert config.runtime == "crun"
    assert config.log_level == "debug"
    assert config.insecure_registries == ("myreg:5000", "10.0.0.0/8")
    assert config.mirrors_for("docker.io") == ("127.0.0.1:5000", "mirror.example")
    assert config.mirrors_for("quay.io") == ()
    assert config.source("storage_driver") == f"{config.path}: [storage] driver"
    assert config.source("registry_mirrors") == f"{config.path}: [registries] mirrors"
    with pytest.raises(TypeError):
        config.registry_mirrors["x"] = ()  # type: ignore[index]
    assert any("vfs" in line and "[storage] driver" in line for line in config.describe())


def test_empty_file_is_fine(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "# nothing yet\n"))
    assert config.file_found and config.runtime == "rctr"


@pytest.mark.parametrize("text, words", [
    ("[storage]\ndrivr = 'vfs'\n", ["unknown key [storage] drivr", "[storage] knows driver"]),
    ("[stoarge]\ndriver = 'vfs'\n", ["unknown key 'stoarge'", "[storage]"]),
    ("log_level = 'debug'\n", ["unknown key 'log_level'", "[daemon]"]),
    ("[daemon]\nlog_level = 3\n", ["[daemon] log_level", "not an integer", "debug, info"]),
    ("[daemon]\nlog_level = 'loud'\n", ["[daemon] log_level", "'loud' is not allowed"]),
    ("[daemon]\nruntime = 'youki'\n", ["[daemon] runtime", "rctr, crun, runc"]),
    ("[storage]\ndriver = true\n", ["[storage] driver", "not a boolean"]),
    ("[registries]\ninsecure = 'host:5000'\n", ["[registries] insecure", "list of strings"]),
    ("[registries]\ninsecure = ['https://host']\n", ["[registries] insecure", "no scheme"]),
    ("[registries]\nmirrors = ['a']\n", ["[registries] mirrors", "must be a table"]),
    ("[registries.mirrors]\n'docker.io' = 'm:5000'\n", ['"docker.io"', "list of strings"]),
    ("[registries.mirrors]\n'docker.io' = ['m/x']\n", ['"docker.io"', "not host[:port]"]),
    ("[storage\ndriver = 'vfs'\n", ["not valid TOML", "line 1"]),
])
def test_errors_name_the_file_the_key_and_what_is_allowed(tmp_path: Path, text: str,
                                                           words: list[str]) -> None:
    env = _write(tmp_path, text)
    with pytest.raises(InvalidArgument) as info:
        load_config(env)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(str(tmp_path / "rctr" / "rctr.toml") + ": ")
    for word in words:
        assert word in line, line
    assert info.value.hint


def test_parse_config_alone() -> None:
    assert parse_config(b"[daemon]\nruntime = 'runc'\n", "x.toml") == {"runtime": "runc"}


# -- precedence ----------------------------------------------------------------------------------

def test_env_beats_file_and_flag_beats_env(tmp_path: Path) -> None:
    env = _write(tmp_path, FULL)
    env.update(RCTR_STORAGE_DRIVER="overlay", RCTR_RUNTIME="runc", RCTR_NETWORK="pasta",
               RCTR_LOG_LEVEL="warning")
    config = load_config(env)
    assert (config.storage_driver, config.runtime, config.network, config.log_level) == \
        ("overlay", "runc", "pasta", "warning")
    assert config.source("network") == "$RCTR_NETWORK"
    flagged = config.with_flags(storage_driver="fuse-overlayfs", runtime=None, network="none",
                                log_level="error")
    assert (flagged.storage_driver, flagged.runtime, flagged.network, flagged.log_level) == \
        ("fuse-overlayfs", "runc", "none", "error")
    assert flagged.source("storage_driver") == "--storage-driver"
    assert flagged.source("runtime") == "$RCTR_RUNTIME"
    assert flagged.source("insecure_registries").endswith("[registries] insecure")


def test_every_flag_setting_reaches_its_field() -> None:
    """with_flags spells out each setting of FLAGS (for the type checker): one added to FLAGS
    and not there would be dropped without a word."""
    for setting, flag in FLAGS.items():
        value = {"runtime": RUNTIMES[-1], "log_level": LOG_LEVELS[0]}.get(setting, "given")
        flagged = Config().with_flags(**{setting: value})
        assert getattr(flagged, setting) == value != getattr(Config(), setting), setting
        assert flagged.source(setting) == flag


def test_empty_env_is_not_set(tmp_path: Path) -> None:
    env = _write(tmp_path, FULL)
    env["RCTR_RUNTIME"] = ""
    assert load_config(env).runtime == "crun"


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"^\$RCTR_LOG_LEVEL: log level 'loud'"):
        load_config({"XDG_CONFIG_HOME": str(tmp_path), "RCTR_LOG_LEVEL": "loud"})


# -- rctrd's checks ------------------------------------------------------------------------------

def _args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(list(argv))


def test_daemon_settings(tmp_path: Path) -> None:
    env = _write(tmp_path, FULL)
    config = settings(_args("--verbose"), env)
    assert config.log_level == "debug" and config.source("log_level") == "--log-level"
    assert settings(_args("--log-level", "error", "-v"), env).log_level == "error"
    other = tmp_path / "other.toml"
    other.write_text("[daemon]\nruntime = 'runc'\n")
    assert settings(_args("--config", str(other)), env).runtime == "runc"


@pytest.mark.parametrize("text, words", [
    ("[storage]\ndriver = 'btrfs'\n", ["[storage] driver", "'btrfs'", "vfs"]),
    ("[network]\ndefault = 'container:db'\n", ["[network] default", "cannot be every"]),
    ("[network]\ndefault = 'slirp4netns:mtu=1'\n", ["[network] default", "mtu"]),
    ("[network]\ndefault = 'bogus:x'\n", ["[network] default", "unknown network mode"]),
])
def test_daemon_refuses_values_naming_the_key(tmp_path: Path, text: str,
                                              words: list[str]) -> None:
    with pytest.raises(InvalidArgument) as info:
        settings(_args(), _write(tmp_path, text))
    for word in words:
        assert word in str(info.value)


def test_daemon_accepts_network_modes(tmp_path: Path) -> None:
    for mode in ("none", "host", "pasta", "slirp4netns:allow_host_loopback=true", "mynet"):
        assert settings(_args("--network", mode), {"XDG_CONFIG_HOME": str(tmp_path)}).network \
            == mode


def test_default_network_written_into_requests_that_name_none() -> None:
    for given in (None, "", "default", "bridge"):
        body: dict[str, object] = {"Image": "x", "HostConfig": {"NetworkMode": given}}
        resolve_default(body, "none")
        assert body["HostConfig"] == {"NetworkMode": "none"}
    body = {"Image": "x"}
    resolve_default(body, "pasta")
    assert body["HostConfig"] == {"NetworkMode": "pasta"}
    body = {"Image": "x", "HostConfig": {"NetworkMode": "host"}}
    resolve_default(body, "none")
    assert body["HostConfig"] == {"NetworkMode": "host"}
    body = {"Image": "x", "HostConfig": {"NetworkMode": "default"}}
    resolve_default(body, None)  # nothing configured: "default" stays, the built-in slirp4netns
    assert body["HostConfig"] == {"NetworkMode": "default"}


# -- socket activation ---------------------------------------------------------------------------

def test_activation_ignores_another_pid() -> None:
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x"}
    assert activation_socket(env) is None
    assert env == {}  # unset for the children either way


def test_activation_takes_fd_3(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    try:
        with _at_fd_3(listener):
            env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"}
            sock = activation_socket(env)
            assert sock is not None and env == {}
            assert sock.getsockname() == path
            assert not os.get_inheritable(3)
            sock.detach()
    finally:
        listener.close()


def test_activation_refuses_a_socket_that_does_not_listen() -> None:
    a, b = socket.socketpair()
    try:
        with _at_fd_3(a), pytest.raises(Unavailable, match="not a listening unix stream"):
            activation_socket({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"})
    finally:
        a.close()
        b.close()


@contextlib.contextmanager
def _at_fd_3(sock: socket.socket) -> Iterator[None]:
    """``sock`` at fd 3, where systemd puts the first socket; fd 3 as it was afterwards."""
    saved = os.dup(3) if _fd_open(3) else None
    try:
        os.dup2(sock.fileno(), 3)
        yield
    finally:
        if saved is not None:
            os.dup2(saved, 3)
            os.close(saved)
        else:
            os.close(3)


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


# -- the registry client -------------------------------------------------------------------------

def test_mirrors_come_first_then_the_registry() -> None:
    client = RegistryClient(mirrors={"registry-1.docker.io": ["m1:5000", "m2"]})
    ref = parse_reference("busybox:1")
    assert [s.registry for s in client.sources(ref)] == ["m1:5000", "m2", "docker.io"]
    assert all(s.repository == "library/busybox" and s.tag == "1" for s in client.sources(ref))
    other = parse_reference("quay.io/a/b")
    assert client.sources(other) == [other]


def test_insecure_hosts_and_cidrs_use_http() -> None:
    client = RegistryClient(insecure=["myreg:5000", "10.0.0.0/8"])
    assert client.base_url("myreg:5000") == "http://myreg:5000"
    assert client.base_url("10.1.2.3:5000") == "http://10.1.2.3:5000"
    assert client.base_url("11.1.2.3:5000") == "https://11.1.2.3:5000"
    assert client.base_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert client.base_url("quay.io") == "https://quay.io"
