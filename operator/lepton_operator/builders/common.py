"""What children of both kinds share: labels and selectors, tolerations, node affinity terms, volume mounts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..api.base import KubeModel
from ..constants import GPU_PRODUCT_LABEL, GPU_RESOURCE, LABEL_MANAGED_BY, LABEL_NAME, MANAGER

TRAININGJOB_APP = "trainingjob"  # app.kubernetes.io/name of a TrainingJob's children
INFERENCESERVICE_APP = "inferenceservice"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
# The user worker and server pods run as: the trainer image's `lepton` user (trainer_image/Dockerfile,
# lepton_cluster.images); fsGroup makes a claim's files writable to it.
POD_UID = 1000


POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": POD_UID,
    "runAsGroup": POD_UID,
    "fsGroup": POD_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def secure(pod_spec: dict[str, Any], *containers: dict[str, Any]) -> None:
    """Pod Security `restricted`: non-root, no privilege escalation, no capabilities, the runtime's seccomp
    profile; and no API token in the pod (user code needs none). Keys a pod template set itself win."""
    pod_spec["securityContext"] = {**POD_SECURITY, **(pod_spec.get("securityContext") or {})}
    pod_spec.setdefault("automountServiceAccountToken", False)
    for container in containers:
        container["securityContext"] = {**CONTAINER_SECURITY, **(container.get("securityContext") or {})}


def managed_labels(app: str) -> dict[str, str]:
    """The labels every child of one kind carries (what the operator's informers select)."""
    return {LABEL_NAME: app, LABEL_MANAGED_BY: MANAGER}


def selector(labels: Mapping[str, str]) -> str:
    """A label selector string matching all of `labels`."""
    return ",".join(f"{k}={v}" for k, v in labels.items())


def tolerations(gpus: int, extra: Iterable[KubeModel] | None) -> list[dict[str, Any]]:
    """The GPU taint tolerated when GPUs are asked for, then the spec's own tolerations."""
    return ([dict(GPU_TOLERATION)] if gpus else []) + [t.to_wire() for t in extra or []]


def gpu_product_term(gpu_type: str) -> dict[str, Any]:
    """A node selector requirement: the given GPU product."""
    return {"key": GPU_PRODUCT_LABEL, "operator": "In", "values": [gpu_type]}


def required_affinity(terms: list[dict[str, Any]]) -> dict[str, Any]:
    """requiredDuringSchedulingIgnoredDuringExecution with one term of all the given requirements."""
    return {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": terms}]}}


def claim_or_host_path(
    claim: str | None, host_path: str | None, *, read_only: bool, host_type: str = "Directory"
) -> dict[str, Any]:
    """A Pod volume source: the claim when named, else the hostPath (of `host_type`)."""
    if claim:
        return {"persistentVolumeClaim": {"claimName": claim} | ({"readOnly": True} if read_only else {})}
    return {"hostPath": {"path": host_path, "type": host_type}}


def mount_volume(
    pod_spec: dict[str, Any],
    container: dict[str, Any],
    name: str,
    source: Mapping[str, Any],
    mount_path: str,
    *,
    sub_path: str | None = None,
    read_only: bool = False,
) -> None:
    """Add the volume `name` from `source` to the pod and mount it (its `sub_path` folder) in the container."""
    pod_spec.setdefault("volumes", []).append({"name": name, **source})
    mount: dict[str, Any] = {"name": name, "mountPath": mount_path} | ({"readOnly": True} if read_only else {})
    container.setdefault("volumeMounts", []).append(mount | ({"subPath": sub_path} if sub_path else {}))
