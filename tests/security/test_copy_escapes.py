"""``cp`` and volume copy-up against a container that wants out (CVE-2018-15664, CVE-2019-14271).

rctrd runs with the user's rights, so what a hostile container would like to
reach through it is the user's own files on the host: here canary files in
a directory of the user's (``home/canary`` under the test's base), outside
every container root.  Each test checks from the host, as root, that none
was read into an archive, written, or added to.

* The race: a container swaps path components between real directories and
  symlinks to ``/`` as fast as busybox can, in three loops at once, while a
  client as the user makes hundreds of archive requests (GET and PUT through
  the swapped components, and entries through them) and the docker CLI
  copies both ways.  ``tests/integration/test_cp.py`` races one ``mv -T``
  loop for 40 rounds; this is the sustained version, with ``/`` as target
  (the CVE's own trick: the host's path below it repeated inside, so a
  resolution that follows the link on the host lands on the canary).
* Nothing from the container is run or loaded by a copy: the container
  plants a ``tar``, an ``nsswitch.conf`` naming its own NSS module (a real
  shared object with a constructor when a C compiler is around), an
  ``ld.so.preload``; ``cp`` with and without ``-a`` must leave no marker, and
  no rctr process on the host may have a file of the container mapped.
* Copy-up: an image whose ``VOLUME`` directories hold symlinks out (absolute,
  ``../../..``, to the canary) or are such symlinks themselves; the volumes
  rctrd fills at create get the links as links and nothing of the host.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import testimage
from daemonenv import IMAGE, RctrUser, detached, ok

pytestmark = [pytest.mark.integration,
              pytest.mark.requires("root", "user", "userns", "subuid", "newuidmap")]

SECRET = "canary: the user's host secret, never in an archive\n"
ORIGINAL = "canary: the user's host file, never overwritten\n"
HOSTILE = "rctr-test/hostile:latest"


class Canary:
    """The user's files on the host that no copy may read or touch."""

    def __init__(self, rc: RctrUser, name: str) -> None:
        self.dir = rc.shell.base / "home" / name
        self.dir.mkdir(parents=True)
        for d in (self.dir.parent, self.dir):
            os.chown(d, rc.shell.uid, rc.shell.gid)
        self.secret, self.victim = self.dir / "secret", self.dir / "victim"
        self.secret.write_text(SECRET)
        self.victim.write_text(ORIGINAL)
        for f in (self.secret, self.victim):
            os.chown(f, rc.shell.uid, rc.shell.gid)
        self.before = self._state()

    def _state(self) -> dict[str, object]:
        return {"names": sorted(os.listdir(self.dir)), "victim": self.victim.read_text(),
                "secret": self.secret.read_text(), "dir_mtime": os.stat(self.dir).st_mtime_ns,
                "victim_mtime": os.stat(self.victim).st_mtime_ns}

    def check(self) -> None:
        assert self._state() == self.before

    @property
    def rel(self) -> str:
        """The canary directory's host path without its leading ``/``."""
        return str(self.dir).lstrip("/")


# ==============================================================================================
# CVE-2018-15664: symlinks swapped while the copies run
# ==============================================================================================

# The container: decoys at the canary's path inside (where a correct resolution lands),
# and three swapping loops; /race/count says how many swaps the first one made.
_RACER = r"""
H="$1"
mkdir -p /race/d1/$H /race/d2/$H /race/d3/$H /$H
for d in /race/d1/$H /race/d2/$H /race/d3/$H /$H; do
  echo 'decoy inside' > $d/secret; echo 'decoy inside' > $d/victim
done
ln -sfn / /race/l1
(n=0; while :; do mv -T /race/d1 /race/x; mv -T /race/x /race/d1; mv -T /race/l1 /race/x
   mv -T /race/x /race/l1; n=$((n+1))
   [ $((n % 50)) = 0 ] && echo $n > /race/count.new && mv /race/count.new /race/count; done) &
(while :; do ln -sfn / /race/y; ln -sfn d2 /race/y; done) &
(while :; do ln -sfn ../../../../../../../../.. /race/d3/up; rm -f /race/d3/up
   mkdir /race/d3/up; rmdir /race/d3/up; done) &
wait
"""

# As the user: as many archive requests as fit in the time, each on a connection of its own.
_CLIENT = r"""
import http.client, io, json, socket, sys, tarfile, time
sock, cid, secret, seconds = sys.argv[1], sys.argv[2], sys.argv[3].encode(), float(sys.argv[4])
reads, writes = json.loads(sys.argv[5])
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(sock)
def req(method, path, body=None):
    c = C("localhost")
    c.request(method, path, body=body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data
def tar(names):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 10
            t.addfile(info, io.BytesIO(b"raced in!\n"))
    return buf.getvalue()
out = {"rounds": 0, "requests": 0, "leaks": [], "status": {}, "inside": 0}
end = time.monotonic() + seconds
while time.monotonic() < end:
    for path in reads:
        st, data = req("GET", f"/containers/{cid}/archive?path={path}")
        out["status"][str(st)] = out["status"].get(str(st), 0) + 1
        if secret in data:
            out["leaks"].append(path)
        out["inside"] += b"decoy inside" in data
    for path, names in writes:
        st, _ = req("PUT", f"/containers/{cid}/archive?path={path}", tar(names))
        out["status"][str(st)] = out["status"].get(str(st), 0) + 1
    out["requests"] += len(reads) + len(writes)
    out["rounds"] += 1
print(json.dumps(out))
"""


@pytest.mark.timeout(300)
def test_sustained_symlink_swap_race_against_cp(rc: RctrUser) -> None:
    canary = Canary(rc, "race")
    h = canary.rel
    with detached(rc, "racer", IMAGE, "sh", "-c", _RACER, "sh", h) as cid:
        rc.wait_for(lambda: rc.rctr("exec", "racer", "test", "-e", "/race/count").returncode == 0,
                    what="the racer to swap")
        reads = [f"/race/x/{h}/secret", f"/race/y/{h}/secret", f"/race/x/{h}/", f"/race/y/{h}",
                 f"/race/x/{h}/.", f"/race/d3/up/{h}/secret", "/race/x", "/race/"]
        writes = [[f"/race/x/{h}", ["victim", "planted"]], [f"/race/y/{h}", ["victim"]],
                  ["/race/x", [f"{h}/victim", f"{h}/planted"]], ["/race/y", [f"{h}/victim"]],
                  [f"/race/d3/up/{h}", ["victim"]]]
        r = rc.shell.run([sys.executable, "-c", _CLIENT, str(rc.socket), cid, SECRET.strip(),
                          "45", json.dumps([reads, writes])], env=rc.env(), timeout=120)
        got = json.loads(ok(r).stdout)
        assert got["leaks"] == [], got
        canary.check()
        # The race was real: many requests, some resolved (to the decoys inside), and
        # some found a component missing or swapped mid-way.
        assert got["requests"] >= 300, got
        assert got["inside"] > 0 and set(got["status"]) - {"200"}, got
        # The stock docker CLI as well: stat, then GET or PUT, so a wider window.
        payload = rc.shell.base / "payload" / "victim"
        payload.parent.mkdir()
        payload.write_text("written by docker cp\n")
        for p in (payload.parent, payload):
            os.chown(p, rc.shell.uid, rc.shell.gid)
        out = rc.shell.base / "payload" / "out"
        for i in range(15):
            src = ("x", "y")[i % 2]
            rc.docker("cp", f"racer:/race/{src}/{h}/secret", str(out))
            if out.is_file() and not out.is_symlink():
                assert SECRET not in out.read_text()
            rc.shell.run(["rm", "-rf", str(out)])
            rc.docker("cp", str(payload), f"racer:/race/{src}/{h}/victim")
            rc.docker("cp", str(payload.parent) + "/.", f"racer:/race/{src}/{h}")
            r = rc.docker("cp", f"racer:/race/{src}/{h}", "-")
            assert SECRET.encode() not in r.stdout.encode(errors="surrogateescape")
        canary.check()
        swaps = int(ok(rc.rctr("exec", "racer", "cat", "/race/count")).stdout)
        assert swaps >= 50, swaps
        # Whatever went in, went into the container: its decoys took the writes.
        inside = ok(rc.rctr("exec", "racer", "sh", "-c", f"cat /race/d1/{h}/victim "
                                                         f"/race/d2/{h}/victim /{h}/victim 2>/dev/null; true")).stdout
        assert "raced in!" in inside or "written by docker cp" in inside, inside
        print(f"copy race: {got['requests']} archive requests ({got['inside']} resolved inside) "
              f"and 15 rounds of docker cp both ways against {swaps} swaps; no leak")


# ==============================================================================================
# CVE-2019-14271: nothing of the container is executed or loaded by a copy
# ==============================================================================================

_CONSTRUCTOR = r"""
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void planted(void) {
    int fd = open("/pwned-by-nss", O_CREAT | O_WRONLY, 0644);
    if (fd >= 0) close(fd);
    fd = open(HOST_MARKER, O_CREAT | O_WRONLY, 0644);
    if (fd >= 0) close(fd);
}
"""


def _planted_library(rc: RctrUser, host_marker: Path) -> tuple[Path, bool]:
    """A shared object whose constructor leaves markers; (path, whether it has one).

    Without a C compiler, a copy of the host's own NSS module stands in: loading it
    leaves no marker, but it would show in a process's maps.
    """
    out = rc.shell.base / "planted.so"
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        src = rc.shell.base / "planted.c"
        src.write_text(_CONSTRUCTOR)
        subprocess.run([cc, "-shared", "-fPIC", f'-DHOST_MARKER="{host_marker}"', "-o", str(out),
                        str(src)], check=True, capture_output=True, timeout=60)
        has_constructor = True
    else:
        host = Path("/lib") / f"{os.uname().machine}-linux-gnu" / "libnss_files.so.2"
        shutil.copy(host, out)
        has_constructor = False
    os.chmod(out, 0o755)
    return out, has_constructor


def _host_processes(rc: RctrUser) -> list[int]:
    """The user's processes in the host's pid namespace (rctrd, shims, pause, zygote)."""
    host_ns = os.readlink("/proc/self/ns/pid")
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid == rc.shell.uid and \
                    os.readlink(f"/proc/{entry}/ns/pid") == host_ns:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def _mapped_from(pids: list[int], roots: list[str]) -> list[str]:
    found = []
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and any(fields[5].startswith(r) for r in roots):
                found.append(f"{pid}: {fields[5]}")
            elif len(fields) == 6 and ("planted" in fields[5] or "pwn" in fields[5]):
                found.append(f"{pid}: {fields[5]}")
    return found


@pytest.mark.timeout(240)
def test_cp_never_runs_or_loads_the_containers_code(rc: RctrUser) -> None:
    markers = rc.shell.base / "markers"
    markers.mkdir()
    os.chmod(markers, 0o777)
    host_marker = markers / "loaded-on-the-host"
    lib, has_constructor = _planted_library(rc, host_marker)
    trap = ("#!/bin/sh\ntouch /pwned-by-exec 2>/dev/null\n"
            f"touch {markers}/executed-on-the-host 2>/dev/null\nexec /bin/busybox \"$@\"\n")
    arch_dir = f"/lib/{os.uname().machine}-linux-gnu"
    with detached(rc, "planter", IMAGE, "sleep", "600") as cid:
        ok(rc.rctr("exec", "planter", "sh", "-c",
                   f"mkdir -p {arch_dir} /usr/lib /lib64 /etc /srv/tree && "
                   "echo data > /srv/tree/f && chown 1000:1000 /srv/tree/f"))
        for dest in (f"{arch_dir}/libnss_files.so.2", f"{arch_dir}/libnss_rctrpwn.so.2",
                     "/lib/libnss_files.so.2", "/lib64/libnss_compat.so.2",
                     "/usr/lib/libnss_rctrpwn.so.2"):
            ok(rc.rctr("cp", str(lib), f"planter:{dest}"))
        planted = rc.shell.base / "planted"
        planted.mkdir()
        (planted / "nsswitch.conf").write_text("passwd: rctrpwn files\ngroup: rctrpwn files\n"
                                               "hosts: rctrpwn files\n")
        (planted / "ld.so.preload").write_text(f"{arch_dir}/libnss_rctrpwn.so.2\n")
        (planted / "tar").write_text(trap)
        for f in planted.iterdir():
            os.chmod(f, 0o755)
        for name in ("nsswitch.conf", "ld.so.preload"):
            ok(rc.rctr("cp", str(planted / name), f"planter:/etc/{name}"))
        # Busybox's own tar and cp replaced by the trap (the image's applets are symlinks).
        for dest in ("/bin/tar", "/usr/bin/tar", "/bin/cp", "/bin/getent"):
            ok(rc.rctr("cp", str(planted / "tar"), f"planter:{dest}"))
        # Every kind of copy, both ways, with and without -a (the CVE's lookups of names).
        got = rc.shell.base / "got"
        got.mkdir()
        os.chown(got, rc.shell.uid, rc.shell.gid)
        upload = rc.shell.base / "upload.txt"
        upload.write_text("in\n")
        os.chown(upload, rc.shell.uid, rc.shell.gid)
        for tool in (rc.docker, rc.rctr):
            for a in ((), ("-a",)):
                ok(tool("cp", *a, "planter:/srv/tree", str(got / f"t{len(a)}")))
                ok(tool("cp", *a, "planter:/etc/passwd", str(got / f"p{len(a)}")))
                ok(tool("cp", *a, str(upload), "planter:/srv/"))
                ok(tool("cp", *a, str(upload), f"planter:{arch_dir}/"))
        assert rc.api("HEAD", "/containers/planter/archive?path=/etc/passwd")[0] == 200
        assert rc.api("GET", f"/containers/{cid}/json")[0] == 200
        assert (got / "t1" / "f").read_text() == "data\n"
        # No marker: not inside the container (as its busybox sees it), not on the host.
        r = ok(rc.rctr("exec", "planter", "/bin/busybox", "ls", "-a", "/"))
        assert "pwned" not in r.stdout, r.stdout
        assert list(markers.iterdir()) == []
        # And no host-side rctr process holds a file of the container's mapped.
        data = str(rc.data / "rctr")
        assert _mapped_from(_host_processes(rc), [data]) == []
    # The planted library really would have left a marker when loaded (the check above
    # means something): load it here, as the user, outside any container.
    if has_constructor:
        rc.shell.run([sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(lib)!r})"],
                     check=True)
        assert host_marker.exists()


# ==============================================================================================
# Volume copy-up from a hostile image
# ==============================================================================================

def _hostile_layout(out: Path, canary: Canary) -> None:
    """The test image plus a layer of symlinks out, with three VOLUMEs over them."""
    # Relative links climb exactly to the root (the store refuses a layer whose links
    # climb above it), then down to the canary's path: on the host, beside a volume's
    # _data, the same text would lead somewhere else entirely.
    E, rel = testimage.Entry, canary.rel
    entries = [
        E("data", "dir", 0o755),
        E("data/real.txt", "file", 0o644, data=b"from the image\n"),
        E("data/sub", "dir", 0o755),
        E("data/sub/deep.txt", "file", 0o600, 1000, 1000, b"deep\n"),
        E("data/etc-abs", "symlink", 0o777, target="/etc"),
        E("data/passwd-abs", "symlink", 0o777, target="/etc/passwd"),
        E("data/up", "symlink", 0o777, target=".."),
        E("data/sub/up", "symlink", 0o777, target="../.."),
        E("data/canary-abs", "symlink", 0o777, target=str(canary.dir)),
        E("data/secret-abs", "symlink", 0o777, target=str(canary.secret)),
        E("data/sub/canary-rel", "symlink", 0o777, target="../../" + rel),
        E("data/sub/secret-rel", "symlink", 0o777, target="../../" + rel + "/secret"),
        E("data/z-hard", "hardlink", target="data/real.txt"),  # after its target
        # A volume that is itself a symlink to the canary, absolute and relative.
        E("vol-abs", "symlink", 0o777, target=str(canary.dir)),
        E("opt", "dir", 0o755),
        E("opt/vol-rel", "symlink", 0o777, target="../" + rel),
    ]
    base = testimage._build_image()
    extra = testimage._layer_tar(entries)
    tars = [*base.tars, extra]
    diff_ids = [*base.diff_ids, testimage._sha256(extra)]
    config = testimage._config(diff_ids)
    config["config"]["Volumes"] = {"/data": {}, "/vol-abs": {}, "/opt/vol-rel": {}}
    config["history"].append({"created": testimage.CREATED, "created_by": "hostile symlinks"})
    config_bytes = testimage._json_bytes(config)
    os.makedirs(out / "blobs" / "sha256")
    blobs = [testimage._gzip(t) for t in tars]
    for b in [*blobs, config_bytes]:
        testimage._write_blob(str(out), b)
    manifest = testimage._json_bytes({
        "schemaVersion": 2, "mediaType": testimage.MT_MANIFEST,
        "config": testimage._descriptor(testimage.MT_CONFIG, config_bytes),
        "layers": [testimage._descriptor(testimage.MT_LAYER_GZIP, b) for b in blobs]})
    testimage._write_blob(str(out), manifest)
    index = {"schemaVersion": 2, "mediaType": testimage.MT_INDEX,
             "manifests": [{**testimage._descriptor(testimage.MT_MANIFEST, manifest),
                            "annotations": {testimage.REF_NAME: "latest"}}]}
    (out / "index.json").write_bytes(testimage._json_bytes(index))
    (out / "oci-layout").write_bytes(testimage._json_bytes({"imageLayoutVersion": "1.0.0"}))


@pytest.fixture
def hostile_image(rc: RctrUser) -> Iterator[Canary]:
    canary = Canary(rc, "copyup")
    base = Path(tempfile.mkdtemp(prefix="rctr-hostile-"))
    try:
        _hostile_layout(base / "oci", canary)
        for dirpath, _dirnames, filenames in os.walk(base):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o644)
        rc.load_image(str(base / "oci"), name=HOSTILE)
        yield canary
    finally:
        shutil.rmtree(base, ignore_errors=True)
        rc.rctr("rmi", "-f", HOSTILE)


def _tree(path: Path) -> dict[str, str]:
    """Every entry under ``path``: a link as ``-> target``, a file as its digest."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(path))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            else:
                out[rel] = "dir"
    return out


@pytest.mark.timeout(180)
def test_volume_copy_up_keeps_the_images_links_as_links(rc: RctrUser, hostile_image: Canary) -> None:
    canary = hostile_image
    vols = {"/data": "cu-data", "/vol-abs": "cu-abs", "/opt/vol-rel": "cu-rel"}
    flags = [f for dest, name in vols.items() for f in ("-v", f"{name}:{dest}")]
    try:
        # The container reads through its links: each resolves inside the container.
        out = ok(rc.rctr("run", "--rm", *flags, HOSTILE, "sh", "-c",
                         "cat /data/real.txt /data/z-hard; cat /data/secret-abs /data/sub/secret-rel "
                         "2>&1; ls /vol-abs /opt/vol-rel; cat /data/passwd-abs")).stdout
        assert SECRET not in out and "from the image\n" * 2 in out
        assert "user:x:1000:1000::/home/user:/bin/sh" in out  # the image's passwd
        volumes = rc.data / "rctr" / "volumes"
        data = _tree(volumes / "cu-data" / "_data")
        digest = hashlib.sha256(b"from the image\n").hexdigest()[:16]
        rel = canary.rel
        assert data == {
            "real.txt": digest, "z-hard": digest, "sub": "dir",
            "sub/deep.txt": hashlib.sha256(b"deep\n").hexdigest()[:16],
            "etc-abs": "-> /etc", "passwd-abs": "-> /etc/passwd", "up": "-> ..", "sub/up": "-> ../..",
            "canary-abs": f"-> {canary.dir}", "secret-abs": f"-> {canary.secret}",
            "sub/canary-rel": f"-> ../../{rel}", "sub/secret-rel": f"-> ../../{rel}/secret",
        }, data
        # Owners came along shifted (1000 in the image is the user's subordinate id),
        # and the hard link stayed one.
        deep = os.stat(volumes / "cu-data" / "_data" / "sub" / "deep.txt")
        assert deep.st_uid == rc.shell.host_uid(1000)
        real = volumes / "cu-data" / "_data" / "real.txt"
        assert os.stat(real).st_ino == os.stat(volumes / "cu-data" / "_data" / "z-hard").st_ino
        # A volume whose mount point is a link out got nothing of what is behind it.
        for name in ("cu-abs", "cu-rel"):
            assert _tree(volumes / name / "_data") == {}, name
        # Nothing anywhere under the volumes holds the secret; the canary is untouched.
        for dirpath, _dirs, files in os.walk(volumes):
            for f in files:
                p = Path(dirpath) / f
                if not p.is_symlink():
                    assert SECRET.encode() not in p.read_bytes(), p
        canary.check()
        # The container writing through the links writes inside itself.
        ok(rc.rctr("run", "--rm", *flags, HOSTILE, "sh", "-c",
                   "echo inside > /data/secret-abs; echo inside > /data/sub/secret-rel; "
                   "mkdir -p /data/canary-abs && echo inside > /data/canary-abs/victim; true"))
        canary.check()
    finally:
        for name in vols.values():
            rc.rctr("volume", "rm", "-f", name)
