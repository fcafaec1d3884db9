"""How many workers of a job fit on free GPUs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..api.trainingjob import TrainingJob
from ..builders.common import GPU_TOLERATION
from ..constants import GPU_PRODUCT_LABEL
from .views import NodeView


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: tuple[str, str, str]) -> bool:
    key, value, effect = taint
    if effect == "PreferNoSchedule":
        return True
    for t in tolerations:
        if t.get("effect") and t["effect"] != effect:
            continue
        if t.get("operator", "Equal") == "Exists":
            if not t.get("key") or t["key"] == key:
                return True
        elif t.get("key") == key and t.get("value", "") == value:
            return True
    return False


def workers_that_fit(
    job: TrainingJob, nodes: Iterable[NodeView], used: Mapping[str, int], own: Mapping[str, int]
) -> int | None:
    """Workers of the job's shape that fit on free GPUs if the job's own pods were gone (None: no GPUs asked)."""
    spec = job.spec
    per = spec.gpus_per_replica
    if per == 0:
        return None
    tolerations = [GPU_TOLERATION, *(t.to_wire() for t in spec.tolerations or [])]
    total = 0
    for node in nodes:
        if node.lost or node.unschedulable:
            continue
        if spec.gpu_type and node.labels.get(GPU_PRODUCT_LABEL) != spec.gpu_type:
            continue
        if any(node.labels.get(k) != v for k, v in (spec.node_selector or {}).items()):
            continue
        if not all(tolerates(tolerations, t) for t in node.taints if t[2] in ("NoSchedule", "NoExecute")):
            continue
        free = node.gpus - used.get(node.name, 0) + own.get(node.name, 0)
        total += max(0, free) // per
    return total
