"""Operator configuration from the environment (LEPTON_* variables)."""

from __future__ import annotations

import fnmatch
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorConfig(BaseSettings):
    """Settings read once at start-up."""

    model_config = SettingsConfigDict(env_prefix="LEPTON_", extra="ignore")

    namespaces: list[str] = Field(
        default_factory=list,
        description="Namespaces to watch; empty = all. Glob patterns ('team-*') watch cluster-wide and skip "
        "the rest in the operator (no namespace discovery, so no RBAC on namespaces).",
    )

    @property
    def patterns(self) -> list[str]:
        return [ns for ns in self.namespaces if any(ch in ns for ch in "*?[")]

    @property
    def exact_namespaces(self) -> list[str]:
        """What kopf watches: exact names only; with any pattern, everything (filtered by `watches`)."""
        return [] if self.patterns else list(self.namespaces)

    def watches(self, namespace: str | None) -> bool:
        """Whether a namespace is this operator's (always true without patterns: kopf filtered already)."""
        pats = self.patterns
        return not pats or (namespace is not None and any(fnmatch.fnmatchcase(namespace, p) for p in pats))

    api_connections: int = Field(default=64, ge=1, le=1024, description="Concurrent API connections.")
    reconcile_workers: int = Field(
        default=16, ge=1, le=256, description="TrainingJob passes run at once (each key one at a time)."
    )
    status_batch_seconds: float = Field(
        default=0.3,
        ge=0,
        le=10,
        description="A job's pod progress events (scheduled, running, ready) within this many seconds make one "
        "pass and one status write; failures and deletions act at once.",
    )
    status_hold_seconds: float = Field(
        default=30.0,
        ge=0,
        le=300,
        description="In a burst (more jobs queued than reconcile workers), a new job's Pending progress (workers "
        "created, scheduled) is written with its Running status, once, or after this many seconds; warnings, "
        "failures and every other phase are written at once. 0 writes every change at once.",
    )
    requeue_backoff_max: float = Field(default=30.0, gt=0, description="Cap of the retry delay after API errors.")
    metrics_port: int = Field(default=8000, ge=0, le=65535, description="Prometheus /metrics port; 0 disables it.")
    listen_host: str = Field(default="127.0.0.1", description="Address of /metrics and /healthz (0.0.0.0 in a pod).")
    prices_configmap: str = Field(
        default="",
        description="namespace/name of the price ConfigMap (key prices.yaml); empty = the built-in prices.",
        pattern=r"^([a-z0-9-]+/[a-z0-9.-]+)?$",
    )
    liveness_port: int = Field(default=8080, ge=0, le=65535, description="kopf's /healthz port; 0 disables it.")
    serve_image: str = Field(
        default="ghcr.io/lepton-ai/lepton-trainer:0.1.0",
        description="Default InferenceService server image (the trainer image; serve entrypoint).",
    )
    allowed_hostpath_prefixes: list[str] = Field(
        default_factory=list,
        description="Folders under which a spec may name a hostPath volume (checkpoint or model); none by "
        "default: a hostPath reaches the node's filesystem.",
    )
    scrape_interval: float = Field(
        default=1.0, gt=0, le=60, description="Seconds between scrapes of the model servers' /metrics (autoscaler)."
    )
    gang_scheduling: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: when the cluster serves scheduling.k8s.io/v1beta1 PodGroups (Kubernetes v1.37, "
        "GenericWorkload), every epoch's workers form one PodGroup (all bound or none); off: never.",
    )
    kueue_integration: bool = Field(
        default=False,
        description="Act as Kueue's integration for TrainingJobs labelled kueue.x-k8s.io/queue-name: a Workload per "
        "job, no worker before Kueue admits it (docs/kueue.md). Needs Kueue's CRDs and the chart's kueue RBAC.",
    )
    kueue_workload_slices: bool = Field(
        default=False,
        description="Grow elastic TrainingJobs admitted below their target with Kueue Workload slices. Only with "
        "Kueue's ElasticJobsViaWorkloadSlices feature gate on: without it a slice is a second Workload of its own.",
    )
    leader_election: bool = Field(
        default=False, description="Elect a leader among replicas on a Lease; only the leader reconciles."
    )
    leader_election_namespace: str = Field(
        default="", description="Namespace of the Lease (the operator's own; required with leader_election)."
    )
    leader_election_name: str = Field(default="lepton-operator", description="Name of the Lease.", max_length=253)
    lease_duration: float = Field(default=15.0, gt=0, le=300, description="Seconds a Lease holds unrenewed.")
    renew_deadline: float = Field(
        default=10.0, gt=0, le=300, description="Seconds the leader keeps acting without a renewal (< lease)."
    )
    retry_period: float = Field(default=2.0, gt=0, le=60, description="Seconds between acquire/renew attempts.")

    @model_validator(mode="after")
    def _election(self) -> OperatorConfig:
        if self.leader_election and not self.leader_election_namespace:
            raise ValueError("LEPTON_LEADER_ELECTION_NAMESPACE is required with LEPTON_LEADER_ELECTION")
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs retry_period < renew_deadline < lease_duration")
        return self
