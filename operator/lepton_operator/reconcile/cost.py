"""Cost accounting: OpenCost's allocation formula over the job's pods, accrued into status.

cost = sum over pods of (GPUs x $/GPU-h of the node's product and capacity type + cores x $/core-h +
GiB x $/GiB-h) x hours running. Time is counted in whole seconds from the containers' own start and finish
times, so passes tile time exactly and nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ..api.trainingjob import TrainingJob
from ..api.trainingjob_status import MAX_GPU_HOURS, MAX_USD, CostStatus
from ..builders.template import trainer_resources
from ..prices import PriceTable
from ..timestamps import epoch_seconds, rfc3339
from .pricing import pod_rate
from .views import NodeView, PodView

COST_WRITE_INTERVAL = 30.0  # seconds between status writes that only refresh the cost


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
    resources = trainer_resources(job.spec.template, job.spec.resources)
    for pod in pods:
        if not pod.started_at or pod.phase == "Pending":
            continue
        node = nodes.get(pod.node or "")
        began = max(start, epoch_seconds(pod.started_at))
        stopped = epoch_seconds(pod.finished_at) if pod.finished_at else end
        hours = max(0.0, min(stopped, end) - began) / 3600
        r = pod_rate(job.spec.gpus_per_replica, resources, job.spec.gpu_type, node, prices)
        gpu_hours += job.spec.gpus_per_replica * hours
        usd += r * hours
        if pod.phase == "Running" and not pod.finished_at:
            rate += r
    # Saturate at the status schema's bounds: quantities and prices the CRD admits can multiply past them.
    gpu_hours, usd, rate = min(gpu_hours, MAX_GPU_HOURS), min(usd, MAX_USD), min(rate, MAX_USD)
    projected = f"{min(usd + rate * eta_seconds / 3600, MAX_USD):.2f}" if eta_seconds is not None else None
    return CostStatus(
        gpu_hours=round(gpu_hours, 6),
        accrued_usd=round(usd, 6),
        estimated_cost_usd=f"{usd:.2f}",
        rate_usd_per_hour=f"{rate:.2f}",
        projected_total_usd=projected,
        price_source=prices.source,
        last_accrual=rfc3339(now),
    )
