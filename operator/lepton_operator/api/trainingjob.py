"""TrainingJob: the spec a user writes and the status the operator reports."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from lepton_trainer import contract
from pydantic import Field

from ..constants import CONTROLLER_NAME
from .base import (
    DNS_LABEL,
    LABEL_KEY_CEL,
    LABEL_VALUE,
    KubeModel,
    cel,
    immutable,
    validations,
)
from .cost import Budget, PriceOverride
from .pod import EnvVar, Resources, Toleration
from .template import TEMPLATE_SPEC_RULES, template_field
from .trainingjob_status import MAX_REPLICAS, TrainingJobStatus

Arg = Annotated[str, Field(max_length=4096)]
# Each worker pod copies env, command and args: capped in all so that one job of 1024 workers stores at most
# ~64 MiB of them in etcd per epoch (instead of 1024 x 4 MiB), and one pod stays far below the 1.5 MiB limit.
MAX_ENV_CHARS = 32768
MAX_ARGS_CHARS = 32768
MAX_NAME_LENGTH = 48  # leaves room for "-<epoch>-<rank>" within a 63-character hostname

_RESERVED_NAMES = ", ".join(f"'{n}'" for n in sorted(contract.RESERVED_NAMES))
_RESERVED_PREFIX_RULE = " || ".join(f"e.name.startsWith('{p}')" for p in contract.RESERVED_PREFIXES)


class CheckpointVolume(KubeModel):
    """Where checkpoints are kept: a PersistentVolumeClaim (durable), a host path, or an emptyDir."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "[has(self.persistentVolumeClaim), has(self.hostPath), has(self.emptyDir)].filter(x, x).size() == 1",
                "spec.checkpoint.volume: set exactly one of persistentVolumeClaim, hostPath, emptyDir",
            )
        )
    }

    persistent_volume_claim: str | None = Field(
        default=None,
        description="Name of a PVC shared by all workers (ReadWriteMany).",
        max_length=253,
        pattern=DNS_LABEL,
    )
    host_path: str | None = Field(
        default=None,
        description="A folder on the node (single-node or dev use).",
        max_length=1024,
        pattern=r"^/",
    )
    empty_dir: bool | None = Field(
        default=None, description="A scratch folder that dies with the pod (no resume across epochs)."
    )


class Checkpoint(KubeModel):
    """Checkpoint storage mounted into every worker."""

    volume: CheckpointVolume = Field(description="The volume holding checkpoints.")
    path: str = Field(
        default="/checkpoints",
        description="Mount path; exported as LEPTON_CHECKPOINT_DIR.",
        max_length=1024,
        pattern=r"^/",
    )


FailureReason = Literal["OOMKilled", "Evicted", "Preempted", "Disrupted", "NodeLost", "PodLost", "PeerLost", "Error"]


class ExitCodes(KubeModel):
    """A set of container exit codes."""

    operator: Literal["In", "NotIn"] = Field(description="In: the code is one of values; NotIn: it is none of them.")
    values: list[Annotated[int, Field(ge=1, le=255)]] = Field(
        description="Exit codes (1-255).",
        min_length=1,
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class FailureRule(KubeModel):
    """Maps a failed worker to an action. Every criterion given must match."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.onExitCodes) || has(self.onReasons)",
                "spec.failurePolicy.rules: each rule needs onExitCodes or onReasons",
            )
        )
    }

    action: Literal["RestartJob", "FailJob", "Ignore"] = Field(
        description="RestartJob: new epoch from the last checkpoint; FailJob: the job fails; Ignore: the failure "
        "neither restarts nor fails the job."
    )
    on_exit_codes: ExitCodes | None = Field(default=None, description="Match the container's exit code.")
    on_reasons: list[FailureReason] | None = Field(
        default=None,
        description="Match the failure reason: OOMKilled, Evicted, Preempted, Disrupted, NodeLost, PodLost, PeerLost "
        "(the trainer saw a peer vanish mid-collective), Error.",
        max_length=8,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    counts_towards_max_restarts: bool | None = Field(
        default=None, description="Whether a RestartJob spends the restart budget (default: true)."
    )


class Backoff(KubeModel):
    """Delay before a counted restart's new pods: none for the first, then initial x 2^(n-2), capped."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.initialSeconds <= self.maxSeconds",
                "spec.failurePolicy.backoff.initialSeconds must be <= maxSeconds",
            )
        )
    }

    initial_seconds: int = Field(
        default=1, description="Delay before the second counted restart; doubles after.", ge=0, le=3600
    )
    max_seconds: int = Field(default=60, description="Cap of the delay.", ge=0, le=86400)


class FailurePolicy(KubeModel):
    """How failures are handled. Rules are tried in order; the built-in defaults come last."""

    max_restarts: int = Field(
        default=3,
        description="Counted restart epochs allowed before the job fails (BackoffLimitExceeded).",
        ge=0,
        le=1000,
    )
    backoff: Backoff = Field(default_factory=Backoff, description="Delay before a counted restart.")
    count_disruptions: bool = Field(
        default=False,
        description="Whether preemption, eviction and node loss spend the restart budget (default: they do not).",
    )
    rules: list[FailureRule] | None = Field(
        default=None,
        description="Custom rules, before the defaults: exit 1-127 -> FailJob; 128+, signals, OOMKilled -> "
        "RestartJob; PeerLost (a worker failed because a peer vanished) -> RestartJob; Evicted, Preempted, "
        "Disrupted, NodeLost, PodLost -> RestartJob (not counted).",
        max_length=16,
    )


class ElasticPolicy(KubeModel):
    """When an elastic job (minReplicas < replicas) changes its world size."""

    scale_up_cooldown_seconds: int = Field(
        default=60, description="Least time in an epoch before growing when GPUs free up.", ge=0, le=86400
    )
    unschedulable_timeout_seconds: int = Field(
        default=30, description="How long workers may stay unschedulable before the job shrinks.", ge=1, le=86400
    )


class TrainingJobSpec(KubeModel):
    """What to run and on what."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.minReplicas) || self.minReplicas <= self.replicas",
                "spec.minReplicas must be <= spec.replicas",
                field_path=".minReplicas",
            ),
            cel(
                "!has(self.maxReplicas) || self.replicas <= self.maxReplicas",
                "spec.replicas must be <= spec.maxReplicas",
                field_path=".replicas",
            ),
            cel(
                "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
                "spec.minReplicas must be <= spec.maxReplicas",
                field_path=".minReplicas",
            ),
            cel(
                "self.gpusPerReplica > 0 || !has(self.gpuType)",
                "spec.gpuType needs spec.gpusPerReplica > 0",
                field_path=".gpuType",
            ),
            cel(
                "self.image == self.image.trim()",
                "spec.image: no leading or trailing whitespace (the Pod API refuses it)",
                field_path=".image",
            ),
            cel("self.image == oldSelf.image", "spec.image is immutable", field_path=".image"),
            cel(
                "self.gpusPerReplica == oldSelf.gpusPerReplica",
                "spec.gpusPerReplica is immutable",
                field_path=".gpusPerReplica",
            ),
            cel(
                f"!has(self.env) || self.env.map(e, size(e.name) + (has(e.value) ? size(e.value) : 0)).sum() "
                f"<= {MAX_ENV_CHARS}",
                f"spec.env: names and values at most {MAX_ENV_CHARS} characters in all (each worker pod gets a "
                "copy, every epoch; put more in a ConfigMap and use valueFrom)",
                field_path=".env",
            ),
            cel(
                "(has(self.command) ? self.command.map(a, size(a)).sum() : 0) + "
                f"(has(self.args) ? self.args.map(a, size(a)).sum() : 0) <= {MAX_ARGS_CHARS}",
                f"spec.command and spec.args: at most {MAX_ARGS_CHARS} characters in all (each worker pod gets a "
                "copy, every epoch; put more in a file on the checkpoint volume or in the image)",
                field_path=".args",
            ),
            immutable("gpuType"),
            immutable("nprocPerNode"),
            immutable("checkpoint"),
            immutable("command"),
            immutable("args"),
            immutable("managedBy"),
            cel(
                "(has(self.template) == has(oldSelf.template) && (!has(self.template) || "
                "self.template == oldSelf.template)) || oldSelf.suspend",
                "spec.template can change only while the job is suspended (e.g. by Kueue on admission)",
                field_path=".template",
            ),
            *TEMPLATE_SPEC_RULES,
        )
    }

    image: str = Field(description="Trainer container image.", min_length=1, max_length=512)
    template: dict[str, Any] | None = template_field()
    command: list[Arg] | None = Field(
        default=None,
        description="Entrypoint override; the image's (torchrun) when empty.",
        max_length=64,
    )
    args: list[Arg] | None = Field(
        default=None,
        description="Arguments, e.g. ['-m', 'lepton_trainer.train'].",
        max_length=256,
    )
    env: list[EnvVar] | None = Field(
        default=None,
        description="Extra environment. Names of the trainer's contract are reserved.",
        max_length=128,
        json_schema_extra=validations(
            cel(
                f"self.all(e, !(e.name in [{_RESERVED_NAMES}]) && !({_RESERVED_PREFIX_RULE}))",
                "spec.env: names "
                + ", ".join(sorted(contract.RESERVED_NAMES))
                + " and the prefixes "
                + ", ".join(contract.RESERVED_PREFIXES)
                + " are reserved for the trainer's environment contract",
            )
        )
        | {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    replicas: int = Field(
        default=1, description="Workers (pods) wanted; the world size in nodes.", ge=1, le=MAX_REPLICAS
    )
    min_replicas: int | None = Field(
        default=None,
        description="Fewest workers the job may shrink to (elastic); defaults to replicas.",
        ge=1,
        le=MAX_REPLICAS,
    )
    max_replicas: int | None = Field(
        default=None,
        description="Most workers the job may grow to (elastic); defaults to replicas.",
        ge=1,
        le=MAX_REPLICAS,
    )
    gpus_per_replica: int = Field(default=1, description="nvidia.com/gpu per worker; 0 for CPU-only.", ge=0, le=16)
    gpu_type: str | None = Field(
        default=None,
        description="GPU product (node label nvidia.com/gpu.product), e.g. NVIDIA-H100-80GB-HBM3.",
        max_length=63,
        pattern=LABEL_VALUE,
    )
    resources: Resources | None = Field(default=None, description="CPU and memory per worker.")
    nproc_per_node: int | None = Field(
        default=None, description="Processes per worker; defaults to gpusPerReplica (1 on CPU).", ge=1, le=64
    )
    checkpoint: Checkpoint | None = Field(default=None, description="Checkpoint volume shared across epochs.")
    failure_policy: FailurePolicy = Field(default_factory=FailurePolicy, description="Failure handling.")
    elastic_policy: ElasticPolicy = Field(default_factory=ElasticPolicy, description="Elastic resizing.")
    budget: Budget | None = Field(default=None, description="Cost cap.")
    cost_policy: Literal["speed", "balanced", "cost"] = Field(
        default="balanced",
        description="Placement of new epochs: speed = fastest GPU type, on-demand; cost = cheapest $/GPU-hour, "
        "spot preferred; balanced = best speed per dollar (spot allowed).",
    )
    prices: PriceOverride | None = Field(default=None, description="Per-job price overrides.")
    suspend: bool = Field(default=False, description="Delete the pods but keep the job and its status.")
    managed_by: str | None = Field(
        default=None,
        description=f"Controller that owns this job; empty or {CONTROLLER_NAME} means this operator (Kueue's "
        "MultiKueue sets its own).",
        max_length=63,
        pattern=r"^[a-z0-9.-]+/[a-z0-9.-]+$",
    )
    active_deadline_seconds: int | None = Field(
        default=None, description="Fail the job after this long since it started.", ge=1, le=2**31
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, description="Delete the job this long after it finished.", ge=0, le=2**31
    )
    node_selector: dict[str, str] | None = Field(
        default=None,
        description="Node labels a worker's node must have.",
        max_length=64,
        json_schema_extra={"additionalProperties": {"type": "string", "maxLength": 63}},
    )
    tolerations: list[Toleration] | None = Field(
        default=None, description="Extra tolerations (the GPU taint is tolerated already).", max_length=32
    )
    priority_class_name: str | None = Field(
        default=None, description="PriorityClass of the worker pods.", max_length=253, pattern=DNS_LABEL
    )
    scheduler_name: str | None = Field(
        default=None,
        description="Scheduler of the worker pods (e.g. a gang scheduler).",
        max_length=253,
        pattern=DNS_LABEL,
    )
    topology_key: str | None = Field(
        default=None,
        description="A node label (e.g. topology.kubernetes.io/zone): all workers of an epoch go to nodes with one "
        "value of it. Applied through the epoch's PodGroup (schedulingConstraints.topology); needs the "
        "TopologyAwareWorkloadScheduling feature of Kubernetes v1.37 (alpha).",
        max_length=317,
        json_schema_extra=validations(
            cel(
                f"self.matches('{LABEL_KEY_CEL}') && self.split('/')[self.split('/').size() - 1].size() <= 63",
                "spec.topologyKey must be a node label key: [DNS subdomain/]name, the name at most 63 characters "
                "of alphanumerics, '-', '_', '.'",
            )
        ),
    )

    @property
    def min_size(self) -> int:
        return self.min_replicas or min(self.replicas, self.max_replicas or self.replicas)

    @property
    def max_size(self) -> int:
        return self.max_replicas or max(self.replicas, self.min_replicas or self.replicas)

    @property
    def target_size(self) -> int:
        """replicas clamped to the elastic range [min_size, max_size]."""
        return max(self.min_size, min(self.replicas, self.max_size))

    @property
    def procs_per_node(self) -> int:
        return self.nproc_per_node or max(self.gpus_per_replica, 1)

    def managed_here(self) -> bool:
        return self.managed_by in (None, CONTROLLER_NAME)


class TrainingJob(KubeModel):
    """A distributed training job: N GPU workers under torchrun-style elastic rendezvous."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": validations(
            cel(
                f"self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && "
                f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
                f"metadata.name must be a DNS-1035 label of at most {MAX_NAME_LENGTH} characters "
                "(it names the Service and the worker hostnames)",
            )
        )
    }

    api_version: str = Field(default="", description="lepton.ai/v1alpha1", max_length=64)
    kind: str = Field(default="", description="TrainingJob", max_length=64)
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: TrainingJobSpec = Field(description="What to run.")
    status: TrainingJobStatus = Field(default_factory=TrainingJobStatus, description="What the operator observed.")


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Ready", "type": "string", "jsonPath": ".status.ready", "description": "ready/desired workers"},
    {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts"},
    {"name": "Progress", "type": "string", "jsonPath": ".status.progress.summary"},
    {"name": "GPU-H", "type": "number", "jsonPath": ".status.cost.gpuHours"},
    {"name": "Cost", "type": "string", "jsonPath": ".status.cost.estimatedCostUsd", "description": "USD"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
]
