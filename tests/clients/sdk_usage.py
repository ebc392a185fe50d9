"""The Docker SDK for Python (``docker`` on PyPI), used as its documentation shows.

Run as the unprivileged user with ``DOCKER_HOST`` at rctrd's socket:
``python sdk_usage.py IMAGE REGISTRY_REF``.  Prints one JSON object of what
each call returned; tests/integration/test_clients.py checks it.
"""

import io
import json
import sys
import tarfile

import docker

image, remote = sys.argv[1], sys.argv[2]
seen = {}
client = docker.from_env(timeout=60)
seen["ping"] = client.ping()
seen["api_version"] = client.api.api_version

# containers.run, not detached: the output as bytes; with remove=True nothing is left
seen["run"] = client.containers.run(image, ["echo", "hello", "world"], remove=True).decode()
try:
    client.containers.run(image, ["sh", "-c", "echo oops >&2; exit 3"], remove=True)
except docker.errors.ContainerError as exc:
    seen["run_error"] = {"exit_status": exc.exit_status, "stderr": exc.stderr.decode()}

# detached: a Container; logs(stream=True) yields lines as they come
container = client.containers.run(
    image, ["sh", "-c", "for i in 1 2 3; do echo line $i; done; sleep 60"],
    detach=True, name="sdk-detached", environment={"GREETING": "hi"}, labels={"from": "sdk"})
try:
    stream = container.logs(stream=True)
    seen["logs_stream"] = [next(stream).decode().strip() for _ in range(3)]
    result = container.exec_run("sh -c 'echo $GREETING from exec'")
    seen["exec_run"] = [result.exit_code, result.output.decode()]
    seen["exec_run_demux"] = container.exec_run(["sh", "-c", "echo out; echo err >&2; exit 5"],
                                                demux=True)
    seen["exec_run_demux"] = [seen["exec_run_demux"].exit_code,
                              [part.decode() for part in seen["exec_run_demux"].output]]

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        payload = b"put by the sdk\n"
        info = tarfile.TarInfo("sdk.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    seen["put_archive"] = container.put_archive("/tmp", buf.getvalue())
    chunks, stat = container.get_archive("/tmp/sdk.txt")
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        seen["get_archive"] = tar.extractfile("sdk.txt").read().decode()
    seen["get_archive_stat"] = {"name": stat["name"], "size": stat["size"]}

    container.reload()
    seen["status"] = container.status
    seen["labels"] = container.labels
    seen["listed"] = [c.name for c in client.containers.list(filters={"label": "from=sdk"})]
    container.kill()
    seen["wait"] = container.wait(timeout=30)
finally:
    container.remove(force=True)

# images: pull from the registry, load a saved archive
pulled = client.images.pull(remote)
seen["pulled_tags"] = pulled.tags
# by digest: the SDK escapes the "@" in the path (%40)
by_digest = client.images.get(pulled.attrs["RepoDigests"][0])
seen["by_digest"] = by_digest.id == pulled.id
archive = b"".join(client.images.get(image).save(named=True))
client.images.remove(remote)
loaded = client.images.load(archive)
seen["loaded_tags"] = [tag for img in loaded for tag in img.tags]

# volumes and networks
volume = client.volumes.create("sdk-vol", labels={"from": "sdk"})
network = client.networks.create("sdk-net", driver="bridge")
try:
    seen["volume"] = [volume.name, volume.attrs["Driver"]]
    seen["network"] = [network.name, network.attrs["Driver"]]
    out = client.containers.run(image, ["sh", "-c", "echo kept > /v/f; cat /v/f; hostname"],
                                volumes={"sdk-vol": {"bind": "/v", "mode": "rw"}},
                                network="sdk-net", hostname="sdk-host", remove=True)
    seen["run_volume_network"] = out.decode().split()
finally:
    network.remove()
    volume.remove()
seen["volumes_left"] = [v.name for v in client.volumes.list()]

print(json.dumps(seen))
