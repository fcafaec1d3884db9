"""Build the images into the cache: each layer only when its key is new, an archive per image.

Layout under `<cache>/images/`:

- `oci/`: one OCI image layout; every stage is a tag named by its key (see spec.py)
- `rootfs/base-<key>/`: the Debian base unpacked, for the chrooted steps (bytecode, smoke test)
- `meta/<tag>.json`: the wheels a layer installed (`name==version`): the lock of that layer
- `archives/<image>-<key>.tar`: the OCI archives to load into a containerd (`load.py`)
- `<image>.json`: the last build of that image (reference, digest, archive)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from . import layers
from .oci import Store, read_archive
from .spec import REPO_ROOT, ImageSpec, base_key, code_key, config_key, wheels_key
from .tools import say, tar_layer

KEY_CHARS = 20


@dataclass(frozen=True)
class BuiltImage:
    """An image ready to load: its reference, manifest digest and OCI archive."""

    name: str
    ref: str
    digest: str
    archive: Path
    #: the final tag in the cache's OCI layout (`Store.unpack` reads it)
    tag: str
    #: the user the image runs as, "uid:gid"
    user: str

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "archive": str(self.archive)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> BuiltImage:
        data = json.loads(text)
        return cls(**{**data, "archive": Path(data["archive"])})


class Builder:
    def __init__(self, cache_dir: Path, root: Path = REPO_ROOT) -> None:
        self.dir = cache_dir / "images"
        self.root = root
        self.store = Store(self.dir / "oci")
        self.work = self.dir / "work"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One build at a time per cache (a second one waits, then finds the layers built)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def build(self, spec: ImageSpec) -> BuiltImage:
        """The image's archive, building only the layers whose keys are not in the cache."""
        with self.locked():
            started = time.monotonic()
            shutil.rmtree(self.work, ignore_errors=True)
            tag = self.base()
            installed: list[str] = []
            chain = [tag]
            for i, requirements in enumerate(spec.wheel_layers):
                tag, pins = self.wheels(spec, i, tag, requirements, installed)
                installed += pins
                chain.append(tag)
            tag = self.code(spec, tag)
            final = f"{spec.name}-{config_key(tag, spec)[:KEY_CHARS]}"
            chain += [tag, final]
            if not self.store.has(final):
                self.store.configure(tag, final, spec.config_args())
            archive = self.dir / "archives" / f"{final}.tar"
            if archive.is_file():
                info = read_archive(archive)
            else:
                archive.parent.mkdir(parents=True, exist_ok=True)
                info = self.store.export(final, archive, spec.ref)
            built = BuiltImage(spec.name, spec.ref, info.digest, archive, final, spec.user.spec)
            (self.dir / f"{spec.name}.json").write_text(built.to_json())
            self.prune(spec.name, keep=set(chain), archive=archive)
            shutil.rmtree(self.work, ignore_errors=True)
            say(f"{spec.ref} {info.digest[:19]} in {time.monotonic() - started:.0f} s: {archive}")
            return built

    def base_rootfs(self) -> Path:
        return self.dir / "rootfs" / f"base-{base_key()[:KEY_CHARS]}"

    def base(self) -> str:
        """The Debian base layer (and its unpacked root filesystem, kept for the chrooted steps)."""
        tag = f"base-{base_key()[:KEY_CHARS]}"
        rootfs = self.base_rootfs()
        if not rootfs.is_dir():
            rootfs.parent.mkdir(parents=True, exist_ok=True)
            for old in rootfs.parent.glob("base-*"):
                shutil.rmtree(old)
            say(f"Debian base {tag}: mmdebstrap")
            layers.debian_rootfs(rootfs)
        if not self.store.has(tag):
            layer = self.work / f"{tag}.tar"
            layer.parent.mkdir(parents=True, exist_ok=True)
            # Package files keep their times: Debian's .pyc files are checked against them.
            tar_layer(rootfs, layer, clamp_mtime=False, exclude=["./dev/*", "./proc/*", "./sys/*", "./mnt/*"])
            self.store.add_layer(self.store.empty(), tag, layer, "mmdebstrap (lepton_cluster.images)")
            layer.unlink()
        return tag

    def wheels(
        self, spec: ImageSpec, index: int, parent: str, requirements: tuple[str, ...], constraints: list[str]
    ) -> tuple[str, list[str]]:
        """A layer of pinned wheels; returns its tag and what it installed."""
        tag = f"{spec.name}-wheels{index}-{wheels_key(parent, requirements)[:KEY_CHARS]}"
        meta = self.dir / "meta" / f"{tag}.json"
        if self.store.has(tag) and meta.is_file():
            return tag, list(json.loads(meta.read_text()))
        say(f"{tag}: pip install {' '.join(requirements)}")
        stage = self.work / tag
        stage.mkdir(parents=True)
        installed = layers.pip_stage(stage, requirements, constraints, self.work / f"{tag}.report.json")
        layers.compile_site(self.base_rootfs(), stage, strict=False)
        self._commit(parent, tag, stage, f"pip install {' '.join(requirements)}")
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps(installed, indent=1) + "\n")
        return tag, installed

    def code(self, spec: ImageSpec, parent: str) -> str:
        """The layer of our packages (and the trainer's decoded digits table)."""
        tag = f"{spec.name}-code-{code_key(parent, spec, self.root)[:KEY_CHARS]}"
        if self.store.has(tag):
            return tag
        say(f"{tag}: {' '.join(spec.sources)}")
        stage = self.work / tag
        stage.mkdir(parents=True)
        layers.code_stage(stage, spec, self.root)
        layers.compile_site(self.base_rootfs(), stage)
        self._commit(parent, tag, stage, f"COPY {' '.join(spec.sources)}")
        return tag

    def _commit(self, parent: str, tag: str, stage: Path, created_by: str) -> None:
        layer = self.work / f"{tag}.tar"
        tar_layer(stage, layer)
        shutil.rmtree(stage)
        self.store.add_layer(parent, tag, layer, created_by)
        layer.unlink()

    def prune(self, name: str, keep: set[str], archive: Path) -> None:
        """Drop this image's older stages and archives, and older bases (another image's stages keep theirs).

        Blobs are collected only when a wheel layer went (gigabytes): `umoci gc` reads the whole
        layout (minutes for the trainer), while an older code layer's blob is a megabyte or so.
        """
        stale = [t for t in self.store.tags() if t.startswith((f"{name}-", "base-")) and t not in keep]
        for tag in stale:
            self.store.remove(tag)
            (self.dir / "meta" / f"{tag}.json").unlink(missing_ok=True)
        if any(t.startswith(f"{name}-wheels") for t in stale):
            self.store.gc()
        for old in archive.parent.glob(f"{name}-*.tar"):
            if old != archive:
                old.unlink()

    def last(self, name: str) -> BuiltImage | None:
        """The last build of image `name` in this cache, if its archive is still there."""
        record = self.dir / f"{name}.json"
        if not record.is_file():
            return None
        built = BuiltImage.from_json(record.read_text())
        return built if built.archive.is_file() else None
