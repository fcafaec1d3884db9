"""hostPath volumes only under the prefixes the operator's configuration allows (none by default).

A hostPath reaches the node's filesystem: whoever may create a TrainingJob or InferenceService must not get
more of the node than the cluster admin allowed (Pod Security `restricted` refuses every hostPath anyway).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence


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
