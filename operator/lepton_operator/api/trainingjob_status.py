"""TrainingJob status: what the operator reports (never required; written only by the operator)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Condition, KubeModel

MAX_REPLICAS = 1024  # the largest world size, of the spec and the status
MAX_USD = 1e12  # cost figures saturate here (a spec's prices x quantities can reach further)
MAX_GPU_HOURS = 1e9


class LastFailure(KubeModel):
    """The most recent worker failure."""

    pod: str = Field(description="Failed pod.", max_length=253)
    node: str | None = Field(default=None, description="Its node.", max_length=253)
    reason: str = Field(
        description="OOMKilled, Evicted, Preempted, Disrupted, NodeLost, PodLost, PeerLost or Error.", max_length=64
    )
    exit_code: int | None = Field(default=None, description="Container exit code.", ge=-255, le=255)
    peer_node: str | None = Field(
        default=None,
        description="PeerLost: the node of the peer that vanished, when its address names one of the epoch's "
        "pods still running there (a node lost before it goes NotReady); the next epoch prefers other nodes.",
        max_length=253,
    )
    message: str | None = Field(default=None, description="Termination message (truncated).", max_length=1024)
    action: str = Field(description="What the operator did: RestartJob, FailJob or Ignore.", max_length=32)
    counted: bool = Field(description="Whether it spent the restart budget.")
    time: str = Field(description="When the operator saw it (RFC 3339).", max_length=64)


class CostStatus(KubeModel):
    """What the job has cost (OpenCost's allocation formula) and will cost."""

    gpu_hours: float = Field(default=0.0, description="GPU-hours accrued.", ge=0, le=MAX_GPU_HOURS)
    accrued_usd: float = Field(default=0.0, description="Cost accrued, USD (full precision).", ge=0, le=MAX_USD)
    estimated_cost_usd: str = Field(default="0.00", description="Cost accrued, USD, 2 decimals.", max_length=32)
    rate_usd_per_hour: str = Field(default="0.00", description="Current burn rate, USD per hour.", max_length=32)
    projected_total_usd: str | None = Field(
        default=None, description="Accrued + rate x ETA, when progress reports an ETA.", max_length=32
    )
    price_source: str = Field(default="", description="Which price table was used.", max_length=256)
    last_accrual: str | None = Field(default=None, description="Time accrued up to (RFC 3339).", max_length=64)


class Progress(KubeModel):
    """What the trainer reports: live from rank 0's /progress endpoint, final from its termination message."""

    summary: str = Field(default="", description="One line for kubectl get, e.g. '45% step 120/266'.", max_length=128)
    step: int | None = Field(default=None, description="Optimizer steps done.", ge=0, le=2**53)
    total_steps: int | None = Field(default=None, description="Steps of the whole run.", ge=0, le=2**53)
    epoch: int | None = Field(default=None, description="Data epoch.", ge=0, le=2**31)
    loss: float | None = Field(default=None, description="Recent training loss.", ge=-1e12, le=1e12)
    samples_per_second: float | None = Field(default=None, description="Throughput.", ge=0, le=1e12)
    eta_seconds: float | None = Field(default=None, description="Estimated time to finish.", ge=0, le=1e9)
    last_checkpoint_step: int | None = Field(default=None, description="Step of the newest checkpoint.", ge=0, le=2**53)
    test_accuracy: float | None = Field(default=None, description="Final held-out accuracy.", ge=0, le=1)
    export_path: str | None = Field(default=None, description="Where the trained model was exported.", max_length=1024)
    source: str | None = Field(default=None, description="endpoint or termination-message.", max_length=32)


class TrainingJobStatus(KubeModel):
    """What the operator observed; read with kubectl get/describe."""

    phase: Literal["Pending", "Running", "Restarting", "Suspended", "Succeeded", "Failed"] | None = Field(
        default=None, description="Summary derived from the conditions."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Latest observations (metav1.Condition).",
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(default=None, description="Spec generation last acted on.", ge=0, le=2**62)
    replicas: int | None = Field(
        default=None, description="World size (pods) of the current epoch.", ge=0, le=MAX_REPLICAS
    )
    ready_replicas: int | None = Field(
        default=None, description="Pods of the current epoch running.", ge=0, le=MAX_REPLICAS
    )
    ready: str | None = Field(default=None, description="ready/desired, for kubectl get.", max_length=16)
    selector: str | None = Field(
        default=None, description="Label selector of the pods (scale subresource).", max_length=256
    )
    restarts: int | None = Field(default=None, description="Restart epochs so far.", ge=0, le=2**31)
    restart_epoch: int | None = Field(default=None, description="Epoch whose pods run now.", ge=0, le=2**31)
    last_failure: LastFailure | None = Field(default=None, description="The most recent worker failure.")
    cost: CostStatus | None = Field(default=None, description="Cost so far, rate and projection.")
    progress: Progress | None = Field(default=None, description="Training progress reported by the trainer.")
    launched: bool | None = Field(
        default=None, description="Every pod of the current epoch was created: a missing one is lost, not pending."
    )
    epoch_start_time: str | None = Field(
        default=None, description="When the current epoch was created (RFC 3339).", max_length=64
    )
    start_time: str | None = Field(default=None, description="When the job first ran (RFC 3339).", max_length=64)
    completion_time: str | None = Field(default=None, description="When the job finished (RFC 3339).", max_length=64)
    message: str | None = Field(default=None, description="Why the job is in its phase.", max_length=4096)
