"""Slim, typed views of what reconcile reads: pods (of both kinds), nodes, Deployments, what servers report.

Made by the informers' callbacks from raw objects; small in memory at 10k pods.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.template import TRAINER
from ..builders.inferenceservice import TEMPLATE_HASH
from ..constants import GPU_RESOURCE, LABEL_EPOCH, LABEL_REPLICA


@dataclass(frozen=True, slots=True)
class PodView:
    name: str
    epoch: int
    rank: int
    phase: str  # Pending, Running, Succeeded, Failed, Unknown
    node: str | None = None
    ready: bool = False
    deleting: bool = False
    unschedulable: str | None = None  # the scheduler's message while the pod cannot be placed
    disrupted: str | None = None  # reason of a DisruptionTarget condition (eviction, preemption)
    exit_code: int | None = None
    reason: str | None = None  # container termination reason (OOMKilled, Error, ...) or pod reason (Evicted)
    message: str | None = None  # termination message or pod message
    started_at: str | None = None
    created: str | None = None  # metadata.creationTimestamp
    finished_at: str | None = None  # when the container terminated
    ip: str | None = None  # status.podIP


def _label_int(labels: dict[str, Any], key: str) -> int:
    """A numeric label; -1 when missing or not a number (anyone who may edit pods can write labels)."""
    value = labels.get(key)
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else -1


def _statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The trainer's container status when the pod has one (sidecars from spec.template say nothing of how the
    worker ended), else every container's (a server)."""
    statuses: list[dict[str, Any]] = (pod.get("status") or {}).get("containerStatuses") or []
    return [cs for cs in statuses if cs.get("name") == TRAINER] or statuses


def _terminated(pod: dict[str, Any]) -> dict[str, Any]:
    for cs in _statuses(pod):
        term = (cs.get("state") or {}).get("terminated")
        if term:
            return dict(term)
    return {}


def pod_view(pod: dict[str, Any]) -> PodView:
    """Summarise a raw Pod dict (a worker, or a server: its epoch and rank are then -1)."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    labels = meta.get("labels") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    scheduled = conditions.get("PodScheduled") or {}
    ready = conditions.get("Ready") or {}
    disruption = conditions.get("DisruptionTarget") or {}
    term = _terminated(pod)
    running: dict[str, Any] = next(
        (cs["state"]["running"] for cs in _statuses(pod) if (cs.get("state") or {}).get("running")),
        {},
    )
    return PodView(
        name=meta.get("name", ""),
        epoch=_label_int(labels, LABEL_EPOCH),
        rank=_label_int(labels, LABEL_REPLICA),
        phase=status.get("phase") or "Pending",
        node=(pod.get("spec") or {}).get("nodeName"),
        ready=ready.get("status") == "True",
        deleting=bool(meta.get("deletionTimestamp")),
        unschedulable=(scheduled.get("message") or "unschedulable")
        if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable"
        else None,
        disrupted=(disruption.get("reason") or "DisruptionTarget") if disruption.get("status") == "True" else None,
        exit_code=term.get("exitCode"),
        reason=term.get("reason") or status.get("reason"),
        message=term.get("message") or status.get("message"),
        started_at=running.get("startedAt") or term.get("startedAt"),
        created=meta.get("creationTimestamp"),
        finished_at=term.get("finishedAt"),
        ip=status.get("podIP"),
    )


# Taints the node lifecycle controller (or a fault) puts on a node that lost contact.
LOST_TAINTS = frozenset({"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"})


@dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    labels: Mapping[str, str]
    taints: tuple[tuple[str, str, str], ...]  # (key, value, effect)
    gpus: int  # allocatable nvidia.com/gpu
    unschedulable: bool
    ready: bool

    @property
    def lost(self) -> bool:
        return not self.ready or any(key in LOST_TAINTS for key, _, _ in self.taints)


_COUNT_SUFFIX = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


def _count(value: Any) -> int:
    """An extended resource's count as the API server renders it ('8', and 1000 as '1k'); 0 when not one."""
    m = re.fullmatch(r"([0-9]{1,12})([kMGTPE]?)", str(value))
    return int(m.group(1)) * _COUNT_SUFFIX[m.group(2)] if m else 0


def node_view(node: Mapping[str, Any]) -> NodeView:
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return NodeView(
        name=meta.get("name", ""),
        labels=dict(meta.get("labels") or {}),
        taints=tuple((t.get("key", ""), t.get("value", ""), t.get("effect", "")) for t in spec.get("taints") or []),
        gpus=_count((status.get("allocatable") or {}).get(GPU_RESOURCE, 0)),
        unschedulable=bool(spec.get("unschedulable")),
        ready=ready.get("status") == "True",
    )


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


@dataclass(frozen=True)
class Probes:
    """What the servers said on the last scrape: pods with the model loaded, and load failures by pod."""

    answered: int = 0
    loaded: int = 0
    version: str | None = None
    failures: dict[str, str] = field(default_factory=dict)  # pod -> reason
