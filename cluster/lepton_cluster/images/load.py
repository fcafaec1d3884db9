"""Load an image archive into a containerd, like `kind load`: skipped when it already has that digest."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .oci import read_archive

#: The containerd namespace the kubelet's CRI uses.
K8S_NAMESPACE = "k8s.io"


class LoadError(RuntimeError):
    """ctr failed, or the image is not there after the import."""


def parse_image_list(text: str) -> dict[str, str]:
    """`ctr images ls` output -> {reference: manifest digest}."""
    images: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[2].startswith("sha256:"):
            images[fields[0]] = fields[2]
    return images


def _ctr(address: Path | str, namespace: str, *args: str, timeout: float) -> str:
    argv = ["ctr", f"--address={address}", f"--namespace={namespace}", *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"{' '.join(argv)}: no answer in {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise LoadError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def image_digest(address: Path | str, ref: str, *, namespace: str = K8S_NAMESPACE) -> str | None:
    """The manifest digest containerd at `address` has for `ref`, or None."""
    return parse_image_list(_ctr(address, namespace, "images", "ls", f"name=={ref}", timeout=30)).get(ref)


def load_image(
    archive: Path,
    address: Path | str,
    *,
    namespace: str = K8S_NAMESPACE,
    snapshotter: str | None = None,
    timeout: float = 900,
) -> bool:
    """Import `archive` (an OCI archive from `Builder.build`) into the containerd listening on `address`.

    Returns False, doing nothing, when that containerd already has the archive's reference at the
    same digest; True after an import (which also unpacks it for `snapshotter`, containerd's
    default when None). Raises LoadError when ctr fails or the digest is not there afterwards.
    """
    info = read_archive(archive)
    if image_digest(address, info.ref, namespace=namespace) == info.digest:
        return False
    args = ["images", "import"]
    if snapshotter:
        args.append(f"--snapshotter={snapshotter}")
    _ctr(address, namespace, *args, str(archive), timeout=timeout)
    found = image_digest(address, info.ref, namespace=namespace)
    if found != info.digest:
        raise LoadError(f"{info.ref} in {address} is {found} after the import, expected {info.digest}")
    return True
