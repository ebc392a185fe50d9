"""The flags of ``run`` and ``create``, as one table, without click.

The table is the single source of the flags: ``_cmd_run`` turns it into click
options (help, ``--help``, errors), and ``_run_fastpath`` parses plain argument
lists with it, without importing click, on the start-up path of every container.
"""

from __future__ import annotations

# For the type checker only (start-up imports: see _run_fastpath).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CREATE_FLAGS", "FLAG", "INT", "MULTI", "RUN_FLAGS", "SWITCH", "VALUE", "Flag", "defaults"]

# Kinds of flag.
FLAG = "flag"          # --rm: True when given
VALUE = "value"        # --name X: the last one given
MULTI = "multi"        # -e X -e Y: a tuple, in order
INT = "int"            # --stop-timeout 5: an integer
SWITCH = "switch"      # --sig-proxy/--no-sig-proxy


class Flag:
    """One flag: the keyword it fills, its kind, its spellings."""

    __slots__ = ("dest", "kind", "names", "help", "default")

    def __init__(self, dest: str, kind: str, names: tuple[str, ...], help: str,
                 default: str | bool | None = None) -> None:
        self.dest, self.kind, self.names, self.help, self.default = dest, kind, names, help, default


def _f(dest: str, kind: str, *names: str, help: str, default: str | bool | None = None) -> Flag:
    return Flag(dest, kind, names, help, default)


CREATE_FLAGS: tuple[Flag, ...] = (
    _f("interactive", FLAG, "-i", "--interactive", help="Keep STDIN open even if not attached"),
    _f("tty", FLAG, "-t", "--tty", help="Allocate a pseudo-TTY"),
    _f("rm", FLAG, "--rm", help="Automatically remove the container when it exits"),
    _f("name", VALUE, "--name", help="Assign a name to the container"),
    _f("env", MULTI, "-e", "--env", help="Set environment variables"),
    _f("env_file", MULTI, "--env-file", help="Read in a file of environment variables"),
    _f("workdir", VALUE, "-w", "--workdir", help="Working directory inside the container"),
    _f("user", VALUE, "-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])"),
    _f("volume", MULTI, "-v", "--volume", help="Bind mount a volume"),
    _f("mount", MULTI, "--mount", help="Attach a filesystem mount to the container"),
    _f("tmpfs", MULTI, "--tmpfs", help="Mount a tmpfs directory"),
    _f("publish", MULTI, "-p", "--publish", help="Publish a container's port(s) to the host"),
    _f("publish_all", FLAG, "-P", "--publish-all", help="Publish all exposed ports to random ports"),
    _f("expose", MULTI, "--expose", help="Expose a port or a range of ports"),
    _f("network", VALUE, "--network", "--net", help="Connect a container to a network"),
    _f("network_alias", MULTI, "--network-alias", help="Add network-scoped alias for the container"),
    _f("hostname", VALUE, "-h", "--hostname", help="Container host name"),
    _f("entrypoint", VALUE, "--entrypoint", help="Overwrite the default ENTRYPOINT of the image"),
    _f("init", FLAG, "--init", help="Run an init inside the container"),
    _f("read_only", FLAG, "--read-only", help="Mount the container's root filesystem read only"),
    _f("restart", VALUE, "--restart", help="Restart policy (no, always, unless-stopped, on-failure[:N])"),
    _f("stop_signal", VALUE, "--stop-signal", help="Signal to stop the container"),
    _f("stop_timeout", INT, "--stop-timeout", help="Timeout (in seconds) to stop a container"),
    _f("cap_add", MULTI, "--cap-add", help="Add Linux capabilities"),
    _f("cap_drop", MULTI, "--cap-drop", help="Drop Linux capabilities"),
    _f("privileged", FLAG, "--privileged", help="Give extended privileges to this container"),
    _f("memory", VALUE, "-m", "--memory", help="Memory limit"),
    _f("cpus", VALUE, "--cpus", help="Number of CPUs"),
    _f("pids_limit", INT, "--pids-limit", help="Tune container pids limit (-1 for unlimited)"),
    _f("shm_size", VALUE, "--shm-size", help="Size of /dev/shm"),
    _f("ulimit", MULTI, "--ulimit", help="Ulimit options"),
    _f("sysctl", MULTI, "--sysctl", help="Sysctl options"),
    _f("add_host", MULTI, "--add-host", help="Add a custom host-to-IP mapping (host:ip)"),
    _f("dns", MULTI, "--dns", help="Set custom DNS servers"),
    _f("group_add", MULTI, "--group-add", help="Add additional groups to join"),
    _f("log_driver", VALUE, "--log-driver", help="Logging driver for the container"),
    _f("log_opt", MULTI, "--log-opt", help="Log driver options"),
    _f("security_opt", MULTI, "--security-opt", help="Security options"),
    _f("health_cmd", VALUE, "--health-cmd", help="Command to run to check health"),
    _f("health_interval", VALUE, "--health-interval", help="Time between running the check (ms|s|m|h)"),
    _f("health_timeout", VALUE, "--health-timeout",
       help="Maximum time to allow one check to run (ms|s|m|h)"),
    _f("health_retries", INT, "--health-retries",
       help="Consecutive failures needed to report unhealthy"),
    _f("health_start_period", VALUE, "--health-start-period",
       help="Start period for the container to initialize"),
    _f("no_healthcheck", FLAG, "--no-healthcheck", help="Disable any container-specified HEALTHCHECK"),
    _f("label", MULTI, "-l", "--label", help="Set meta data on a container"),
    _f("platform", VALUE, "--platform", help="Set platform if server is multi-platform capable"),
    _f("pull", VALUE, "--pull", default="missing",
       help='Pull image before running ("always", "missing", "never")'),
)

RUN_FLAGS: tuple[Flag, ...] = (
    _f("detach", FLAG, "-d", "--detach", help="Run container in background and print container ID"),
    _f("detach_keys", VALUE, "--detach-keys", help="Override the key sequence for detaching a container"),
    _f("sig_proxy", SWITCH, "--sig-proxy", "--no-sig-proxy", default=True,
       help="Proxy received signals to the process (non-TTY mode only)"),
) + CREATE_FLAGS


def defaults(flags: tuple[Flag, ...]) -> dict[str, Any]:
    """What click passes for flags not given."""
    out: dict[str, Any] = {}
    for f in flags:
        out[f.dest] = {FLAG: False, MULTI: ()}.get(f.kind, f.default)
    return out
