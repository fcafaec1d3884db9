"""Deterministic names and labels of a job's children."""

from __future__ import annotations

from typing import Any

from ..constants import (
    API_VERSION,
    LABEL_COMPONENT,
    LABEL_EPOCH,
    LABEL_JOB,
    LABEL_MANAGED_BY,
    LABEL_REPLICA,
    MANAGER,
)
from .common import TRAININGJOB_APP, managed_labels
from .common import selector as selector_of


def pod_name(job: str, epoch: int, rank: int) -> str:
    """`<job>-<epoch>-<rank>`: stable across operator restarts, so creates are idempotent."""
    return f"{job}-{epoch}-{rank}"


def service_name(job: str) -> str:
    """The headless Service giving every worker a DNS name for rendezvous."""
    return job


def slice_name(job: str, index: int, version: int = 4) -> str:
    """EndpointSlice `index` of the job's Service: `<job>-dns-<index>` for IPv4 addresses, `<job>-dns6-<index>`
    for IPv6 (the suffix makes it unique per job)."""
    return f"{job}-dns{'6' if version == 6 else ''}-{index}"


def job_labels(job: str) -> dict[str, str]:
    return {LABEL_JOB: job, **managed_labels(TRAININGJOB_APP)}


def pod_labels(job: str, epoch: int, rank: int) -> dict[str, str]:
    return {**job_labels(job), LABEL_COMPONENT: "worker", LABEL_EPOCH: str(epoch), LABEL_REPLICA: str(rank)}


def selector(job: str) -> str:
    """Label selector of a job's pods, as the scale subresource reports it."""
    return selector_of({LABEL_JOB: job, LABEL_MANAGED_BY: MANAGER})


def owner_reference(kind: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The controlling ownerReference every child carries: garbage-collected with its owner."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
