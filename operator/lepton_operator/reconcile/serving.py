"""Views of what serves an InferenceService: its Deployment, pods and what their servers report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..builders.inferenceservice import TEMPLATE_HASH


@dataclass(frozen=True, slots=True)
class DeploymentView:
    replicas: int
    ready_replicas: int
    updated_replicas: int
    template_hash: str


def deployment_view(body: dict[str, Any]) -> DeploymentView:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return DeploymentView(
        replicas=int(spec.get("replicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        template_hash=annotations.get(TEMPLATE_HASH, ""),
    )


@dataclass(frozen=True, slots=True)
class ServePod:
    name: str
    node: str | None
    ip: str | None
    phase: str
    ready: bool
    deleting: bool


def serve_pod(body: dict[str, Any]) -> ServePod:
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return ServePod(
        name=meta.get("name", ""),
        node=(body.get("spec") or {}).get("nodeName"),
        ip=status.get("podIP"),
        phase=status.get("phase") or "Pending",
        ready=ready,
        deleting=bool(meta.get("deletionTimestamp")),
    )


@dataclass(frozen=True)
class Probes:
    """What the servers said on the last scrape: pods with the model loaded, and load failures by pod."""

    answered: int = 0
    loaded: int = 0
    version: str | None = None
    failures: dict[str, str] = field(default_factory=dict)  # pod -> reason
