"""InferenceService: a served model (a Deployment + Service), autoscaled on in-flight requests."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import DNS_LABEL, LABEL_VALUE, Condition, KubeModel, cel, validations
from .pod import Resources, Toleration

MAX_REPLICAS = 256
MAX_NAME_LENGTH = 52  # the Deployment's ReplicaSets and pods append hashes; Service names are DNS-1035


class ModelVolume(KubeModel):
    """The volume holding the model: a PersistentVolumeClaim or a host path, mounted read-only."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.persistentVolumeClaim) != has(self.hostPath)",
                "spec.model.volume: set exactly one of persistentVolumeClaim, hostPath",
            )
        )
    }

    persistent_volume_claim: str | None = Field(
        default=None, description="Name of a PVC (ReadOnlyMany or ReadWriteMany).", max_length=253, pattern=DNS_LABEL
    )
    host_path: str | None = Field(default=None, description="A folder on the node.", max_length=1024, pattern=r"^/")
    mount_path: str = Field(
        default="/models", description="Where the volume is mounted in the server.", max_length=1024, pattern=r"^/"
    )


class ModelSource(KubeModel):
    """Where the exported model (lepton-model directory) comes from."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.fromTrainingJob) != has(self.modelPath)",
                "spec.model: set exactly one of fromTrainingJob and modelPath",
            ),
            cel("!has(self.volume) || has(self.modelPath)", "spec.model.volume goes with modelPath"),
        )
    }

    from_training_job: str | None = Field(
        default=None,
        description="A TrainingJob in this namespace: its export (<checkpoint path>/export on its checkpoint volume) "
        "is served once the job has succeeded.",
        max_length=63,
        pattern=DNS_LABEL,
    )
    model_path: str | None = Field(
        default=None,
        description="Path of the export directory inside the server container.",
        max_length=1024,
        pattern=r"^/",
    )
    volume: ModelVolume | None = Field(default=None, description="Volume to mount for modelPath.")


class Autoscaling(KubeModel):
    """Knative-KPA-like scaling on in-flight requests (see docs/inferenceservice.md)."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.panicWindowSeconds <= self.stableWindowSeconds",
                "spec.autoscaling.panicWindowSeconds must be <= stableWindowSeconds",
            )
        )
    }

    enabled: bool = Field(default=True, description="false: spec.replicas (or minReplicas) is kept as is.")
    target_in_flight: float = Field(
        default=4.0, description="In-flight requests per replica the autoscaler aims for.", gt=0, le=10000
    )
    stable_window_seconds: int = Field(default=60, description="Averaging window of normal decisions.", ge=2, le=3600)
    panic_window_seconds: int = Field(
        default=6, description="Short window that triggers panic mode (scale up fast, never down).", ge=1, le=600
    )
    panic_threshold: float = Field(
        default=2.0, description="Panic when demand over the panic window >= this x current capacity.", ge=1.1, le=100
    )
    max_scale_down_rate: float = Field(
        default=2.0, description="At most divide the replicas by this per decision.", ge=1.0, le=1000
    )


class Batching(KubeModel):
    """Dynamic batching in the server: one forward pass for requests that arrive close together."""

    max_batch_size: int = Field(default=32, description="Rows per forward pass; 1 turns batching off.", ge=1, le=1024)
    max_wait_ms: float = Field(default=5.0, description="Longest wait for a batch to fill, ms.", ge=0, le=1000)


class InferenceServiceSpec(KubeModel):
    """What to serve and how much of it."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "spec.minReplicas must be <= spec.maxReplicas",
                field_path=".minReplicas",
            ),
            cel(
                "!has(self.replicas) || (self.minReplicas <= self.replicas && self.replicas <= self.maxReplicas)",
                "spec.replicas must be within [minReplicas, maxReplicas]",
                field_path=".replicas",
            ),
            cel("self.gpus > 0 || !has(self.gpuType)", "spec.gpuType needs spec.gpus > 0", field_path=".gpuType"),
            cel(
                "!has(self.image) || self.image == self.image.trim()",
                "spec.image: no leading or trailing whitespace (the Pod API refuses it)",
                field_path=".image",
            ),
        )
    }

    model: ModelSource = Field(description="The model to serve.")
    image: str | None = Field(
        default=None,
        description="Server image; the operator's trainer image (serve entrypoint) when empty.",
        max_length=512,
    )
    resources: Resources | None = Field(default=None, description="CPU and memory per replica.")
    gpus: int = Field(default=1, description="nvidia.com/gpu per replica; 0 for CPU-only.", ge=0, le=16)
    gpu_type: str | None = Field(
        default=None,
        description="GPU product (node label nvidia.com/gpu.product).",
        max_length=63,
        pattern=LABEL_VALUE,
    )
    tolerations: list[Toleration] | None = Field(
        default=None, description="Extra tolerations (the GPU taint is tolerated when gpus > 0).", max_length=32
    )
    replicas: int | None = Field(
        default=None,
        description="Replicas when autoscaling is off; where autoscaling starts otherwise (kubectl scale sets it).",
        ge=1,
        le=MAX_REPLICAS,
    )
    min_replicas: int = Field(default=1, description="Fewest replicas.", ge=1, le=MAX_REPLICAS)
    max_replicas: int = Field(default=4, description="Most replicas.", ge=1, le=MAX_REPLICAS)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="Load-driven scaling.")
    batching: Batching = Field(default_factory=Batching, description="Dynamic batching in the server.")


class ServingCost(KubeModel):
    """What the running replicas cost per hour (the TrainingJob price table)."""

    rate_usd_per_hour: str = Field(default="0.00", description="USD per hour of the running replicas.", max_length=32)
    price_source: str = Field(default="", description="Which price table was used.", max_length=256)


class InferenceServiceStatus(KubeModel):
    """What the operator observed."""

    conditions: list[Condition] | None = Field(
        default=None,
        description="Ready and ModelLoaded (metav1.Condition).",
        max_length=8,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(default=None, description="Spec generation last acted on.", ge=0, le=2**62)
    url: str | None = Field(default=None, description="In-cluster URL of the model (OIP v2).", max_length=512)
    model_path: str | None = Field(default=None, description="The export directory the servers load.", max_length=1024)
    model_version: str | None = Field(default=None, description="Weights version the servers report.", max_length=64)
    replicas: int | None = Field(default=None, description="Replicas wanted now.", ge=0, le=MAX_REPLICAS)
    ready_replicas: int | None = Field(default=None, description="Replicas ready.", ge=0, le=MAX_REPLICAS)
    ready: str | None = Field(default=None, description="The Ready condition's status, for kubectl get.", max_length=8)
    replica_summary: str | None = Field(default=None, description="ready/desired, for kubectl get.", max_length=16)
    selector: str | None = Field(default=None, description="Label selector of the pods (scale).", max_length=256)
    in_flight: str | None = Field(default=None, description="Mean in-flight requests, all replicas.", max_length=32)
    panic: bool | None = Field(default=None, description="The autoscaler is in panic mode.")
    last_scale_time: str | None = Field(default=None, description="When replicas last changed.", max_length=64)
    cost: ServingCost | None = Field(default=None, description="Cost per hour.")
    message: str | None = Field(default=None, description="Why it is (not) ready.", max_length=4096)


class InferenceService(KubeModel):
    """A model served over HTTP (Open Inference Protocol v2) with dynamic batching and autoscaling."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": validations(
            cel(
                f"self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && "
                f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
                f"metadata.name must be a DNS-1035 label of at most {MAX_NAME_LENGTH} characters",
            )
        )
    }

    api_version: str = Field(default="", description="lepton.ai/v1alpha1", max_length=64)
    kind: str = Field(default="", description="InferenceService", max_length=64)
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: InferenceServiceSpec = Field(description="What to serve.")
    status: InferenceServiceStatus = Field(
        default_factory=InferenceServiceStatus, description="What the operator observed."
    )


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "URL", "type": "string", "jsonPath": ".status.url"},
    {"name": "Ready", "type": "string", "jsonPath": ".status.ready"},
    {"name": "Replicas", "type": "string", "jsonPath": ".status.replicaSummary", "description": "ready/desired"},
    {"name": "Cost/h", "type": "string", "jsonPath": ".status.cost.rateUsdPerHour", "description": "USD per hour"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "In-flight", "type": "string", "jsonPath": ".status.inFlight", "priority": 1},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
]
