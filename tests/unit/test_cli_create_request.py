"""``run``/``create`` flags to the create body, compared with what docker's CLI sends."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rctr.cli._context import CLIError
from rctr.cli._create_request import (build_create, parse_mount, parse_ports, parse_volume,
                                      resource_settings)


def body(*, detach: bool = False, for_run: bool = True, **opts: Any) -> dict[str, Any]:
    opts.setdefault("image", "busybox")
    return build_create(opts, detach=detach, for_run=for_run, environ={"HOME": "/home/u"},
                        cwd="/work").body


def test_defaults_match_dockers_body() -> None:
    b = body()
    assert b["Image"] == "busybox" and b["Cmd"] is None and b["Entrypoint"] is None
    assert (b["AttachStdin"], b["AttachStdout"], b["AttachStderr"]) == (False, True, True)
    assert (b["Tty"], b["OpenStdin"], b["StdinOnce"]) == (False, False, False)
    assert b["Env"] == [] and b["Labels"] == {} and b["ExposedPorts"] == {}
    h = b["HostConfig"]
    assert h["NetworkMode"] == "default" and h["RestartPolicy"] == {"Name": "no",
                                                                    "MaximumRetryCount": 0}
    assert h["AutoRemove"] is False and "Init" not in h and "PidsLimit" not in h
    assert h["LogConfig"] == {"Type": "", "Config": {}}
    assert b["NetworkingConfig"] == {"EndpointsConfig": {}}
    assert "Healthcheck" not in b and "StopSignal" not in b


def test_interactive_tty_foreground_run() -> None:
    b = body(interactive=True, tty=True, command=("sh", "-c", "echo hi"))
    assert (b["AttachStdin"], b["OpenStdin"], b["StdinOnce"], b["Tty"]) == (True, True, True, True)
    assert b["Cmd"] == ["sh", "-c", "echo hi"]


def test_detached_run_attaches_nothing() -> None:
    b = body(interactive=True, detach=True)
    assert (b["AttachStdin"], b["AttachStdout"], b["AttachStderr"]) == (False, False, False)
    assert b["OpenStdin"] is True and b["StdinOnce"] is False


def test_create_attaches_output_and_keeps_stdin_open() -> None:
    b = body(interactive=True, for_run=False)
    assert (b["AttachStdin"], b["AttachStdout"], b["StdinOnce"]) == (True, True, False)


def test_env_flags_and_env_file(tmp_path: Any) -> None:
    f = tmp_path / "env"
    f.write_text("# comment\nA=1\n\n  B=two words\nHOME\nUNSET\n")
    b = body(env_file=(str(f),), env=("C=3", "HOME", "NOPE", "D="))
    assert b["Env"] == ["A=1", "B=two words", "HOME=/home/u", "C=3", "HOME=/home/u", "D="]


def test_env_file_missing_is_an_error(tmp_path: Any) -> None:
    with pytest.raises(CLIError, match="open"):
        body(env_file=(str(tmp_path / "none"),))


def test_entrypoint_user_workdir_hostname_labels() -> None:
    b = body(entrypoint="/bin/sh", user="1000:1000", workdir="/srv", hostname="box",
             label=("a=1", "flag"))
    assert b["Entrypoint"] == ["/bin/sh"] and b["User"] == "1000:1000"
    assert b["WorkingDir"] == "/srv" and b["Hostname"] == "box"
    assert b["Labels"] == {"a": "1", "flag": ""}
    assert body(entrypoint="")["Entrypoint"] == []


def test_volumes_binds_and_anonymous() -> None:
    b = body(volume=("/data", "/host:/in:ro", "named:/v", "./rel:/r", ".:/dot"))
    assert b["Volumes"] == {"/data": {}}
    assert b["HostConfig"]["Binds"] == ["/host:/in:ro", "named:/v", "/work/rel:/r", "/work:/dot"]
    assert parse_volume("/anon:ro", "/") == (None, "/anon")
    for bad in ("rel", "a:b", "a:/b:c:d"):
        with pytest.raises(CLIError):
            parse_volume(bad, "/")


def test_mounts() -> None:
    assert parse_mount("type=bind,source=/h,target=/c,readonly,bind-propagation=rslave") == {
        "Type": "bind", "Source": "/h", "Target": "/c", "ReadOnly": True,
        "BindOptions": {"Propagation": "rslave"}}
    assert parse_mount("src=vol,dst=/v,volume-nocopy,volume-label=a=b,volume-opt=o=1") == {
        "Type": "volume", "Source": "vol", "Target": "/v",
        "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"},
                          "DriverConfig": {"Options": {"o": "1"}}}}
    assert parse_mount("type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1770,ro=false") == {
        "Type": "tmpfs", "Target": "/t", "ReadOnly": False,
        "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1770}}
    for bad in ("type=bind,target=/c", "source=/x", "type=nfs,target=/x", "target=/x,bogus=1",
                "type=bind,src=/a,dst=/b,tmpfs-size=1m", "type=tmpfs,src=x,dst=/b"):
        with pytest.raises(CLIError):
            parse_mount(bad)
    b = body(mount=("type=bind,src=/h,dst=/c",), tmpfs=("/run:rw,size=1m", "/tmp"))
    assert b["HostConfig"]["Mounts"] == [{"Type": "bind", "Source": "/h", "Target": "/c"}]
    assert b["HostConfig"]["Tmpfs"] == {"/run": "rw,size=1m", "/tmp": ""}


def test_ports() -> None:
    exposed, bindings = parse_ports(["8080:80", "127.0.0.1::53/udp", "90", "[::1]:8443:443",
                                     "7000-7001:7000-7001", "9000-9010:9000", "80/tcp"])
    assert exposed == {k: {} for k in ("80/tcp", "53/udp", "90/tcp", "443/tcp", "7000/tcp",
                                        "7001/tcp", "9000/tcp")}
    assert bindings["80/tcp"] == [{"HostIp": "", "HostPort": "8080"},
                                  {"HostIp": "", "HostPort": ""}]
    assert bindings["53/udp"] == [{"HostIp": "127.0.0.1", "HostPort": ""}]
    assert bindings["443/tcp"] == [{"HostIp": "::1", "HostPort": "8443"}]
    assert bindings["7001/tcp"] == [{"HostIp": "", "HostPort": "7001"}]
    assert bindings["9000/tcp"] == [{"HostIp": "", "HostPort": "9000-9010"}]
    for bad in ("0", "x:80", "80/icmp", "1-3:1-2", "70000"):
        with pytest.raises(CLIError):
            parse_ports([bad])
    b = body(publish=("8080:80",), publish_all=True, expose=("5000",))
    assert b["ExposedPorts"] == {"80/tcp": {}, "5000/tcp": {}}
    assert b["HostConfig"]["PublishAllPorts"] is True


def test_host_config_flags() -> None:
    h = body(rm=True, network="mynet", network_alias=("db",), init=True, read_only=True, cap_add=("NET_ADMIN",),
             cap_drop=("ALL",), privileged=True, memory="512m", cpus="1.5", pids_limit=100,
             log_driver="json-file", log_opt=("max-size=10m",), security_opt=("no-new-privileges",),
             add_host=("db:10.0.0.2",), dns=("1.1.1.1",), group_add=("audio",),
             sysctl=("net.ipv4.ip_forward=1",), shm_size="128m",
             ulimit=("nofile=1024:2048", "nproc=512"))
    hc = h["HostConfig"]
    assert hc["AutoRemove"] and hc["Init"] and hc["ReadonlyRootfs"] and hc["Privileged"]
    assert hc["NetworkMode"] == "mynet"
    assert h["NetworkingConfig"] == {"EndpointsConfig": {"mynet": {"Aliases": ["db"]}}}
    for mode in ("pasta:--map-gw", "slirp4netns:mtu=1500", "container:web", "host"):
        assert body(network=mode)["NetworkingConfig"] == {"EndpointsConfig": {}}
    assert hc["CapAdd"] == ["NET_ADMIN"] and hc["CapDrop"] == ["ALL"]
    assert hc["Memory"] == 512 << 20 and hc["NanoCpus"] == 1_500_000_000
    assert hc["PidsLimit"] == 100 and hc["ShmSize"] == 128 << 20
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m"}}
    assert hc["SecurityOpt"] == ["no-new-privileges"]
    assert hc["ExtraHosts"] == ["db:10.0.0.2"] and hc["Dns"] == ["1.1.1.1"]
    assert hc["GroupAdd"] == ["audio"] and hc["Sysctls"] == {"net.ipv4.ip_forward": "1"}
    assert hc["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048},
                             {"Name": "nproc", "Soft": 512, "Hard": 512}]
    for net in ("host", "none", "bridge", "container:abc"):
        assert body(network=net)["NetworkingConfig"] == {"EndpointsConfig": {}}


def test_seccomp_profile_is_sent_inline(tmp_path: Any) -> None:
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}, indent=2))
    hc = body(security_opt=(f"seccomp={profile}", "seccomp=unconfined"))["HostConfig"]
    assert hc["SecurityOpt"] == ['seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}',
                                 "seccomp=unconfined"]


@pytest.mark.parametrize("value, expected", [
    ("always", {"Name": "always", "MaximumRetryCount": 0}),
    ("unless-stopped", {"Name": "unless-stopped", "MaximumRetryCount": 0}),
    ("on-failure:3", {"Name": "on-failure", "MaximumRetryCount": 3}),
])
def test_restart(value: str, expected: dict[str, Any]) -> None:
    assert body(restart=value)["HostConfig"]["RestartPolicy"] == expected


@pytest.mark.parametrize("opts, message", [
    ({"restart": "always", "rm": True}, "Conflicting options: --restart and --rm"),
    ({"restart": "always:3"}, "maximum retry count"),
    ({"restart": "sometimes"}, "invalid restart policy"),
    ({"memory": "lots"}, "--memory"),
    ({"cpus": "two"}, "--cpus"),
    ({"pull": "sometimes"}, "invalid pull option"),
    ({"no_healthcheck": True, "health_cmd": "true"}, "--no-healthcheck conflicts"),
    ({"health_interval": "soon"}, "--health-interval"),
    ({"health_timeout": "-1s"}, "cannot be negative"),
    ({"log_opt": ("novalue",)}, "KEY=VALUE"),
])
def test_invalid_flags(opts: dict[str, Any], message: str) -> None:
    with pytest.raises(CLIError, match=message):
        body(**opts)


def test_healthcheck() -> None:
    b = body(health_cmd="curl -f localhost", health_interval="30s", health_timeout="1m30s",
             health_retries=3, health_start_period="500ms")
    assert b["Healthcheck"] == {"Test": ["CMD-SHELL", "curl -f localhost"],
                                "Interval": 30_000_000_000, "Timeout": 90_000_000_000,
                                "StartPeriod": 500_000_000, "Retries": 3}
    assert body(no_healthcheck=True)["Healthcheck"] == {"Test": ["NONE"]}
    # Settings without a command keep the image's test (no "Test" key, as Go's omitempty).
    assert body(health_retries=5)["Healthcheck"] == {"Interval": 0, "Timeout": 0,
                                                      "StartPeriod": 0, "Retries": 5}


def test_stop_signal_and_timeout_name_platform_pull() -> None:
    req = build_create({"image": "alpine", "stop_signal": "SIGUSR1", "stop_timeout": 3,
                        "name": "web", "platform": "linux/arm64", "pull": "never"},
                       environ={}, cwd="/")
    assert req.body["StopSignal"] == "SIGUSR1" and req.body["StopTimeout"] == 3
    assert req.params == {"name": "web", "platform": "linux/arm64"}
    assert req.pull == "never"
    assert build_create({"image": "a"}, environ={}, cwd="/").params == {"name": None,
                                                                       "platform": None}


def test_resource_settings_are_only_what_was_given() -> None:
    assert resource_settings({}) == {}
    assert resource_settings({"memory": "1g", "memory_swap": "-1", "cpus": "1.5",
                              "cpu_shares": 512, "pids_limit": 0}) == {
        "Memory": 1 << 30, "MemorySwap": -1, "NanoCpus": 1_500_000_000, "CpuShares": 512,
        "PidsLimit": 0}
    with pytest.raises(CLIError, match="--memory"):
        resource_settings({"memory": "lots"})


EVERY_FLAG: dict[str, Any] = dict(
    image="alpine", command=("sh", "-c", "true"), interactive=True, tty=True, rm=True, name="web",
    env=("A=1", "HOME"), workdir="/srv", user="1:2", volume=("/anon", "/h:/c:ro"),
    mount=("type=tmpfs,dst=/t",), tmpfs=("/run:size=1m",), publish=("8080:80",), publish_all=True,
    expose=("127.0.0.1:90", "91/udp"), network="net1", network_alias=("a",), hostname="box",
    entrypoint="/init", init=True, read_only=True, stop_signal="SIGINT", stop_timeout=4,
    cap_add=("NET_ADMIN",), cap_drop=("MKNOD",), privileged=True, memory="1g", cpus="0.5",
    pids_limit=-1, shm_size="64m", ulimit=("nofile=5",), sysctl=("k=v",), add_host=("h:1.2.3.4",),
    dns=("9.9.9.9",), group_add=("audio",), log_driver="json-file", log_opt=("max-size=1m",),
    security_opt=("no-new-privileges",), health_cmd="true", health_interval="1s",
    health_retries=2, label=("l=1",), platform="linux/amd64", pull="always")


def test_every_flag_at_once_in_dockers_order() -> None:
    """The whole body, keys in order (json.dumps keeps it), as the daemon receives it."""
    req = build_create(EVERY_FLAG, detach=False, environ={"HOME": "/root"}, cwd="/")
    expected = {
        "Hostname": "box", "User": "1:2",
        "AttachStdin": True, "AttachStdout": True, "AttachStderr": True,
        "ExposedPorts": {"80/tcp": {}, "90/tcp": {}, "91/udp": {}},
        "Tty": True, "OpenStdin": True, "StdinOnce": True,
        "Env": ["A=1", "HOME=/root"], "Cmd": ["sh", "-c", "true"], "Image": "alpine",
        "Volumes": {"/anon": {}}, "WorkingDir": "/srv", "Entrypoint": ["/init"],
        "Labels": {"l": "1"},
        "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 1_000_000_000, "Timeout": 0,
                        "StartPeriod": 0, "Retries": 2},
        "StopSignal": "SIGINT", "StopTimeout": 4,
        "HostConfig": {
            "Binds": ["/h:/c:ro"], "Mounts": [{"Type": "tmpfs", "Target": "/t"}],
            "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
            "PublishAllPorts": True, "NetworkMode": "net1", "AutoRemove": True,
            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
            "CapAdd": ["NET_ADMIN"], "CapDrop": ["MKNOD"], "Privileged": True,
            "ReadonlyRootfs": True, "Memory": 1 << 30, "NanoCpus": 500_000_000,
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}},
            "SecurityOpt": ["no-new-privileges"], "ExtraHosts": ["h:1.2.3.4"], "Dns": ["9.9.9.9"],
            "GroupAdd": ["audio"], "Sysctls": {"k": "v"},
            "Ulimits": [{"Name": "nofile", "Soft": 5, "Hard": 5}],
            "Tmpfs": {"/run": "size=1m"}, "Init": True, "PidsLimit": -1, "ShmSize": 64 << 20},
        "NetworkingConfig": {"EndpointsConfig": {"net1": {"Aliases": ["a"]}}},
    }
    assert json.dumps(req.body) == json.dumps(expected)
    assert (req.params, req.pull) == ({"name": "web", "platform": "linux/amd64"}, "always")


def test_no_flags_body_in_dockers_order() -> None:
    b = body()
    assert list(b) == ["Hostname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
                       "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Image",
                       "Volumes", "WorkingDir", "Entrypoint", "Labels", "HostConfig",
                       "NetworkingConfig"]
    assert list(b["HostConfig"]) == [
        "Binds", "Mounts", "PortBindings", "PublishAllPorts", "NetworkMode", "AutoRemove",
        "RestartPolicy", "CapAdd", "CapDrop", "Privileged", "ReadonlyRootfs", "Memory", "NanoCpus",
        "LogConfig", "SecurityOpt", "ExtraHosts", "Dns", "GroupAdd", "Sysctls", "Ulimits"]
    assert (b["HostConfig"]["Memory"], b["HostConfig"]["NanoCpus"]) == (0, 0)


def test_detach_is_read_from_the_options_when_not_given() -> None:
    b = build_create({"image": "a", "detach": True, "interactive": True}, environ={}, cwd="/").body
    assert (b["AttachStdin"], b["AttachStdout"], b["StdinOnce"]) == (False, False, False)
    assert build_create({"image": "a"}, for_run=False, environ={}, cwd="/").body["AttachStdout"]


def test_expose_takes_the_container_port_of_a_mapping() -> None:
    assert body(expose=("127.0.0.1:8080:90", "7000-7001"))["ExposedPorts"] == {
        "90/tcp": {}, "7000/tcp": {}, "7001/tcp": {}}
    assert body(expose=("90",))["HostConfig"]["PortBindings"] == {}
