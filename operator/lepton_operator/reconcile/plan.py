"""What a TrainingJob pass reads besides the job (Observed) and what it decides (Plan)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..api.trainingjob_status import TrainingJobStatus
from ..builders.trainingjob import Endpoint
from ..constants import GangMode
from ..prices import DEFAULT_PRICES, PriceTable
from .views import NodeView, PodView

if TYPE_CHECKING:
    from .kueue import KueueSeen, WorkloadWrite


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


def aggregated(events: list[Event]) -> list[Event]:
    """One Normal Event per pass: several transitions at once (all scheduled, then all running, seen in one
    batched pass) become one Event with the last one's reason and every message (one request, not several, per
    job in a burst). Warnings are each kept as they are."""
    normal = [e for e in events if e.type == "Normal"]
    if len(normal) < 2:
        return events
    merged = Event("Normal", normal[-1].reason, "; ".join(e.message for e in normal))
    last = events.index(normal[-1])
    return [merged if i == last else e for i, e in enumerate(events) if e.type != "Normal" or i == last]


@dataclass
class Plan:
    """What one reconcile pass wants done. Applying it twice is harmless."""

    create: list[dict[str, Any]] = field(default_factory=list)
    endpoints: dict[str, tuple[Endpoint, ...]] = field(default_factory=dict)  # slices to rewrite (reconcile/dns.py)
    delete: list[str] = field(default_factory=list)  # pod names
    force_delete: list[str] = field(default_factory=list)  # pods on lost nodes: no kubelet will confirm
    status: TrainingJobStatus | None = None  # the whole new status, stored exactly; None when unchanged
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None  # seconds until time alone changes the decision
    delete_job: bool = False
    new_epoch_reason: str | None = None  # a new epoch starts in this pass, and why
    first_pods_complete: bool = False  # this pass creates the last missing pod of the job's first epoch
    failover_seconds: float | None = None  # a restarted epoch became fully running: time since the failure
    workload_create: dict[str, Any] | None = None  # the Kueue Workload of a queued job, to create (reconcile/kueue.py)
    workload_status: WorkloadWrite | None = None  # the Kueue Workload's new status, to store
    growth_status: WorkloadWrite | None = None  # a pending growth slice finished with its job, to store
    workload_active: tuple[str, bool] | None = None  # a Workload's spec.active to set: (name, active)

    def requeue(self, seconds: float) -> None:
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)


@dataclass(frozen=True)
class Observed:
    """What the operator saw besides the job itself."""

    pods: list[PodView]
    service_exists: bool = True
    published: Mapping[str, int] = field(default_factory=dict)  # our EndpointSlices: name -> hash of endpoints
    lost_nodes: frozenset[str] = frozenset()  # NotReady, unreachable or deleted nodes
    capacity: int | None = None  # workers of this job's shape that fit if its own pods were gone; None = unknown
    nodes: Mapping[str, NodeView] = field(default_factory=dict)  # for prices: GPU product, spot or on-demand
    prices: PriceTable = field(default_factory=lambda: DEFAULT_PRICES)
    live_progress: dict[str, Any] | None = None  # rank 0's latest /progress document, when fetched
    live_progress_error: str | None = None  # why rank 0's last /progress reply was refused (too large, not JSON)
    create_refused: str | None = None  # the API server's answer when it last refused to create a child
    gang: GangMode = "disabled"  # whether each epoch's workers form a PodGroup (see builders/gang.py)
    kueue: KueueSeen | None = None  # a queued job's Kueue Workload (reconcile/kueue.py); None: not queued
