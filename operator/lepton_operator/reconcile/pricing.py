"""Prices of pods and placements: one pod-rate function for both kinds, and costPolicy's ranking of GPU options."""

from __future__ import annotations

import re

from ..api.pod import Resources
from ..api.trainingjob import TrainingJob
from ..builders.placement import Placement
from ..constants import GPU_PRODUCT_LABEL, SPOT_NODE_LABELS
from ..prices import PriceTable
from .views import NodeView

_SUFFIX = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "P": 1e15,
    "Pi": 2**50,
}


def quantity(text: str | None) -> float:
    """A Kubernetes quantity as a float (cores, or bytes)."""
    if not text:
        return 0.0
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", text)
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"not a quantity: {text!r}")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def is_spot(node: NodeView | None) -> bool:
    """Whether a node is spot capacity: our label or a cloud provisioner's (Karpenter, EKS, GKE)."""
    return node is not None and any(node.labels.get(label) == value for label, value in SPOT_NODE_LABELS)


def pod_rate(
    gpus: int, resources: Resources | None, gpu_type: str | None, node: NodeView | None, prices: PriceTable
) -> float:
    """USD per hour of one pod on `node` (OpenCost's allocation: GPUs, cores and GiB at the node's prices);
    the GPU product is the node's, else `gpu_type`."""
    product = (node.labels.get(GPU_PRODUCT_LABEL) if node else None) or gpu_type
    gpu = prices.gpu(product).hourly(is_spot(node)) * gpus
    cpu = quantity(resources.cpu if resources else None) * prices.cpu_core_hour
    mem = quantity(resources.memory if resources else None) / 2**30 * prices.memory_gib_hour
    return gpu + cpu + mem


def placement(job: TrainingJob, prices: PriceTable) -> Placement:
    """Rank (GPU product, capacity type) options by the job's cost policy; the best gets the highest weight.

    speed: relative speed, on-demand only (spot can be reclaimed mid-run); cost: lowest $/GPU-hour, spot
    allowed; balanced: highest relative speed per $, spot allowed. A fixed gpuType leaves only the
    capacity-type choice.
    """
    policy, gpu_type = job.spec.cost_policy, job.spec.gpu_type
    products = [gpu_type] if gpu_type else sorted(prices.gpus)
    options: list[tuple[float, str, bool]] = []
    for product in products:
        price = prices.gpu(product)
        for spot in (False, True) if policy != "speed" and price.spot is not None else (False,):
            hourly = price.hourly(spot) or 1e-9
            score = {"speed": price.relative_speed - hourly / 1e6, "cost": -hourly}.get(
                policy, price.relative_speed / hourly
            )
            options.append((score, product, spot))
    options.sort(key=lambda o: (-o[0], o[1], o[2]))
    ranked = [(max(1, 100 - 10 * i), product, spot) for i, (_, product, spot) in enumerate(options[:10])]
    return Placement(preferred=ranked, tolerate_spot=policy != "speed")
