"""Factories for unit tests: a TrainingJob and raw/viewed pods in given states."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lepton_operator.api.trainingjob import TrainingJob
from lepton_operator.api.trainingjob_status import TrainingJobStatus
from lepton_operator.builders.trainingjob import worker_pod
from lepton_operator.reconcile.trainingjob import Plan
from lepton_operator.reconcile.views import PodView, pod_view

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


Status = dict[str, Any] | TrainingJobStatus | None


def make_job(status: Status = None, **spec: Any) -> TrainingJob:
    return TrainingJob.model_validate(job_body(status, **spec))


def wire(p: Plan) -> dict[str, Any]:
    """The status a plan writes, as stored ({} when it writes none)."""
    return p.status.to_wire() if p.status is not None else {}


def stored(job: TrainingJob, p: Plan) -> TrainingJob:
    """The job as the next pass reads it, once `p`'s status is stored."""
    return job.model_copy(update={"status": p.status or job.status})


def job_body(status: Status = None, **spec: Any) -> dict[str, Any]:
    """The job as the API server stores it."""
    return {
        "apiVersion": "lepton.ai/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {
            "name": "mnist",
            "namespace": "ml",
            "uid": "uid-1",
            "generation": 1,
            "resourceVersion": "7",
        },
        "spec": {"image": "ghcr.io/lepton/trainer:1", "replicas": 2, "gpusPerReplica": 4, **spec},
        "status": status.to_wire() if isinstance(status, TrainingJobStatus) else status or {},
    }


def pod(job: TrainingJob, epoch: int, rank: int, phase: str = "Running", **status: Any) -> PodView:
    """A pod as the builder renders it, with a status like a kubelet's."""
    raw = worker_pod(job, epoch, rank, job.spec.replicas)
    raw["spec"]["nodeName"] = status.pop("node", "gpu-0") if phase != "Pending" else status.pop("node", None)
    st: dict[str, Any] = {"phase": phase, "conditions": [], **status.pop("extra", {})}
    if phase == "Running":
        st["conditions"].append({"type": "Ready", "status": "True"})
        st["containerStatuses"] = [{"name": "trainer", "state": {"running": {"startedAt": "2026-11-23T11:00:00Z"}}}]
    if phase in ("Succeeded", "Failed"):
        term = {"exitCode": status.pop("exit_code", 0 if phase == "Succeeded" else 1)}
        for key in ("reason", "message"):
            if key in status:
                term[key] = status.pop(key)
        st["containerStatuses"] = [{"name": "trainer", "state": {"terminated": term}}]
    st["conditions"] += status.pop("conditions", [])
    raw["status"] = st
    return pod_view(raw)


def running(job: TrainingJob, epoch: int = 0) -> list[PodView]:
    return [pod(job, epoch, r) for r in range(job.spec.replicas)]
