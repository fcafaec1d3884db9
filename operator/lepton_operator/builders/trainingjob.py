"""Render a TrainingJob's headless Service, its EndpointSlices and worker pods."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from lepton_trainer import contract
from lepton_trainer.launch import merge_rdzv_conf

from ..api.trainingjob import TrainingJob
from ..constants import HOSTNAME_LABEL, MANAGER, TRAININGJOB_KIND
from .common import claim_or_host_path, gpu_product_term, mount_volume, required_affinity, secure, tolerations
from .names import job_labels, owner_reference, pod_labels, pod_name, service_name, slice_name
from .placement import SPOT_TOLERATION, Placement
from .resources import container_resources
from .template import add_shm, merge_affinity, merge_env, merge_resources, pod_metadata, split

CONTAINER = "trainer"
CHECKPOINT_VOLUME = "checkpoints"
#: A worker's DNS record: (hostname = pod name, IPv4 address, node or None).
Endpoint = tuple[str, str, str | None]
#: The API server's limit of endpoints in one EndpointSlice.
SLICE_CAPACITY = 1000
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SLICE_MANAGER_LABEL = "endpointslice.kubernetes.io/managed-by"
# The launcher's fast-failure-detection defaults (1 s keep-alive, 3 misses), injected so that a plain
# torchrun command in the pod gets them too; a slow image pull is covered by the long join timeout.
RDZV_CONF = merge_rdzv_conf("join_timeout=900")


def headless_service(job: TrainingJob) -> dict[str, Any]:
    """DNS for `<pod>.<job>.<ns>.svc`. No selector: the operator writes its EndpointSlices (`endpoint_slice`).

    A Service selecting the workers would make the scheduler spread them (its default PodTopologySpread lists
    the Services selecting each pod: +2.6-3.0 ms of scheduler CPU per pod, 15 % of a burst's pods/s measured
    with bench/scale.py's bare client) and would have the endpoint controllers rewrite an EndpointSlice and an
    Endpoints object at every worker's change; the operator writes one EndpointSlice when the addresses
    change (once per job in a burst).
    """
    name = job.metadata["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(name),
            "namespace": job.metadata["namespace"],
            "labels": job_labels(name),
            "ownerReferences": [owner_reference(TRAININGJOB_KIND, job.metadata)],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "ports": [{"name": "rendezvous", "port": contract.RDZV_PORT, "targetPort": contract.RDZV_PORT}],
        },
    }


def slice_endpoints(namespace: str, endpoints: Sequence[Endpoint]) -> list[dict[str, Any]]:
    """EndpointSlice endpoints: every worker ready for DNS as soon as it has an address (rendezvous waits for no
    readiness probe, as publishNotReadyAddresses would give)."""
    return [
        {
            "addresses": [ip],
            "conditions": {"ready": True},
            "hostname": host,
            **({"nodeName": node} if node else {}),
            "targetRef": {"kind": "Pod", "namespace": namespace, "name": host},
        }
        for host, ip, node in endpoints
    ]


def endpoint_slice(job: TrainingJob, index: int, version: int, endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    """EndpointSlice `index` of the job's headless Service for IPv`version` addresses (SLICE_CAPACITY at most)."""
    name, ns = job.metadata["name"], job.metadata["namespace"]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name(name, index, version),
            "namespace": ns,
            "labels": {**job_labels(name), SERVICE_NAME_LABEL: service_name(name), SLICE_MANAGER_LABEL: MANAGER},
            "ownerReferences": [owner_reference(TRAININGJOB_KIND, job.metadata)],
        },
        "addressType": f"IPv{version}",
        "ports": [{"name": "rendezvous", "port": contract.RDZV_PORT, "protocol": "TCP"}],
        "endpoints": slice_endpoints(ns, endpoints),
    }


def rendezvous_endpoint(job: TrainingJob, epoch: int) -> str:
    """Rank 0 of the epoch hosts the c10d store; a new epoch gets a new host, so no single point of failure."""
    name = job.metadata["name"]
    return f"{pod_name(name, epoch, 0)}.{service_name(name)}.{job.metadata['namespace']}.svc:{contract.RDZV_PORT}"


def contract_env(job: TrainingJob, epoch: int, rank: int, world_size: int) -> dict[str, str]:
    """The environment contract of lepton_trainer.contract, for one worker."""
    spec, meta = job.spec, job.metadata
    env = {
        contract.NNODES: f"{world_size}:{world_size}",
        contract.NPROC_PER_NODE: str(spec.procs_per_node),
        contract.RDZV_BACKEND: "c10d",
        contract.RDZV_ENDPOINT: rendezvous_endpoint(job, epoch),
        contract.RDZV_ID: f"{meta['uid']}-{epoch}",
        contract.RDZV_CONF: RDZV_CONF,
        contract.MAX_RESTARTS: "0",
        contract.MONITOR_INTERVAL: "0.5",
        contract.JOB_NAME: meta["name"],
        contract.JOB_ID: meta["uid"],
        contract.NAMESPACE: meta["namespace"],
        contract.REPLICA_INDEX: str(rank),
        contract.REPLICAS: str(world_size),
        contract.RESTART_EPOCH: str(epoch),
        contract.CHECKPOINT_DIR: spec.checkpoint.path if spec.checkpoint else "/tmp/checkpoints",
        contract.PROGRESS_FILE: "/tmp/lepton-progress.json",
    }
    assert set(env) == contract.INJECTED, "builder and contract disagree"
    return env


def checkpoint_folder(meta: dict[str, Any]) -> str:
    """A job's own folder on its checkpoint volume, `<namespace>/<name>-<uid>`: jobs sharing a volume never
    resume from or prune each other's checkpoints, and a job made again under the same name starts afresh."""
    return f"{meta['namespace']}/{meta['name']}-{meta['uid']}"


def checkpoint_source(job: TrainingJob, read_only: bool = False) -> tuple[dict[str, Any], str | None] | None:
    """The Pod volume source holding the job's checkpoint folder, and the subPath to mount (None: the root).

    Claims and hostPaths alike are mounted at the job's folder as a subPath: the kubelet creates a missing
    subPath with the volume root's mode (and setgid group), so a root the trainer's user or fsGroup can write
    gives a folder it can write; a hostPath naming the folder itself would be made root-owned, mode 0755.
    """
    ckpt = job.spec.checkpoint
    if ckpt is None:
        return None
    vol, folder = ckpt.volume, checkpoint_folder(job.metadata)
    if vol.persistent_volume_claim or vol.host_path:
        kind = "Directory" if read_only else "DirectoryOrCreate"
        return claim_or_host_path(
            vol.persistent_volume_claim, vol.host_path, read_only=read_only, host_type=kind
        ), folder
    return {"emptyDir": {}}, None  # dies with the pod: its own already


def _node_affinity(
    job: TrainingJob, avoid_nodes: Collection[str], placement: Placement | None, shun_nodes: Collection[str] = ()
) -> dict[str, Any] | None:
    """Require the GPU product, keep away from nodes the operator saw fail, prefer what costPolicy ranks best
    and nodes other than `shun_nodes` (suspected, not known, to be lost: a preference never blocks a pod)."""
    terms: list[dict[str, Any]] = []
    if job.spec.gpu_type:
        terms.append(gpu_product_term(job.spec.gpu_type))
    if avoid_nodes:
        terms.append({"key": HOSTNAME_LABEL, "operator": "NotIn", "values": sorted(avoid_nodes)})
    affinity: dict[str, Any] = required_affinity(terms) if terms else {}
    preferred = placement.preferred_terms() if placement and placement.preferred else []
    if shun_nodes:
        away = {"key": HOSTNAME_LABEL, "operator": "NotIn", "values": sorted(shun_nodes)}
        preferred.insert(0, {"weight": 100, "preference": {"matchExpressions": [away]}})
    if preferred:
        affinity["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    return {"nodeAffinity": affinity} if affinity else None


def _trainer(job: TrainingJob, trainer: dict[str, Any], env: list[dict[str, Any]]) -> dict[str, Any]:
    """The template's trainer container with what the operator owns merged in (flat fields over the template)."""
    spec = job.spec
    container = trainer | {
        "name": CONTAINER,
        "image": spec.image,
        "env": merge_env(env, trainer.get("env") or [], [e.to_wire() for e in spec.env or []]),
        "ports": [
            {"name": "rendezvous", "containerPort": contract.RDZV_PORT},
            {"name": "progress", "containerPort": contract.PROGRESS_PORT},
            *(trainer.get("ports") or []),
        ],
        "terminationMessagePath": contract.TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    ours = container_resources(spec.resources, spec.gpus_per_replica) or {}
    if resources := merge_resources(trainer.get("resources"), ours):
        container["resources"] = resources
    return container


def worker_pod(
    job: TrainingJob,
    epoch: int,
    rank: int,
    world_size: int,
    avoid_nodes: Collection[str] = (),
    placement: Placement | None = None,
    shun_nodes: Collection[str] = (),
) -> dict[str, Any]:
    """One worker of one epoch, from spec.template (see builders/template.py for which setting wins).
    restartPolicy Never: the operator, not the kubelet, decides restarts."""
    spec, meta = job.spec, job.metadata
    name = pod_name(meta["name"], epoch, rank)
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in contract_env(job, epoch, rank, world_size).items()]
    env += [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": f}}} for k, f in contract.INJECTED_FIELDS.items()]
    template_meta, pod_spec, trainer = split(spec.template)
    container = _trainer(job, trainer, env)
    pod_spec.update(restartPolicy="Never", hostname=name, subdomain=service_name(meta["name"]))
    pod_spec["containers"] = [container, *pod_spec["containers"]]
    pod_spec["tolerations"] = [
        *(pod_spec.get("tolerations") or []),
        *tolerations(spec.gpus_per_replica, spec.tolerations),
    ]
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    pod_spec.setdefault("enableServiceLinks", False)
    secure(pod_spec, *pod_spec["containers"], *(pod_spec.get("initContainers") or []))
    if placement and placement.tolerate_spot and spec.gpus_per_replica:
        pod_spec["tolerations"].append(SPOT_TOLERATION)
    if affinity := merge_affinity(pod_spec.get("affinity"), _node_affinity(job, avoid_nodes, placement, shun_nodes)):
        pod_spec["affinity"] = affinity
    if spec.checkpoint and (found := checkpoint_source(job)):
        source, sub_path = found
        mount_volume(pod_spec, container, CHECKPOINT_VOLUME, source, spec.checkpoint.path, sub_path=sub_path)
    add_shm(pod_spec, container)
    if spec.node_selector:
        pod_spec["nodeSelector"] = {**(pod_spec.get("nodeSelector") or {}), **spec.node_selector}
    for key, value in (("priorityClassName", spec.priority_class_name), ("schedulerName", spec.scheduler_name)):
        if value:
            pod_spec[key] = value
    ours = {
        "name": name,
        "namespace": meta["namespace"],
        "labels": pod_labels(meta["name"], epoch, rank),
        "ownerReferences": [owner_reference(TRAININGJOB_KIND, job.metadata)],
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_metadata(template_meta, ours), "spec": pod_spec}
