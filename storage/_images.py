"""The image index: which images the store holds, by id, and the names that point at them.

An image's id is its config digest (as with Docker).  The index is one JSON
file rewritten atomically; it is the last thing a pull or load writes, so an
image appears whole or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import NotRequired, TypedDict

from rctr.core.atomic import write_json_atomic
from rctr.core.errors import NotFound

from ._layout import StoreLayout
from ._reference import parse_reference

__all__ = ["ImageIndex", "ImageRecord", "LayerRef", "chain_ids"]


class LayerRef(TypedDict):
    """A layer of an image record: its blob, as the manifest's descriptor gives it."""

    digest: str
    mediaType: str
    size: int


class ImageRecord(TypedDict):
    """An image in the index (images.json), by id (its config digest)."""

    id: str
    manifest: str  # the manifest's digest
    config: str  # the config's digest
    layers: list[LayerRef]
    diff_ids: list[str]
    chain_ids: list[str]
    platform: str  # os/architecture
    created: str
    names: NotRequired[list[str]]  # set by ImageIndex.add; every indexed image has it


class _IndexData(TypedDict):
    images: dict[str, ImageRecord]
    names: dict[str, str]  # a name (normalized reference) -> image id


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI chain ids: the first layer's diff id, then sha256(parent + " " + diff id)."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            raw = f"{chains[-1]} {diff_id}".encode()
            chains.append("sha256:" + hashlib.sha256(raw).hexdigest())
    return chains


class ImageIndex:
    def __init__(self, layout: StoreLayout) -> None:
        self.layout = layout

    def _read(self) -> _IndexData:
        try:
            with open(self.layout.images_index, "rb") as f:
                data: _IndexData = json.loads(f.read())  # only _write writes it
        except FileNotFoundError:
            return {"images": {}, "names": {}}
        return data

    def _write(self, data: _IndexData) -> None:
        self.layout.ensure()
        write_json_atomic(self.layout.images_index, data, 0o600)

    def add(self, record: ImageRecord, names: list[str]) -> None:
        names = [str(parse_reference(n)) for n in names]
        data = self._read()
        image_id = record["id"]
        old = data["images"].get(image_id)
        record["names"] = sorted(set(old.get("names", []) if old else []) | set(names))
        for name in names:
            previous = data["names"].get(name)
            if previous and previous != image_id and previous in data["images"]:
                data["images"][previous]["names"].remove(name)  # the name moves
            data["names"][name] = image_id
        data["images"][image_id] = record
        self._write(data)

    def get(self, ref_or_id: str) -> ImageRecord:
        data = self._read()
        image_id = data["names"].get(str(parse_reference(ref_or_id))) \
            if not ref_or_id.startswith("sha256:") else ref_or_id
        if image_id is None or image_id not in data["images"]:
            matches = [i for i in data["images"] if i[7:].startswith(ref_or_id.removeprefix("sha256:"))]
            if len(matches) == 1 and len(ref_or_id) >= 4:
                image_id = matches[0]
            else:
                raise NotFound(f"no such image: {ref_or_id}")
        return data["images"][image_id]

    def remove(self, ref_or_id: str, force: bool = False) -> list[str]:
        """Untag ``ref_or_id``; drop the image when no name is left (or ``force``).

        Returns what was done, Docker style: "Untagged: NAME", "Deleted: ID".
        """
        image = self.get(ref_or_id)
        data = self._read()
        done: list[str] = []
        by_name = not ref_or_id.startswith("sha256:") and str(parse_reference(ref_or_id)) \
            in data["names"]
        names = _untagged_by(str(parse_reference(ref_or_id)), image["names"]) \
            if by_name and not force else image["names"]
        for name in names:
            data["names"].pop(name, None)
            data["images"][image["id"]]["names"].remove(name)
            done.append(f"Untagged: {name}")
        if force or not data["images"][image["id"]]["names"]:
            del data["images"][image["id"]]
            done.append(f"Deleted: {image['id']}")
        self._write(data)
        return done

    def list(self) -> list[ImageRecord]:
        return list(self._read()["images"].values())

    def exists(self) -> bool:
        return os.path.exists(self.layout.images_index)


def _untagged_by(name: str, names: list[str]) -> list[str]:
    """The names that removing ``name`` takes away, as Docker's image delete: a tag takes
    along its repository's digest references when no other tag of that repository is
    left (a pulled image is not kept alive by ``repo@sha256:…`` alone)."""
    ref = parse_reference(name)
    if ref.digest:
        return [name]
    others = [parse_reference(n) for n in names if n != name]
    if any(o.name == ref.name and not o.digest for o in others):
        return [name]
    return [name, *(str(o) for o in others if o.name == ref.name and o.digest)]
