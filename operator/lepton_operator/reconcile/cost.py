"""Cost: OpenCost's allocation formula over the job's pods, accrued into status; budgets; costPolicy placement.

cost = sum over pods of (GPUs x $/GPU-h of the node's product and capacity type + cores x $/core-h +
GiB x $/GiB-h) x hours running. Time is counted in whole seconds from the containers' own start and finish
times, so passes tile time exactly and nothing is counted twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from ..api.trainingjob import CostStatus, TrainingJob
from ..builders.placement import Placement
from ..constants import CAPACITY_TYPE_LABEL, GPU_PRODUCT_LABEL
from ..prices import PriceTable
from ..timestamps import epoch_seconds, rfc3339
from .capacity import NodeView
from .observe import PodView

COST_WRITE_INTERVAL = 30.0  # seconds between status writes that only refresh the cost
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
    return node is not None and node.labels.get(CAPACITY_TYPE_LABEL) == "spot"


def pod_rate(job: TrainingJob, node: NodeView | None, prices: PriceTable) -> float:
    """USD per hour of one worker on `node`."""
    spec = job.spec
    product = (node.labels.get(GPU_PRODUCT_LABEL) if node else None) or spec.gpu_type
    gpu = prices.gpu(product).hourly(is_spot(node)) * spec.gpus_per_replica
    res = spec.resources
    cpu = quantity(res.cpu if res else None) * prices.cpu_core_hour
    mem = quantity(res.memory if res else None) / 2**30 * prices.memory_gib_hour
    return gpu + cpu + mem


def accrue(
    job: TrainingJob,
    pods: list[PodView],
    nodes: Mapping[str, NodeView],
    prices: PriceTable,
    now: datetime,
    eta_seconds: float | None = None,
) -> CostStatus:
    """The job's cost block after adding every pod's running time in (last accrual, now]."""
    old = job.status.cost or CostStatus()
    end = now.replace(microsecond=0).timestamp()
    start = epoch_seconds(old.last_accrual) if old.last_accrual else 0.0
    gpu_hours, usd, rate = old.gpu_hours, old.accrued_usd, 0.0
    for pod in pods:
        if not pod.started_at or pod.phase == "Pending":
            continue
        node = nodes.get(pod.node or "")
        began = max(start, epoch_seconds(pod.started_at))
        stopped = epoch_seconds(pod.finished_at) if pod.finished_at else end
        hours = max(0.0, min(stopped, end) - began) / 3600
        r = pod_rate(job, node, prices)
        gpu_hours += job.spec.gpus_per_replica * hours
        usd += r * hours
        if pod.phase == "Running" and not pod.finished_at:
            rate += r
    projected = f"{usd + rate * eta_seconds / 3600:.2f}" if eta_seconds is not None else None
    return CostStatus(
        gpu_hours=round(gpu_hours, 6),
        accrued_usd=round(usd, 6),
        estimated_cost_usd=f"{usd:.2f}",
        rate_usd_per_hour=f"{rate:.2f}",
        projected_total_usd=projected,
        price_source=prices.source,
        last_accrual=rfc3339(now),
    )


def over_budget(job: TrainingJob, cost: CostStatus) -> str | None:
    """Why the budget stops the job, or None."""
    budget = job.spec.budget
    if budget is None:
        return None
    if cost.accrued_usd >= budget.max_usd:
        return f"cost ${cost.accrued_usd:.2f} reached the budget of ${budget.max_usd:.2f}"
    if budget.basis == "Projected" and cost.projected_total_usd and float(cost.projected_total_usd) > budget.max_usd:
        return f"projected cost ${cost.projected_total_usd} exceeds the budget of ${budget.max_usd:.2f}"
    return None


def placement(job: TrainingJob, prices: PriceTable) -> Placement:
    """Rank (GPU product, capacity type) options by the job's cost policy; the best gets the highest weight.

    speed: relative speed, on-demand only (spot can be reclaimed mid-run); cost: lowest $/GPU-hour, spot
    allowed; balanced: highest relative speed per $, spot allowed. A fixed gpuType leaves only the
    capacity-type choice.
    """
    policy = job.spec.cost_policy
    products = [job.spec.gpu_type] if job.spec.gpu_type else sorted(prices.gpus)
    options: list[tuple[float, str, bool]] = []
    for product in products:
        assert product is not None
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
