"""The OCI side: one image layout in the cache holds every layer (umoci), archives come out of it (skopeo).

Every stage of every image is a tag in the one layout, named by its key; blobs are shared by digest,
so the Debian base of both images is stored once. An archive is one image, named by its reference.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .spec import CREATED
from .tools import run


@dataclass(frozen=True)
class ArchiveInfo:
    """The reference and manifest digest an OCI archive carries (what `ctr images ls` shows after import)."""

    ref: str
    digest: str


def read_archive(archive: Path) -> ArchiveInfo:
    """The one image of an OCI archive: its `org.opencontainers.image.ref.name` and manifest digest."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        if member is None:
            raise ValueError(f"{archive}: no index.json (not an OCI archive)")
        manifests = json.load(member)["manifests"]
    if len(manifests) != 1:
        raise ValueError(f"{archive}: {len(manifests)} manifests, expected one image")
    ref = manifests[0].get("annotations", {}).get("org.opencontainers.image.ref.name")
    if not ref:
        raise ValueError(f"{archive}: the image has no reference name")
    return ArchiveInfo(ref=ref, digest=manifests[0]["digest"])


class Store:
    """An OCI image layout edited with umoci: tags are stages, `add_layer`/`configure` derive new ones."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def image(self, tag: str) -> str:
        return f"{self.path}:{tag}"

    def tags(self) -> set[str]:
        index = self.path / "index.json"
        if not index.is_file():
            return set()
        manifests = json.loads(index.read_text()).get("manifests") or []
        return {m["annotations"]["org.opencontainers.image.ref.name"] for m in manifests}

    def has(self, tag: str) -> bool:
        return tag in self.tags()

    def empty(self) -> str:
        """The tag of the image with no layer (made on first use)."""
        if not (self.path / "index.json").is_file():
            run(["umoci", "init", f"--layout={self.path}"])
        if not self.has("empty"):
            run(["umoci", "new", f"--image={self.image('empty-new')}"])
            self.configure("empty-new", "empty", [])
            self.remove("empty-new")
        return "empty"

    def add_layer(self, parent: str, tag: str, layer: Path, created_by: str) -> None:
        run(
            [
                "umoci", "raw", "add-layer", f"--image={self.image(parent)}", f"--tag={tag}",
                f"--history.created={CREATED}", f"--history.created_by={created_by}", str(layer),
            ]
        )  # fmt: skip

    def configure(self, parent: str, tag: str, args: list[str]) -> None:
        run(
            [
                "umoci", "config", f"--image={self.image(parent)}", f"--tag={tag}", f"--created={CREATED}",
                f"--history.created={CREATED}", "--history.created_by=lepton_cluster.images", *args,
            ]
        )  # fmt: skip

    def remove(self, tag: str) -> None:
        run(["umoci", "rm", f"--image={self.image(tag)}"])

    def gc(self) -> None:
        run(["umoci", "gc", f"--layout={self.path}"])

    def unpack(self, tag: str, rootfs: Path) -> Path:
        """The image's root filesystem, its layers applied in order into `rootfs` (as a runtime would)."""
        run(["umoci", "raw", "unpack", f"--image={self.image(tag)}", str(rootfs)])
        return rootfs

    def export(self, tag: str, archive: Path, ref: str) -> ArchiveInfo:
        """Write the image `tag` to an OCI archive named `ref` (written aside, then moved into place)."""
        part = archive.with_name(f".{archive.name}.part")
        part.unlink(missing_ok=True)
        run(["skopeo", "--insecure-policy", "copy", "--quiet", f"oci:{self.image(tag)}", f"oci-archive:{part}:{ref}"])
        part.rename(archive)
        return read_archive(archive)
