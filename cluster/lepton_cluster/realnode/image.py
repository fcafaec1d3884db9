"""The sandbox (pause) image and a busybox image, built here from Debian's busybox-static.

One uncompressed layer (`/bin/busybox`, a link per applet, `/etc/passwd`, `/tmp`) written as an OCI
image layout inside a tar archive, with two manifests: the pause image (busybox `sleep` as PID 1)
and a busybox image for tests (`sh`). `ctr image import` loads the archive; nothing is pulled.
The archive is byte-for-byte reproducible from the busybox binary.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .plan import BUSYBOX_IMAGE, PAUSE_IMAGE

BUSYBOX = Path("/bin/busybox")
_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = b"root:x:0:\nnogroup:x:65534:\n"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


@dataclass(frozen=True)
class ImageSpec:
    ref: str
    entrypoint: list[str]
    cmd: list[str]


IMAGES = (
    # PID 1 ignores SIGTERM without a handler; containerd stops sandboxes with SIGKILL anyway.
    ImageSpec(PAUSE_IMAGE, ["/bin/sleep", "2147483647"], []),
    ImageSpec(BUSYBOX_IMAGE, [], ["sh"]),
)


def _add(tar: tarfile.TarFile, name: str, *, data: bytes | None = None, link: str | None = None, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.uid, info.gid = mode, 0, 0, 0
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info)
    elif data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def rootfs_layer(busybox: bytes, applets: list[str]) -> bytes:
    """The layer tar: busybox, one symlink per applet in /bin, passwd/group, /tmp."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("root", 0o700)):
            _add(tar, d, mode=mode)
        _add(tar, "bin/busybox", data=busybox, mode=0o755)
        for applet in sorted(set(applets) - {"busybox"}):
            _add(tar, f"bin/{applet}", link="busybox", mode=0o777)
        _add(tar, "etc/passwd", data=_PASSWD, mode=0o644)
        _add(tar, "etc/group", data=_GROUP, mode=0o644)
    return buf.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def oci_archive(layer: bytes, images: tuple[ImageSpec, ...] = IMAGES) -> bytes:
    """An OCI image layout (tar) holding one manifest per image, all on the same layer."""
    blobs: dict[str, bytes] = {}
    layer_desc = {"mediaType": LAYER_TYPE, **_blob(blobs, layer)}
    manifests = []
    for spec in images:
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Entrypoint": spec.entrypoint or None, "Cmd": spec.cmd or None},
            "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, **_blob(blobs, _json(config))},
            "layers": [layer_desc],
        }
        annotations = {"io.containerd.image.name": spec.ref, "org.opencontainers.image.ref.name": spec.ref}
        manifests.append(
            {
                "mediaType": MANIFEST_TYPE,
                **_blob(blobs, _json(manifest)),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": annotations,
            }
        )
    files = {
        "oci-layout": _json({"imageLayoutVersion": "1.0.0"}),
        "index.json": _json({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": manifests}),
    }
    files.update({f"blobs/sha256/{d.removeprefix('sha256:')}": data for d, data in sorted(blobs.items())})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            _add(tar, d, mode=0o755)
        for name, data in files.items():
            _add(tar, name, data=data, mode=0o644)
    return buf.getvalue()
