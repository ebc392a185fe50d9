"""daemon/containers/: the container service's decisions that need no container."""

from __future__ import annotations

import signal

import pytest

from rctr.core.errors import InvalidArgument
from rctr.daemon._record import Record
from rctr.daemon.containers import Container
from rctr.daemon.containers._create import check_host_config, merged_config, unenforced_limits
from rctr.daemon.containers._start import _size
from rctr.daemon.containers._stop import _signal
from rctr.daemon.containers._supervise import _restarts


def test_the_config_is_the_requests_completed_from_the_images() -> None:
    image = {"Env": ["PATH=/bin", "A=image"], "Entrypoint": ["/init"], "Cmd": ["serve"],
             "WorkingDir": "/srv", "Labels": {"l": "image", "m": "image"},
             "ExposedPorts": {"80/tcp": {}}, "Healthcheck": {"Test": ["CMD", "check"],
                                                             "Interval": 5}}
    body = {"Image": "img", "Env": ["A=request"], "Labels": {"l": "request"},
            "Healthcheck": {"Interval": 7, "Retries": 0}, "HostConfig": {}, "NetworkingConfig": {}}
    config = merged_config(body, image)
    assert "HostConfig" not in config and "NetworkingConfig" not in config
    assert config["Env"] == ["PATH=/bin", "A=request"]
    assert (config["Entrypoint"], config["Cmd"], config["WorkingDir"]) == (["/init"], ["serve"],
                                                                           "/srv")
    assert config["Labels"] == {"l": "request", "m": "image"}
    assert config["ExposedPorts"] == {"80/tcp": {}} and config["Volumes"] is None
    assert config["Healthcheck"] == {"Test": ["CMD", "check"], "Interval": 7}
    assert config["Tty"] is False and config["User"] == ""
    # An entrypoint in the request drops the image's command, as Docker does.
    assert merged_config({"Entrypoint": ["sh"]}, image).get("Cmd") is None


@pytest.mark.parametrize("host, words", [
    ({"RestartPolicy": {"Name": "sometimes"}}, "invalid restart policy"),
    ({"RestartPolicy": {"Name": "always"}, "AutoRemove": True}, "both --restart and --rm"),
    ({"LogConfig": {"Type": "syslog"}}, "not supported"),
])
def test_refused_host_configs(host: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        check_host_config(host, None)


def test_limits_without_delegation_are_warnings() -> None:
    warnings = unenforced_limits({"Memory": 1 << 20, "PidsLimit": -1, "NanoCpus": 0}, None)
    assert len(warnings) == 1 and warnings[0].startswith("--memory is not enforced")


@pytest.mark.parametrize("policy, stopped, code, restarts", [
    ({"Name": "no"}, False, 1, False),
    ({"Name": "always"}, False, 0, True),
    ({"Name": "always"}, True, 1, False),
    ({"Name": "unless-stopped"}, False, 0, True),
    ({"Name": "on-failure"}, False, 0, False),
    ({"Name": "on-failure"}, False, 1, True),
    ({"Name": "on-failure", "MaximumRetryCount": 2}, False, 1, False),  # two restarts so far
    ({"Name": "on-failure", "MaximumRetryCount": 3}, False, 1, True),
])
def test_the_restart_policy(policy: dict[str, object], stopped: bool, code: int,
                            restarts: bool) -> None:
    c = Container(Record(id="c" * 64, name="c", host_config={"RestartPolicy": policy},
                         restart_count=2, manually_stopped=stopped))
    assert _restarts(c, code) is restarts


def test_signals_and_sizes() -> None:
    assert _signal("TERM") is _signal("SIGTERM") is _signal("15") is signal.SIGTERM
    assert _signal(9) is signal.SIGKILL
    for bad in ("SIGNOPE", "999"):
        with pytest.raises(InvalidArgument, match="invalid signal"):
            _signal(bad)
    assert (_size(None), _size("10"), _size("1k"), _size("1.5m"), _size("2g")) == \
        (0, 10, 1024, 3 << 19, 2 << 30)
    with pytest.raises(InvalidArgument, match="invalid log size"):
        _size("lots")


@pytest.mark.parametrize("endpoint", [[{}], "x", 1, {"Aliases": "web"}, {"Aliases": [5]},
                                      {"IPAMConfig": ["x"]},
                                      {"IPAMConfig": {"IPv4Address": 10}}])
def test_an_endpoint_of_the_wrong_shape_is_refused(endpoint: object) -> None:
    """Create (NetworkingConfig) and connect (EndpointConfig) read endpoints through the
    same function: what Go's JSON decoding refuses is a 400 on both, never a 500."""
    from rctr.daemon.containers._usernets import _wanted_endpoint

    with pytest.raises(InvalidArgument):
        _wanted_endpoint({"Id": "net1"}, endpoint)


def test_an_endpoint_is_read_from_dockers_settings() -> None:
    from rctr.daemon.containers._usernets import _wanted_endpoint

    assert _wanted_endpoint({"Id": "n"}, None).aliases == []
    got = _wanted_endpoint({"Id": "n"}, {"Aliases": ["web"],
                                          "IPAMConfig": {"IPv4Address": "10.89.1.5"}})
    assert (got.network_id, got.aliases, got.ipv4_address) == ("n", ["web"], "10.89.1.5")


@pytest.mark.parametrize("body", [{"Labels": [["a"]]}, {"Labels": {"a": 1}}, {"Labels": "a=b"},
                                  {"ExposedPorts": ["80/tcp"]}, {"Volumes": "/data"},
                                  {"Healthcheck": ["CMD", "true"]}, {"Env": "A=1"},
                                  {"Env": ["A=1", 2]}])
def test_config_fields_merged_with_the_images_must_have_their_types(body: dict[str, object]
                                                                    ) -> None:
    """Found by the API fuzz: a list for Labels crashed the merge (500); Go refuses it (400)."""
    from rctr.daemon.containers._create import check_shapes

    with pytest.raises(InvalidArgument):
        check_shapes({"Image": "x", **body})


def test_config_fields_of_the_right_types_pass() -> None:
    from rctr.daemon.containers._create import check_shapes

    check_shapes({"Image": "x", "Labels": {"a": "b"}, "ExposedPorts": {"80/tcp": {}},
                  "Volumes": {"/data": {}}, "Healthcheck": {"Test": ["NONE"]},
                  "Env": ["A=1"]})
    check_shapes({"Image": "x", "Labels": None, "Env": None})
