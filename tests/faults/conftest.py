"""Fixtures of the faults suite: a bigger image, so that a kill can land mid-transfer."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from io import BytesIO

import pytest


def _blob(layout: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
    return "sha256:" + digest


def add_layer(src: str, out: str, files: dict[str, bytes], tag: str) -> str:
    """Copy the OCI layout ``src`` to ``out`` with one more layer holding ``files``,
    named ``tag``; returns ``out``."""
    shutil.copytree(src, out)
    buf = BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
            tar.addfile(info, BytesIO(data))
    raw = buf.getvalue()
    packed = gzip.compress(raw, compresslevel=1, mtime=0)
    with open(os.path.join(out, "index.json")) as f:
        index = json.load(f)
    desc = index["manifests"][0]
    with open(os.path.join(out, "blobs", "sha256", desc["digest"].split(":")[1])) as f:
        manifest = json.load(f)
    with open(os.path.join(out, "blobs", "sha256", manifest["config"]["digest"].split(":")[1])) as f:
        config = json.load(f)
    config["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(raw).hexdigest())
    config_raw = json.dumps(config).encode()
    manifest["config"] = {**manifest["config"], "digest": _blob(out, config_raw),
                          "size": len(config_raw)}
    manifest["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                               "digest": _blob(out, packed), "size": len(packed)})
    manifest_raw = json.dumps(manifest).encode()
    desc.update({"digest": _blob(out, manifest_raw), "size": len(manifest_raw)})
    desc.setdefault("annotations", {})["org.opencontainers.image.ref.name"] = tag
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f)
    for dirpath, _dirs, _files in os.walk(out):
        os.chmod(dirpath, 0o755)
    return out


@pytest.fixture(scope="session")
def big_image(test_image: str) -> Iterator[str]:
    """The test image plus a 24 MiB layer of incompressible bytes (pulls and loads take a while)."""
    base = tempfile.mkdtemp(prefix="rctr-big-image-")
    os.chmod(base, 0o755)
    yield add_layer(test_image, os.path.join(base, "oci"),
                    {"big/random.bin": os.urandom(24 << 20), "big/hello": b"big\n"}, "rctr-test/big:latest")
    shutil.rmtree(base, ignore_errors=True)
