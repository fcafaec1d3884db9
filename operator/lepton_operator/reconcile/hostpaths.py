"""hostPath volumes only under the prefixes the operator's configuration allows (none by default).

A hostPath reaches the node's filesystem: whoever may create a TrainingJob or InferenceService must not get
more of the node than the cluster admin allowed (Pod Security `restricted` refuses every hostPath anyway).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import Any


def under(path: str, prefix: str) -> bool:
    """`path` is `prefix` or inside it, after normalising both ('..' cannot climb out: refused outright)."""
    if ".." in path.split("/"):
        return False
    p, root = posixpath.normpath(path), posixpath.normpath(prefix)
    return p == root or p.startswith(root.rstrip("/") + "/")


def refusal(field: str, path: str | None, allowed: Sequence[str]) -> str | None:
    """Why `path` (the value of `field`) is refused, naming the field, or None when allowed or unset."""
    if path is None or any(under(path, prefix) for prefix in allowed):
        return None
    told = ", ".join(allowed) if allowed else "none"
    return (
        f"{field}: hostPath {path} is not under a prefix the operator allows "
        f"(LEPTON_ALLOWED_HOSTPATH_PREFIXES: {told}); use a persistentVolumeClaim"
    )[:1024]


def template_refusal(template: Mapping[str, Any] | None, allowed: Sequence[str]) -> str | None:
    """The first hostPath volume of spec.template that is not allowed, naming its field, or None."""
    volumes = ((template or {}).get("spec") or {}).get("volumes") or []
    for i, volume in enumerate(volumes):
        path = (volume.get("hostPath") or {}).get("path")
        if why := refusal(f"spec.template.spec.volumes[{i}].hostPath.path", path, allowed):
            return why
    return None


def checkpoint_host_path(job: Mapping[str, Any] | None) -> str | None:
    """spec.checkpoint.volume.hostPath of a raw TrainingJob body, when it is a string (the body of an InferenceService's
    model job is read before its spec is validated: any shape must give an answer)."""
    try:
        path = (job or {})["spec"]["checkpoint"]["volume"]["hostPath"]
    except (KeyError, TypeError, IndexError):
        return None
    return path if isinstance(path, str) else None
