"""Containers: dockerd's create, start, stop, kill, wait, remove — and their supervisor.

Each container is a ``Record`` (``_record``) in ``<datadir>/containers/ID/config.json``,
written atomically on every change.  A record exists only once everything create
makes exists; remove deletes the record first, so a crash in between leaves things
that ``reconcile`` collects, never a half container.

A running container has a shim (``_shimctl``) and a monitor thread that waits
for its exit FIFO, then records the exit, cleans up and applies the restart
policy or ``--rm``.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import signal
import threading
import time
from typing import Any, Callable

from rctr import netstack
from rctr.core import cgroups, linux
from rctr.core.atomic import write_json_atomic
from rctr.core.errors import Conflict, InvalidArgument, NotFound, RctrError
from rctr.core.securejoin import secure_join

from . import _mounts, _network
from ._events import Events
from ._logs import format_time
from ._names import check_name, random_name
from ._networks import Networks, bridge_name
from ._paths import DaemonPaths
from ._record import ZERO_TIME, Endpoint, Record, State, from_disk, to_disk
from ._runtimes import OCIRuntime
from ._shimctl import Shim, Zygote
from ._spec import DEFAULT_SHM_SIZE, build_spec, check_config, command_of, resources_of
from ._volumes import Volumes

__all__ = ["Container", "Containers", "ZERO_TIME"]

ATTACH_CONNECT_SECONDS = 30  # how long a start waits for an attach that is connecting

_RESTART_POLICIES = ("", "no", "always", "on-failure", "unless-stopped")


class NotRunning(Conflict):
    pass


class Container:
    """A record with the locks and conditions the API calls wait on."""

    def __init__(self, record: Record) -> None:
        self.record = record
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.exits = 0              # how many exits were seen (for wait next-exit)
        self.removed = False
        self.pending_attaches: list[dict[str, threading.Event]] = []
        self.monitor_stop = threading.Event()
        self.starting = False
        # Its exec instances, by id (inspect's ExecIDs).  Kept in memory only and dropped
        # when the container stops, as Docker does: a long-lived daemon must not hold
        # every exec ever made.
        self.execs: dict[str, Any] = {}

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def state(self) -> State:
        return self.record.state

    def running(self) -> bool:
        return self.record.state.running


class Containers:
    def __init__(self, paths: DaemonPaths, store: Any, volumes: Volumes, events: Events,
                 runtime: OCIRuntime, driver: str, init_path: str | None = None,
                 zygote: Zygote | None = None, delegation: cgroups.Delegation | None = None,
                 networks: Networks | None = None, default_network: str | None = None) -> None:
        self.paths = paths
        # The configured default network: written into the record of a create that names
        # none, so that a later change of the setting leaves existing containers alone.
        self.default_network = default_network
        self.store = store
        self.volumes = volumes
        self.events = events
        self.runtime = runtime
        self.driver = driver
        self.init_path = init_path
        self.zygote = zygote
        self.delegation = delegation  # where container cgroups go; None: limits not enforced
        self.networks = networks or Networks(paths.networks)
        self.reserved: dict[str, set[str]] = {}  # network id -> addresses of starts under way
        self.lock = threading.RLock()
        self.by_id: dict[str, Container] = {}
        # Called after a start and after an exit is recorded (healthchecks plug in here).
        self.start_hooks: list[Callable[[Container], None]] = []
        self.exit_hooks: list[Callable[[Container], None]] = []
        # Names of the containers that reconcile found running with no shim left.
        self.lost_at_start: list[str] = []

    # -- lookup ------------------------------------------------------------------------------

    def get(self, ref: str) -> Container:
        """By full id, unique id prefix or name (Docker's order)."""
        with self.lock:
            if ref in self.by_id:
                return self.by_id[ref]
            name = ref.lstrip("/")
            for c in self.by_id.values():
                if c.name == name:
                    return c
            matches = [c for i, c in self.by_id.items() if i.startswith(ref)] if ref else []
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def all(self) -> list[Container]:
        with self.lock:
            return list(self.by_id.values())

    def exec_instance(self, exec_id: str) -> Any:
        """The exec instance ``exec_id`` of whichever container holds it, or None."""
        with self.lock:
            for c in self.by_id.values():
                inst = c.execs.get(exec_id)
                if inst is not None:
                    return inst
        return None

    def names(self) -> set[str]:
        with self.lock:
            return {c.name for c in self.by_id.values()}

    def _save(self, c: Container) -> None:
        write_json_atomic(os.path.join(self.paths.container_dir(c.id), "config.json"),
                          to_disk(c.record), 0o600)

    def _event(self, c: Container, action: str, **extra: str) -> None:
        attrs = {"name": c.name, "image": c.record.config.get("Image", "")}
        attrs.update(c.record.config.get("Labels") or {})
        attrs.update(extra)
        self.events.emit("container", action, c.id, attrs)

    # -- create ------------------------------------------------------------------------------

    def create(self, body: dict[str, Any], name: str | None,
               platform: str | None = None) -> tuple[Container, list[str]]:
        if not isinstance(body, dict):
            raise InvalidArgument("the request body must be a JSON object")
        _network.resolve_default(body, self.default_network)
        image_ref = body.get("Image")
        if not image_ref or not isinstance(image_ref, str):
            raise InvalidArgument("Config.Image is required: which image should the container run?")
        host = body.get("HostConfig") or {}
        if not isinstance(host, dict):
            raise InvalidArgument("HostConfig must be an object")
        warnings = self._check_host_config(host)
        if not host.get("ShmSize"):
            host["ShmSize"] = DEFAULT_SHM_SIZE  # inspect shows the size /dev/shm gets, as Docker's
        try:
            image = self.store.images.get(image_ref)
        except NotFound:
            raise NotFound(f"No such image: {image_ref}") from None
        image_config = self._image_config(image)
        config = self._merged_config(body, image_config)
        warnings += _network.check(host, config, self.networks.exists)
        user_networks = self._endpoints_of(host, body.get("NetworkingConfig"))
        check_config(config, host)
        path_args = command_of(image_config, config)
        container_id = secrets.token_hex(32)
        with self.lock:
            taken = self.names()
            if name:
                name = check_name(name)
                if name in taken:
                    other = next(c for c in self.by_id.values() if c.name == name)
                    raise Conflict(f'Conflict. The container name "/{name}" is already in use by '
                                   f'container "{other.id}". You have to remove (or rename) that '
                                   "container to be able to reuse that name.")
            else:
                name = random_name(taken)
            # Reserve the name now; the record lands only when everything exists.
            placeholder = Container(Record(id=container_id, name=name, placeholder=True))
            self.by_id[container_id] = placeholder
        config.setdefault("Hostname", container_id[:12])
        if not config.get("Hostname"):
            config["Hostname"] = container_id[:12]
        cdir = self.paths.container_dir(container_id)
        undo: list[Callable[[], None]] = []
        try:
            os.makedirs(cdir, mode=0o700)
            undo.append(lambda: shutil.rmtree(cdir, ignore_errors=True))
            mount = self.store.rw.create(container_id, image, self.driver)
            undo.append(lambda: self.store.rw.remove(container_id))
            mounts = _mounts.plan(host, image_config.get("Volumes"))
            anonymous = []
            for m in mounts:
                if m["Type"] == "volume":
                    if not m["Name"]:
                        vol = self.volumes.create(anonymous=True)
                        m["Name"] = vol["Name"]
                        anonymous.append(vol["Name"])
                        undo.append(lambda n=vol["Name"]: self.volumes.remove(n))
                    elif not self.volumes.exists(m["Name"]):
                        self.volumes.create(m["Name"])
                        undo.append(lambda n=m["Name"]: self.volumes.remove(n))
                    m["Source"] = self.volumes.data_path(m["Name"])
                    m["Driver"] = "local"
                    m["Propagation"] = ""
                elif m["Type"] == "bind":
                    _mounts.make_bind_source(m)
            record = self._record(container_id, name, body, host, config, image, image_ref,
                                  path_args, mounts, mount, anonymous)
            record.networks = user_networks
            record.network_settings = _network.cleared(record)
            c = Container(record)
            for fname in ("hostname", "hosts", "resolv.conf"):
                open(os.path.join(cdir, fname), "a").close()
            self._save(c)
        except BaseException:
            for step in reversed(undo):
                try:
                    step()
                except Exception:  # noqa: BLE001 - undo as much as possible
                    pass
            with self.lock:
                self.by_id.pop(container_id, None)
            raise
        with self.lock:
            self.by_id[container_id] = c
        self._event(c, "create")
        return c, warnings

    def _check_host_config(self, host: dict[str, Any]) -> list[str]:
        warnings = []
        policy = (host.get("RestartPolicy") or {}).get("Name") or ""
        if policy not in _RESTART_POLICIES:
            raise InvalidArgument(f"invalid restart policy {policy!r}: use no, always, "
                                  "on-failure[:N] or unless-stopped")
        if policy not in ("", "no") and host.get("AutoRemove"):
            raise InvalidArgument("conflicting options: cannot specify both --restart and --rm")
        warnings += unenforced_limits(host, self.delegation)
        log = host.get("LogConfig") or {}
        if log.get("Type") not in (None, "", "json-file", "local"):
            raise InvalidArgument(f"log driver {log.get('Type')!r} is not supported (json-file)")
        return warnings

    def _image_config(self, image: dict[str, Any]) -> dict[str, Any]:
        raw = json.loads(self.store.blobs.read(image["config"]))
        return raw.get("config") or {}

    @staticmethod
    def _merged_config(body: dict[str, Any], image_config: dict[str, Any]) -> dict[str, Any]:
        config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
        env = {}
        for item in (image_config.get("Env") or []) + (config.get("Env") or []):
            key, sep, value = item.partition("=")
            env[key] = item
        config["Env"] = list(env.values())
        if config.get("Entrypoint") is None:
            config["Entrypoint"] = image_config.get("Entrypoint")
            if not config.get("Cmd"):
                config["Cmd"] = image_config.get("Cmd")
        for key in ("WorkingDir", "User", "StopSignal"):
            if not config.get(key) and image_config.get(key):
                config[key] = image_config[key]
        labels = dict(image_config.get("Labels") or {})
        labels.update(config.get("Labels") or {})
        config["Labels"] = labels
        exposed = dict(image_config.get("ExposedPorts") or {})
        exposed.update(config.get("ExposedPorts") or {})
        config["ExposedPorts"] = exposed or None
        volumes = dict(image_config.get("Volumes") or {})
        volumes.update(config.get("Volumes") or {})
        config["Volumes"] = volumes or None
        image_check = image_config.get("Healthcheck") or {}
        if image_check:
            # Docker fills what the request leaves out (say, only --health-interval) from the image.
            merged = dict(image_check)
            merged.update({k: v for k, v in (config.get("Healthcheck") or {}).items() if v})
            config["Healthcheck"] = merged
        for key, default in (("Tty", False), ("OpenStdin", False), ("StdinOnce", False),
                             ("AttachStdin", False), ("AttachStdout", False),
                             ("AttachStderr", False), ("Domainname", ""), ("User", ""),
                             ("WorkingDir", "")):
            config.setdefault(key, default)
        return config

    def _record(self, container_id: str, name: str, body: dict[str, Any], host: dict[str, Any],
                config: dict[str, Any], image: dict[str, Any], image_ref: str, path_args: list[str],
                mounts: list[dict[str, Any]], rw_mount: dict[str, Any],
                anonymous: list[str]) -> Record:
        cdir = self.paths.container_dir(container_id)
        host = dict(host)
        host.setdefault("NetworkMode", "default")
        host.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
        host.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
        if not host["LogConfig"].get("Type"):
            host["LogConfig"]["Type"] = "json-file"
        host.setdefault("Binds", None)
        host.setdefault("AutoRemove", False)
        host.setdefault("Privileged", False)
        host.setdefault("ReadonlyRootfs", False)
        rw = self.store.rw.path(container_id)
        return Record(
            id=container_id, name=name, created=format_time(), path=path_args[0],
            args=path_args[1:], image=image["id"], image_ref=image_ref, driver=self.driver,
            runtime=self.runtime.name, config=config, host_config=host, mounts=mounts,
            network_settings=_network.empty_settings(host["NetworkMode"]),
            graph_driver={"Name": self.driver, "Data": {
                "MergedDir": rw_mount["destination"], "UpperDir": os.path.join(rw, "upper"),
                "WorkDir": os.path.join(rw, "work")}},
            resolv_conf_path=os.path.join(cdir, "resolv.conf"),
            hostname_path=os.path.join(cdir, "hostname"), hosts_path=os.path.join(cdir, "hosts"),
            log_path=os.path.join(cdir, f"{container_id}-json.log"),
            rw_mount=rw_mount, anonymous=anonymous)

    # -- start -------------------------------------------------------------------------------

    def start(self, ref: str) -> Container:
        c = self.get(ref)
        with c.lock:
            if c.removed or c.record.placeholder:
                raise NotFound(f"No such container: {ref}")
            if c.running():
                from ._http import NotModified

                raise NotModified()
            if c.starting:
                raise Conflict(f"container {c.id[:12]} is already starting")
            c.starting = True
        try:
            self._start(c)
        except BaseException as exc:
            with c.lock:
                # Attaches waiting for this start end now (their shim never came).
                for p in c.pending_attaches:
                    p["ready"].set()
                c.pending_attaches = []
                c.state.start_failed(str(exc), 127 if "not found" in str(exc) or
                                     "No such file" in str(exc) else
                                     126 if "ermission denied" in str(exc) else 128)
                self._cleanup_after_exit(c)
                self._save(c)
            if c.record.host_config.get("AutoRemove"):
                # Docker's daemon removes an --rm container whose start failed.
                threading.Thread(target=self._auto_remove, args=(c,), daemon=True).start()
            raise
        finally:
            with c.lock:
                c.starting = False
                c.changed.notify_all()
        return c

    def _start(self, c: Container) -> None:
        shim = Shim(self.paths.shim_dir(c.id))
        self._reset_shim_dir(c, shim)
        rootfs = self._mount_rootfs(c)
        links = self._allocate_links(c)
        try:
            net = _network.plan(c.record, shim.dir, _network.running_record(self.get), links,
                                self.paths.infra_netns)
            net.peers = self._peers_of(c, [link["network"] for link in links])
            _network.write_files(c.record, net)
            self._launch(c, shim, rootfs, net)
        finally:
            self._release_links(links)
        self._refresh_hosts([link["network"] for link in links])
        self._event(c, "start")
        self._monitor(c, shim)
        self._run_hooks(self.start_hooks, c)

    def _launch(self, c: Container, shim: Shim, rootfs: str, net: _network.NetPlan) -> None:
        for m in c.record.mounts:
            if m["Type"] == "volume" and not m.get("NoCopy"):
                try:
                    source = secure_join(rootfs, m["Destination"])
                except OSError:
                    continue
                self.volumes.copy_up(m["Name"], source)
        self._make_workdir(c, rootfs)
        image_config = self._image_config(self.store.images.get(c.record.image))
        cgroups_path, resources, cgroup = self._cgroup_of(c)
        spec = build_spec(c.record, image_config, rootfs,
                          {"hostname": c.record.hostname_path, "hosts": c.record.hosts_path,
                           "resolv.conf": c.record.resolv_conf_path},
                          _mounts.to_oci(c.record.mounts), self.init_path, cgroups_path, resources,
                          net.netns)
        bundle = shim.path("bundle")
        os.makedirs(bundle, mode=0o700, exist_ok=True)
        write_json_atomic(os.path.join(bundle, "config.json"), spec, 0o600, sync=False)
        config, host = c.record.config, c.record.host_config
        log_opts = (host.get("LogConfig") or {}).get("Config") or {}
        self.runtime.delete(c.id)  # a stale runtime state of an earlier run
        reply = shim.launch({
            "id": c.id, "bundle": bundle, "runtime": self.runtime.describe(),
            "tty": bool(config.get("Tty")), "stdin": bool(config.get("OpenStdin")),
            "stdin_once": bool(config.get("StdinOnce")),
            "log": {"path": c.record.log_path, "max_size": _size(log_opts.get("max-size")),
                    "max_file": int(log_opts.get("max-file") or 1)},
            "width": 80, "height": 24, "network": net.shim,
        }, self.zygote)
        pid = int(reply["pid"])
        # Whoever attached before start connects now, so no output is missed.
        with c.lock:
            pending, c.pending_attaches = c.pending_attaches, []
        for p in pending:
            p["ready"].set()
        for p in pending:
            # The attach only connects to a local socket and always says when it is done
            # (or failed); the bound is for a machine so loaded that its thread waits long
            # to run.  Starting before it connected would lose a fast command's output.
            p["connected"].wait(ATTACH_CONNECT_SECONDS)
        try:
            self.runtime.start(c.id)
        except BaseException:
            try:
                self.runtime.kill(c.id, signal.SIGKILL)
            except RctrError:
                pass
            raise
        with c.lock:
            c.state.started(pid)
            c.record.manually_stopped = False
            c.record.cgroup = cgroup
            c.record.network_settings = _network.settings(c.record, net, reply.get("network"))
            self._save(c)
            c.changed.notify_all()

    # -- user networks -----------------------------------------------------------------------

    def connect(self, ref: str, network: str, endpoint: dict[str, Any] | None = None) -> None:
        """``docker network connect``: on the network from the next start, at once if running."""
        c = self.get(ref)
        net = self.networks.get(network)
        endpoint = endpoint or {}
        mode = netstack.parse_mode(c.record.host_config.get("NetworkMode"))
        if mode["kind"] in ("host", "none", "container"):
            raise Conflict(f"container {c.name} is in the {mode['kind']} network mode: it cannot "
                           "join a user network")
        with c.lock:
            nets = c.record.networks
            if net["Name"] in nets:
                raise Conflict(f"endpoint with name {c.name} already exists in network "
                               f"{net['Name']}")
            wanted = _wanted_endpoint(net, endpoint)
            if c.running():
                self._plug(c, net["Name"], wanted, len(nets))
            nets[net["Name"]] = wanted
            if not c.running():
                c.record.network_settings = _network.cleared(c.record)
            self._save(c)
        self._refresh_hosts([net["Name"]])
        self.events.emit("network", "connect", net["Id"],
                         {"container": c.id, "name": net["Name"], "type": "bridge"})

    def _plug(self, c: Container, name: str, wanted: Endpoint, index: int) -> None:
        """Connect a running container: a veth now, through the link helper (the daemon
        has threads: no fork here)."""
        ifnames = {f"eth{i}" for i in range(16)} - {
            e.ifname for e in c.record.networks.values()}
        with self.lock:
            link = self._link(c, name, wanted, index)
        try:
            link["ifname"] = f"eth{index}" if f"eth{index}" in ifnames else min(ifnames)
            netns = c.record.network_settings.get("SandboxKey")
            if not netns:
                raise Conflict(f"container {c.name} has no network namespace of its own")
            netstack.attach_in_helper(self.paths.infra_netns, netns, _network.shim_links([link]))
        finally:
            self._release_links([link])
        wanted.ifname = link["ifname"]
        c.record.network_settings["Networks"][name] = {
            **_network.empty_settings(None, {name: wanted})["Networks"][name],
            "IPAddress": link["ip"], "IPPrefixLen": link["prefix"], "Gateway": link["gateway"]}

    def disconnect(self, ref: str, network: str, force: bool = False) -> None:
        c = self.get(ref)
        try:
            name = self.networks.get(network)["Name"]
        except NotFound:
            if not force:
                raise
            name = network
        with c.lock:
            nets = c.record.networks
            if name not in nets:
                raise NotFound(f"container {c.name} is not connected to network {name}")
            if c.running():
                netns = c.record.network_settings.get("SandboxKey")
                ifname = nets[name].ifname or f"eth{list(nets).index(name)}"
                if netns:
                    netstack.detach_in_helper(netns, ifname)
            del nets[name]
            c.record.network_settings["Networks"].pop(name, None)
            self._save(c)
        self._refresh_hosts([name])
        self.events.emit("network", "disconnect", network,
                         {"container": c.id, "name": name, "type": "bridge"})

    def _endpoints_of(self, host: dict[str, Any], networking: Any) -> dict[str, Endpoint]:
        """The user networks a new container is on: its mode's, and ``NetworkingConfig``'s."""
        wanted = dict((networking or {}).get("EndpointsConfig") or {}) \
            if isinstance(networking, dict) else {}
        mode = netstack.parse_mode(host.get("NetworkMode"))
        if mode["kind"] == "network":
            wanted.setdefault(str(mode["name"]), {})
        out = {}
        for ref, endpoint in wanted.items():
            if netstack.parse_mode(ref)["kind"] != "network":
                continue  # a mode (bridge, host, pasta, container:X...), not a user network
            net = self.networks.get(ref)
            out[net["Name"]] = _wanted_endpoint(net, endpoint if isinstance(endpoint, dict) else {})
        return out

    def _allocate_links(self, c: Container) -> list[dict[str, Any]]:
        """An address on each of the container's user networks, reserved until the start ends."""
        links = []
        with self.lock:
            try:
                for index, (name, endpoint) in enumerate(c.record.networks.items()):
                    links.append(self._link(c, name, endpoint, index))
                    endpoint.ifname = links[-1]["ifname"]
            except BaseException:
                self._release_links(links)
                raise
        return links

    def _link(self, c: Container, name: str, endpoint: Endpoint,
              index: int) -> dict[str, Any]:
        try:
            net = self.networks.get(endpoint.network_id or name)
        except NotFound:
            raise NotFound(f"network {name} not found: it was removed",
                           hint=f"disconnect the container from it (rctr network disconnect "
                                f"{name} {c.name})") from None
        taken = set(self.reserved.get(net["Id"], set()))
        for other in self.by_id.values():
            if other is not c and other.running():
                ip = ((other.record.network_settings.get("Networks") or {})
                      .get(net["Name"]) or {}).get("IPAddress")
                if ip:
                    taken.add(ip)
        ip = self.networks.allocate(net, taken, endpoint.ipv4_address or None)
        self.reserved.setdefault(net["Id"], set()).add(ip)
        cfg = net["IPAM"]["Config"][0]
        return {"network": net["Name"], "network_id": net["Id"], "bridge": bridge_name(net["Id"]),
                "gateway": cfg["Gateway"], "prefix": int(cfg["Subnet"].rsplit("/", 1)[1]),
                "ip": ip, "ifname": f"eth{index}", "mtu": _network.USER_NET_MTU,
                "internal": bool(net.get("Internal"))}

    def _release_links(self, links: list[dict[str, Any]]) -> None:
        with self.lock:
            for link in links:
                self.reserved.get(link["network_id"], set()).discard(link["ip"])

    def _peers_of(self, c: Container, names: list[str]) -> list[tuple[str, str]]:
        """(address, names) of the other running containers on the networks ``names``."""
        peers = []
        for other in self.all():
            if other is c or not other.running():
                continue
            for name in names:
                line = _network.hosts_line(other.record, name)
                if line is not None:
                    peers.append(line)
        return peers

    def _refresh_hosts(self, names: list[str]) -> None:
        """Rewrite the peer lines of /etc/hosts of every running container on ``names``."""
        if not names:
            return
        for other in self.all():
            mine = set(other.record.networks)  # user networks only: not bridge
            if other.running() and mine & set(names):
                try:
                    _network.rewrite_peers(other.record, self._peers_of(other, sorted(mine)))
                except OSError:
                    pass  # its files went with it: a remove under way

    def _cgroup_of(self, c: Container) -> tuple[str, dict[str, Any], str]:
        """(cgroupsPath, the resources it can enforce, its directory) in the delegated
        subtree, or empty ones: without delegation a container shares the shim's cgroup."""
        d = self.delegation
        if d is None:
            return "", {}, ""
        path = d.cgroups_path(c.id)
        return path, self._enforceable(c.record.host_config), cgroups.host_path(d.mount, path)

    def _enforceable(self, host: dict[str, Any]) -> dict[str, Any]:
        """The OCI resources of ``host`` that the delegated controllers enforce."""
        assert self.delegation is not None
        return cgroups.restrict(resources_of(host), self.delegation.controllers)

    @staticmethod
    def _run_hooks(hooks: list[Callable[[Container], None]], c: Container) -> None:
        for hook in hooks:
            try:
                hook(c)
            except Exception:  # noqa: BLE001 - a hook never breaks the lifecycle
                import traceback

                traceback.print_exc()

    def _reset_shim_dir(self, c: Container, shim: Shim) -> None:
        if shim.process() is not None:
            raise Conflict(f"container {c.id[:12]} still has a shim running")
        _drop_shim_dir(shim.dir)
        os.makedirs(shim.dir, mode=0o700)

    def _mount_rootfs(self, c: Container) -> str:
        target = c.record.rootfs
        if not os.path.ismount(target):
            from rctr.storage import perform_mount

            perform_mount(c.record.rw_mount)
        return target

    def _unmount_rootfs(self, c: Container) -> None:
        target = c.record.rootfs
        for _ in range(5):
            if not os.path.ismount(target):
                return
            try:
                linux.umount(target, linux.MNT_DETACH)
            except OSError:
                return

    @staticmethod
    def _make_workdir(c: Container, rootfs: str) -> None:
        workdir = c.record.config.get("WorkingDir")
        if workdir and workdir != "/":
            path = secure_join(rootfs, workdir)
            if not os.path.isdir(path):
                os.makedirs(path, mode=0o755, exist_ok=True)

    # -- attach before start ------------------------------------------------------------------

    def expect_attach(self, c: Container) -> dict[str, threading.Event] | None:
        """Make a start of the created container wait for an attach that is being set up.

        Call before answering the attach request: once the client has its answer it
        may send start at once, and a start that came first would run the container
        before anyone listened (a fast command's output would be lost).  None when the
        container runs already.  The caller sets the entry's ``connected`` event once it
        is connected to the shim, or has failed to: only then does the start go on.
        """
        with c.lock:
            if c.running():
                return None
            if c.removed:
                raise NotFound(f"No such container: {c.id}")
            pending = {"ready": threading.Event(), "connected": threading.Event()}
            c.pending_attaches.append(pending)
            return pending

    def wait_for_shim(self, c: Container, pending: dict[str, threading.Event] | None) -> Shim:
        """The shim to attach to, once the start that ``pending`` waits for has made it."""
        if pending is not None:
            while not pending["ready"].wait(1):
                if c.removed:
                    raise NotFound(f"No such container: {c.id}")
        return Shim(self.paths.shim_dir(c.id))

    # -- exit --------------------------------------------------------------------------------

    def _monitor(self, c: Container, shim: Shim) -> None:
        c.monitor_stop = threading.Event()

        def watch() -> None:
            reason = None
            while True:
                status = shim.wait_exit(c.monitor_stop, None if reason else lambda: _root_gone(c))
                if "broken" not in status:
                    break
                # The container cannot go on without its root: stop it, and say why.
                reason = status["broken"]
                try:
                    self.runtime.kill(c.id, signal.SIGKILL, all_processes=True)
                except RctrError:
                    pass
            if status.get("interrupted"):
                return
            if reason and not status.get("error"):
                status["error"] = reason
            self._on_exit(c, status)

        threading.Thread(target=watch, name=f"monitor-{c.id[:12]}", daemon=True).start()

    def _on_exit(self, c: Container, status: dict[str, Any]) -> None:
        with c.lock:
            if c.removed:
                return
            code = int(status.get("exit_code", 255))
            c.state.exited(code, status.get("finished_at") or format_time(),
                           status.get("error") or "")
            self._cleanup_after_exit(c)
            self._save(c)
            c.exits += 1
            c.changed.notify_all()
        self._event(c, "die", exitCode=str(code))
        self._run_hooks(self.exit_hooks, c)
        self._after_exit(c, code)

    def _cleanup_after_exit(self, c: Container) -> None:
        c.execs.clear()
        self.runtime.delete(c.id)
        self._unmount_rootfs(c)
        # The shim takes its network down; a shim that died leaves the namespace mounted.
        _drop_netns(self.paths.shim_dir(c.id))
        on = list(c.record.networks)
        c.record.network_settings = _network.cleared(c.record)
        self._refresh_hosts(on)

    def _after_exit(self, c: Container, code: int) -> None:
        host = c.record.host_config
        if host.get("AutoRemove"):
            threading.Thread(target=self._auto_remove, args=(c,), daemon=True).start()
            return
        policy = host.get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        if c.record.manually_stopped or name == "no":
            return
        if name == "on-failure":
            if code == 0:
                return
            limit = int(policy.get("MaximumRetryCount") or 0)
            if limit and c.record.restart_count >= limit:
                return
        delay = min(0.1 * (2 ** min(c.record.restart_count, 10)), 60.0)

        def restart() -> None:
            time.sleep(delay)
            with c.lock:
                if c.removed or c.running() or c.record.manually_stopped:
                    return
                c.record.restart_count += 1
                c.state.restarting()
                self._save(c)
            try:
                self.start(c.id)
                self._event(c, "restart")
            except Exception as exc:  # noqa: BLE001 - recorded; the policy tries again
                with c.lock:
                    c.state.restart_failed(str(exc))
                    self._save(c)
                self._after_exit(c, 128)

        threading.Thread(target=restart, name=f"restart-{c.id[:12]}", daemon=True).start()

    def _auto_remove(self, c: Container) -> None:
        try:
            self.remove(c.id, force=True, volumes=True)
        except NotFound:
            pass

    # -- stop, kill, restart -----------------------------------------------------------------

    def kill(self, ref: str, signum: int | str | None = None) -> None:
        c = self.get(ref)
        sig = _signal(signum) if signum not in (None, "") else signal.SIGKILL
        with c.lock:
            if not c.running():
                raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
            if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
                c.record.manually_stopped = sig == signal.SIGKILL or c.record.manually_stopped
        self.runtime.kill(c.id, sig, all_processes=False)
        self._event(c, "kill", signal=str(int(sig)))

    def stop(self, ref: str, timeout: int | None = None, signum: str | None = None) -> None:
        c = self.get(ref)
        with c.lock:
            if not c.running():
                from ._http import NotModified

                raise NotModified()
            c.record.manually_stopped = True
            self._save(c)
            exits = c.exits
        config = c.record.config
        sig = _signal(signum or config.get("StopSignal") or "SIGTERM")
        if timeout is None:
            timeout = config.get("StopTimeout")
            timeout = 10 if timeout is None else int(timeout)
        try:
            self.runtime.kill(c.id, sig)
        except RctrError:
            pass
        if timeout < 0 or not self._wait_exit(c, exits, timeout):
            try:
                self.runtime.kill(c.id, signal.SIGKILL, all_processes=True)
            except RctrError:
                pass
            self._wait_exit(c, exits, 30)
        self._event(c, "stop")

    def _wait_exit(self, c: Container, exits: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with c.lock:
            while c.exits == exits and c.running():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                c.changed.wait(min(left, 1.0))
        return True

    def restart(self, ref: str, timeout: int | None = None) -> None:
        c = self.get(ref)
        if c.running():
            self.stop(ref, timeout)
        self.start(c.id)
        self._event(c, "restart")

    # -- wait --------------------------------------------------------------------------------

    def wait_handle(self, ref: str, condition: str
                    ) -> Callable[[Callable[[], bool]], dict[str, Any] | None]:
        """Take the snapshot now (before the client's start); block later, until the
        condition holds (the result) or ``gone()`` says the client left (None)."""
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition {condition!r}: use not-running, next-exit or removed")
        c = self.get(ref)
        with c.lock:
            exits = c.exits

        def waiting() -> bool:
            if condition == "removed":
                return not c.removed
            if condition == "next-exit":
                return c.exits == exits and not c.removed
            return (c.running() or c.starting) and not c.removed

        def block(gone: Callable[[], bool]) -> dict[str, Any] | None:
            with c.lock:
                while waiting():
                    if gone():
                        return None  # no one to answer: the thread ends now, not at the exit
                    c.changed.wait(1.0)
                error = c.state.error or None
                return {"StatusCode": c.state.exit_code,
                        "Error": {"Message": error} if error else None}
        return block

    # -- remove ------------------------------------------------------------------------------

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        if c.record.placeholder:
            raise Conflict(f"container {ref} is being created")
        with c.lock:
            if c.removed:
                return
            if c.running() or c.starting:
                if not force:
                    raise Conflict(f"You cannot remove a running container {c.id}. Stop the "
                                   "container before attempting removal or force remove")
                c.record.manually_stopped = True
                exits = c.exits
        if force and c.running():
            try:
                self.runtime.kill(c.id, signal.SIGKILL, all_processes=True)
            except RctrError:
                pass
            self._wait_exit(c, exits, 30)
        with c.lock:
            if c.removed:
                return
            c.removed = True
            c.monitor_stop.set()
            c.state.removing()
            try:
                self._cleanup_after_exit(c)
            except Exception:  # noqa: BLE001 - removing anyway; reconcile collects the rest
                pass
            cdir = self.paths.container_dir(c.id)
            # The record goes first: from here the container does not exist.
            try:
                os.unlink(os.path.join(cdir, "config.json"))
            except FileNotFoundError:
                pass
            c.changed.notify_all()
        with self.lock:
            self.by_id.pop(c.id, None)
        self._collect(c.id, c.record.anonymous if volumes else [])
        self._event(c, "destroy")

    def _collect(self, container_id: str, volumes: list[str] | None) -> None:
        """Remove what a container owned, once its record is gone."""
        _end_shim(Shim(self.paths.shim_dir(container_id)))  # a remove cut short, mid-kill
        merged = os.path.join(self.store.rw.path(container_id), "merged")
        while os.path.ismount(merged):
            try:
                linux.umount(merged, linux.MNT_DETACH)
            except OSError:
                break
        try:
            self.store.rw.remove(container_id)
        except Exception:  # noqa: BLE001
            pass
        _drop_shim_dir(self.paths.shim_dir(container_id))
        shutil.rmtree(self.paths.container_dir(container_id), ignore_errors=True)
        for name in volumes or []:
            if not any(m.get("Name") == name for c in self.all() for m in c.record.mounts):
                try:
                    self.volumes.remove(name)
                except NotFound:
                    pass

    # Docker's update body: the restart policy and the resources (Docker's field names).
    UPDATABLE = ("RestartPolicy", "Memory", "MemorySwap", "MemoryReservation", "NanoCpus",
                 "CpuShares", "CpuPeriod", "CpuQuota", "CpusetCpus", "CpusetMems", "PidsLimit",
                 "BlkioWeight")

    def update(self, ref: str, body: dict[str, Any]) -> list[str]:
        """``docker update``: change the restart policy and resource settings; warnings back."""
        if not isinstance(body, dict):
            raise InvalidArgument("the request body must be a JSON object")
        c = self.get(ref)
        changes = {k: v for k, v in body.items() if k in self.UPDATABLE and v is not None}
        if isinstance(changes.get("RestartPolicy"), dict) and not changes["RestartPolicy"].get("Name"):
            del changes["RestartPolicy"]  # docker sends an empty policy when --restart is not given
        with c.lock:
            host = dict(c.record.host_config)
            policy = changes.get("RestartPolicy")
            if policy is not None:
                if not isinstance(policy, dict):
                    raise InvalidArgument("RestartPolicy must be an object")
                if (policy.get("Name") or "no") != "no" and host.get("AutoRemove"):
                    raise InvalidArgument("Restart policy cannot be updated because AutoRemove "
                                          "is enabled for the container")
            # Zero means "leave as is" in Docker's update body.
            host.update({k: v for k, v in changes.items() if v})
            warnings = self._check_host_config(
                {k: v for k, v in host.items() if k in changes or k == "RestartPolicy"})
            if c.running() and c.record.cgroup and self.delegation is not None:
                try:
                    cgroups.apply(c.record.cgroup, self._enforceable(host))
                except OSError as exc:
                    raise InvalidArgument(f"cannot update container {c.name}: {exc}") from None
            c.record.host_config = host
            self._save(c)
        self._event(c, "update")
        return warnings

    def rename(self, ref: str, new: str) -> None:
        c = self.get(ref)
        new = check_name(new)
        with self.lock:
            if new in self.names() and c.name != new:
                raise Conflict(f'Conflict. The container name "/{new}" is already in use')
            old = c.name
            with c.lock:
                c.record.name = new
                self._save(c)
        self._event(c, "rename", oldName="/" + old)

    # -- daemon start: adopt what runs, collect what is half-made -------------------------------

    def _restart_at_daemon_start(self, c: Container) -> None:
        """Docker's rule: an ``always`` container stopped by hand starts again when the
        daemon starts (``unless-stopped`` is the policy that stays stopped)."""
        policy = (c.record.host_config.get("RestartPolicy") or {}).get("Name")
        if policy == "always" and c.record.manually_stopped:
            c.record.manually_stopped = False
            self._after_exit(c, c.state.exit_code)

    def _end_cut_start(self, c: Container) -> None:
        """Undo a start that a dying daemon cut short, if there was one.

        The record of a stopped container is saved as running only once the start has
        done everything, so a shim, a mounted root or a network namespace beside a
        stopped record is the remains of a start whose caller never got an answer.  It
        ends, and the container stays stopped with an error that says why.
        """
        shim = Shim(self.paths.shim_dir(c.id))
        ended = _end_shim(shim)
        mounted = os.path.ismount(c.record.rootfs or "/nonexistent")
        if not ended and not mounted and not netstack.is_netns(shim.path("netns")):
            return
        self._cleanup_after_exit(c)
        if ended or shim.exit_status() is not None:
            c.state.error = "rctrd stopped while it was starting the container; start it again"
            self._save(c)

    def reconcile(self) -> dict[str, int]:
        counts = {"running": 0, "exited_meanwhile": 0, "collected": 0}
        os.makedirs(self.paths.containers, mode=0o700, exist_ok=True)
        for cid in sorted(os.listdir(self.paths.containers)):
            path = os.path.join(self.paths.containers, cid, "config.json")
            try:
                with open(path) as f:
                    record = from_disk(json.load(f))
            except (OSError, ValueError, KeyError, TypeError):
                self._collect(cid, [])
                counts["collected"] += 1
                continue
            c = Container(record)
            self.by_id[cid] = c
            if not c.running():
                self._end_cut_start(c)
                self._restart_at_daemon_start(c)
                continue
            shim = Shim(self.paths.shim_dir(cid))
            if shim.exit_status() is None and shim.process() is not None:
                counts["running"] += 1
                self._monitor(c, shim)
                self._run_hooks(self.start_hooks, c)
            else:
                counts["exited_meanwhile"] += 1
                status = shim.exit_status()
                if status is None:
                    self.lost_at_start.append(c.name)
                    status = {"exit_code": 255, "finished_at": format_time(),
                              "error": "the container was lost: its shim is gone, killed or "
                                       "ended with the user namespace it ran in (the pause "
                                       "process was killed, or the machine restarted)"}
                self._on_exit(c, status)
        # RW layers and shim dirs whose container has no record: a create or rm cut short.
        if os.path.isdir(self.store.rw.root):
            for cid in os.listdir(self.store.rw.root):
                if cid not in self.by_id:
                    self._collect(cid, [])
                    counts["collected"] += 1
        known = {cid[:32] for cid in self.by_id}
        if os.path.isdir(self.paths.shims):
            for short in os.listdir(self.paths.shims):
                if short not in known:
                    shim = Shim(os.path.join(self.paths.shims, short))
                    _end_shim(shim)
                    _drop_shim_dir(shim.dir)
                    counts["collected"] += 1
        return counts


# HostConfig field, the flag that sets it, the cgroup v2 controller that enforces it.
_LIMITS = (("Memory", "--memory", "memory"), ("MemoryReservation", "--memory-reservation", "memory"),
           ("NanoCpus", "--cpus", "cpu"), ("CpuQuota", "--cpu-quota", "cpu"),
           ("CpuShares", "--cpu-shares", "cpu"), ("PidsLimit", "--pids-limit", "pids"))


def unenforced_limits(host: dict[str, Any], delegation: cgroups.Delegation | None) -> list[str]:
    """A warning for each limit in ``host`` that no delegated controller can enforce."""
    out = []
    for key, flag, controller in _LIMITS:
        if not host.get(key) or (isinstance(host[key], int) and host[key] < 0):
            continue
        if delegation is None:
            out.append(f"{flag} is not enforced: no cgroup v2 subtree is delegated to this user "
                       "(see `rctr doctor`)")
        elif controller not in delegation.controllers:
            out.append(f"{flag} is not enforced: the {controller} controller is not enabled in "
                       f"the delegated cgroup {delegation.base} (see `rctr doctor`)")
    return out


def _size(value: str | None) -> int:
    if not value:
        return 0
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = str(value).strip().lower().rstrip("b")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise InvalidArgument(f"invalid log size {value!r}: use a number with k, m or g") from None


def _signal(value: int | str | None) -> signal.Signals:
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        try:
            return signal.Signals(int(value))  # type: ignore[arg-type]
        except ValueError:
            raise InvalidArgument(f"invalid signal: {value}") from None
    name = str(value).upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return signal.Signals[name]
    except KeyError:
        raise InvalidArgument(f"invalid signal: {value}") from None


def _wanted_endpoint(net: dict[str, Any], endpoint: dict[str, Any]) -> Endpoint:
    """What a container asks of its endpoint on ``net`` (from Docker's EndpointSettings)."""
    return Endpoint(net["Id"], [str(a) for a in endpoint.get("Aliases") or []],
                    (endpoint.get("IPAMConfig") or {}).get("IPv4Address") or "")


def _root_gone(c: Container) -> str | None:
    """Why the running container's root filesystem is unusable, if it is.

    A FUSE driver's root lives as long as its process: once that dies, every access
    fails with ENOTCONN, and the container with it.  A kernel mount cannot go so.
    """
    mount = c.record.rw_mount
    if mount.get("type") not in ("fuse-overlayfs", "fusepy"):
        return None
    try:
        os.statvfs(mount["destination"])  # a stat may be answered from cached attributes
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            return (f"the container's root filesystem is gone: its {mount['type']} process "
                    "died, so the container was stopped")
    return None


def _end_shim(shim: Shim) -> bool:
    """End a live shim and everything under it: its container (the init first, which
    takes the pid namespace with it), then, if it does not exit by itself, the shim.
    False if no shim ran."""
    proc = shim.process()
    if proc is None:
        return False
    init = shim.init()
    if init is not None:
        init.signal(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.alive():
        import psutil

        try:
            tree = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            tree = []
        for p in [psutil.Process(proc.pid), *tree]:
            try:
                p.kill()
            except psutil.Error:
                pass
    return True


def _drop_netns(shim_dir: str) -> None:
    path = os.path.join(shim_dir, "netns")
    if netstack.is_netns(path):
        netstack.remove_netns(path)


def _drop_shim_dir(shim_dir: str) -> None:
    """Remove a shim directory, with the network namespace a dead shim left mounted in it."""
    _drop_netns(shim_dir)
    shutil.rmtree(shim_dir, ignore_errors=True)
