"""An epoch's gang: a scheduling.k8s.io/v1beta1 PodGroup (Kubernetes v1.37, feature GenericWorkload) and the
workers that join it through spec.schedulingGroup. kube-scheduler's GangScheduling plugin binds none of the
group's pods until minCount of them fit at once."""

from __future__ import annotations

from typing import Any

from ..api.trainingjob import TrainingJob
from ..constants import LABEL_EPOCH, TRAININGJOB_KIND
from .names import job_labels, owner_reference

POD_GROUP_API = "scheduling.k8s.io/v1beta1"
POD_GROUP_PLURAL = "podgroups"


def pod_group_name(job: str, epoch: int) -> str:
    """`<job>-<epoch>`: one group per epoch (minCount and disruption mode are fixed for a group's pods)."""
    return f"{job}-{epoch}"


def pod_group(job: TrainingJob, epoch: int, world_size: int) -> dict[str, Any]:
    """The epoch's PodGroup: all `world_size` workers or none (gang policy, minCount = world size), disrupted
    together (disruptionMode All: the operator restarts the whole epoch when one worker fails), and, with
    spec.topologyKey, placed in one domain of that node label (schedulingConstraints.topology)."""
    meta = job.metadata
    spec: dict[str, Any] = {
        "schedulingPolicy": {"gang": {"minCount": world_size}},
        "disruptionMode": {"all": {}},
    }
    if job.spec.topology_key:
        spec["schedulingConstraints"] = {"topology": [{"key": job.spec.topology_key}]}
    return {
        "apiVersion": POD_GROUP_API,
        "kind": "PodGroup",
        "metadata": {
            "name": pod_group_name(meta["name"], epoch),
            "namespace": meta["namespace"],
            "labels": {**job_labels(meta["name"]), LABEL_EPOCH: str(epoch)},
            "ownerReferences": [owner_reference(TRAININGJOB_KIND, meta)],
        },
        "spec": spec,
    }


def join(pod: dict[str, Any], group: str) -> dict[str, Any]:
    """The pod as a member of `group` (spec.schedulingGroup is immutable: set at creation only)."""
    pod["spec"]["schedulingGroup"] = {"podGroupName": group}
    return pod
