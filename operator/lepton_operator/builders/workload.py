"""The Kueue Workload of a queued TrainingJob (kueue.x-k8s.io/v1beta2), and the pod changes an admission makes.

Follows Kueue's job framework (pkg/controller/jobframework, v0.17.0): one Workload per job, owned by it
(controller ownerReference), named after the job's kind, name and UID (workload_names.go), labelled with the
job's UID (`kueue.x-k8s.io/job-uid`), queueName from the job's `kueue.x-k8s.io/queue-name` label, priority from
its `kueue.x-k8s.io/priority-class` label (a WorkloadPriorityClass, reconciler.go ExtractPriority), one pod set
whose count is the target size and, for an elastic job, minCount = minReplicas (partial admission).
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..api.trainingjob import TrainingJob
from ..constants import KUEUE_API, TRAININGJOB_KIND
from .names import job_labels, owner_reference
from .trainingjob import worker_pod

WORKLOADS = "workloads"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
POD_SET = "workers"
#: Growth of an admitted elastic job (ElasticJobsViaWorkloadSlices, pkg/workloadslicing): a new Workload naming the
#: one it replaces; Kueue admits it for the difference and finishes the old one (reason WorkloadSliceReplaced).
REPLACEMENT_FOR = "kueue.x-k8s.io/workload-slice-replacement-for"
SLICE_ANNOTATION = "lepton.ai/workload-slice"  # 0 for the first Workload, then 1, 2, ... (ours, for ordering)


def queue_name(job: TrainingJob) -> str | None:
    """The LocalQueue the job is submitted to, or None: then Kueue does not manage it."""
    value = (job.metadata.get("labels") or {}).get(QUEUE_LABEL)
    return str(value) if value else None


def priority_class(job: TrainingJob) -> str | None:
    value = (job.metadata.get("labels") or {}).get(PRIORITY_LABEL)
    return str(value) if value else None


def workload_name(job: TrainingJob, slice_index: int = 0) -> str:
    """`trainingjob-<name>-<5 hex of sha1(name, uid, slice)>`, at most 63 characters (workload_names.go's shape)."""
    meta = job.metadata
    seed = f"{meta['name']}/{meta.get('uid', '')}" + (f"/{slice_index}" if slice_index else "")
    digest = hashlib.sha1(seed.encode()).hexdigest()[:5]
    prefix = f"{TRAININGJOB_KIND.lower()}-{meta['name']}"[: 63 - 6].rstrip("-.")
    return f"{prefix}-{digest}"


def pod_set_template(job: TrainingJob) -> dict[str, Any]:
    """The workers' pod template (rank 0 of epoch 0 at the target size): what Kueue counts quota from."""
    pod = worker_pod(job, 0, 0, job.spec.target_size)
    meta = {k: v for k, v in pod["metadata"].items() if k in ("labels", "annotations")}
    return {"metadata": meta, "spec": pod["spec"]}


def workload(job: TrainingJob, priority: int | None, replaces: tuple[str, int] | None = None) -> dict[str, Any]:
    """The Workload to create (spec is immutable once admitted, so it is built once per job); with `replaces`
    (the admitted Workload's name and slice index), the slice that asks for the whole target size instead:
    Kueue admits a replacement slice only in full (PartialAdmission and slices exclude each other)."""
    spec, meta = job.spec, job.metadata
    pod_set: dict[str, Any] = {"name": POD_SET, "count": spec.target_size, "template": pod_set_template(job)}
    if spec.min_size < spec.target_size and replaces is None:
        pod_set["minCount"] = spec.min_size
    index = replaces[1] + 1 if replaces else 0
    annotations = {SLICE_ANNOTATION: str(index)}
    if replaces:
        annotations[REPLACEMENT_FOR] = f"{meta['namespace']}/{replaces[0]}"
    wl_spec: dict[str, Any] = {"queueName": queue_name(job), "podSets": [pod_set]}
    if (pc := priority_class(job)) and priority is not None:
        wl_spec["priorityClassRef"] = {"group": "kueue.x-k8s.io", "kind": "WorkloadPriorityClass", "name": pc}
        wl_spec["priority"] = priority
    labels = {**job_labels(meta["name"]), JOB_UID_LABEL: str(meta.get("uid", ""))}
    return {
        "apiVersion": KUEUE_API,
        "kind": "Workload",
        "metadata": {
            "name": workload_name(job, index),
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(TRAININGJOB_KIND, meta)],
        },
        "spec": wl_spec,
    }


def admit(pod: dict[str, Any], node_selector: dict[str, str], tolerations: list[dict[str, Any]]) -> dict[str, Any]:
    """A worker pod with the admitted flavor's node labels and tolerations added (RunWithPodSetsInfo)."""
    if pod.get("kind") != "Pod" or not (node_selector or tolerations):
        return pod
    spec = pod["spec"]
    if node_selector:
        spec["nodeSelector"] = {**(spec.get("nodeSelector") or {}), **node_selector}
    if tolerations:
        have = spec.get("tolerations") or []
        spec["tolerations"] = [*have, *(t for t in tolerations if t not in have)]
    return pod
