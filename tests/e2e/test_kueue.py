"""TrainingJobs under Kueue v0.17.0 on the local control plane (docs/kueue.md): quota, queueing, preemption and
partial admission of elastic jobs, on kwok GPU nodes.

Kueue runs as a host process of the cluster (started here if the cluster runs without it). These tests run their
own operator, with the chart's identity rendered with kueue.enabled=true and LEPTON_KUEUE_INTEGRATION=true, watching
only the namespaces they make (`<session prefix>k-*`): the session's operator (`<prefix>-*`) never sees them.
kwok pods run no code: the trainer's checkpoint on SIGTERM is not observable here; what is asserted is what the
operator controls: the evicted job's workers are deleted gracefully, no restart is counted, and the re-admitted
workers are the same epoch's, mounting the same checkpoint folder (docs/kueue.md, "Preemption and checkpoints").
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import yaml
from lepton_cluster.chart import operator_kubeconfig
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import (
    REPO,
    condition,
    create_job,
    custom,
    job_manifest,
    job_pods,
    live_pods,
    patch_job,
    status,
    wait_phase,
)
from lepton_cluster.operator import OperatorProcess
from lepton_cluster.testing import create_namespace, delete_namespace, holds_for, unique_name, wait_for

from ..conftest import SESSION_PREFIX

pytestmark = [pytest.mark.e2e]

KUEUE = "kueue.x-k8s.io"
KV = "v1beta2"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
NS_PREFIX = f"{SESSION_PREFIX}k"
CKPT = "/var/lib/lepton/kueue-ckpt"


@contextlib.contextmanager
def kueue_operator_process(cluster: Cluster, name: str, env: dict[str, str]) -> Iterator[OperatorProcess]:
    """Kueue running, and an operator of its own with the integration on and the chart's identity (release
    lepton-kueue-e2e, kueue.enabled), with `env` on top; stopped at the end."""
    cluster.start_kueue()
    path = REPO / "run" / "e2e" / f"operator-{name}-{os.getpid()}.kubeconfig"
    operator_kubeconfig(cluster, path, release="lepton-kueue-e2e", sets=("kueue.enabled=true",))
    proc = OperatorProcess(path, REPO / "run" / f"e2e-{name}", env={"LEPTON_KUEUE_INTEGRATION": "true", **env})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def kueue_operator(cluster: Cluster, crds: None) -> Iterator[OperatorProcess]:
    env = {
        "LEPTON_NAMESPACES": json.dumps([f"{NS_PREFIX}-*"]),
        "LEPTON_KUEUE_WORKLOAD_SLICES": "true",  # the local Kueue runs with ElasticJobsViaWorkloadSlices
        "LEPTON_ALLOWED_HOSTPATH_PREFIXES": json.dumps(["/var/lib/lepton"]),
    }
    with kueue_operator_process(cluster, "kueue", env) as proc:
        yield proc


@pytest.fixture
def ns(cluster: Cluster, kueue_operator: OperatorProcess, request: pytest.FixtureRequest) -> Iterator[str]:
    base = request.node.name.removeprefix("test_").replace("_", "-")[:30].strip("-")
    name = create_namespace(cluster, unique_name(f"{NS_PREFIX}-{base}"))
    try:
        yield name
    finally:
        delete_namespace(cluster, name)


@pytest.fixture
def quota(cluster: Cluster, ns: str) -> Iterator[Any]:
    """`quota(gpus)`: a ResourceFlavor, a ClusterQueue of `gpus` GPUs (lower priority preemptible) and the
    LocalQueue `team` in `ns`; all removed afterwards."""
    made: list[tuple[str, str]] = []
    api = custom(cluster)

    def make(gpus: int, preemption: str = "Never") -> str:
        suffix = uuid.uuid4().hex[:6]
        flavor, cq = f"gpu-{suffix}", f"cq-{suffix}"
        api.create_cluster_custom_object(KUEUE, KV, "resourceflavors", kobj("ResourceFlavor", flavor))
        made.append(("resourceflavors", flavor))
        group = {"name": "nvidia.com/gpu", "nominalQuota": gpus}
        spec = {
            "namespaceSelector": {},
            "preemption": {"withinClusterQueue": preemption},
            "resourceGroups": [
                {"coveredResources": ["nvidia.com/gpu"], "flavors": [{"name": flavor, "resources": [group]}]}
            ],
        }
        api.create_cluster_custom_object(KUEUE, KV, "clusterqueues", kobj("ClusterQueue", cq, spec=spec))
        made.append(("clusterqueues", cq))
        lq = kobj("LocalQueue", "team", spec={"clusterQueue": cq})
        api.create_namespaced_custom_object(KUEUE, KV, ns, "localqueues", lq)
        return cq

    def priority(name: str, value: int) -> str:
        full = f"{name}-{uuid.uuid4().hex[:6]}"
        api.create_cluster_custom_object(
            KUEUE, KV, "workloadpriorityclasses", kobj("WorkloadPriorityClass", full, value=value)
        )
        made.append(("workloadpriorityclasses", full))
        return full

    make.priority = priority  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        delete_namespace(cluster, ns, wait=True)  # Workloads first: a ClusterQueue in use keeps its finalizer
        for plural, name in reversed(made):
            cluster.kubectl("delete", f"{plural}.{KUEUE}", name, "--ignore-not-found", "--wait=false")


def kobj(kind: str, name: str, **rest: Any) -> dict[str, Any]:
    return {"apiVersion": f"{KUEUE}/{KV}", "kind": kind, "metadata": {"name": name}, **rest}


def queued(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    manifest = job_manifest(name, **spec)
    manifest["metadata"]["labels"] = {QUEUE_LABEL: "team", **(labels or {})}
    return manifest


def workload(cluster: Cluster, ns: str, job: str) -> dict[str, Any] | None:
    items = custom(cluster).list_namespaced_custom_object(KUEUE, KV, ns, "workloads")["items"]
    return next((w for w in items if w["metadata"].get("labels", {}).get("lepton.ai/job-name") == job), None)


def wl_condition(cluster: Cluster, ns: str, job: str, type_: str) -> dict[str, Any] | None:
    wl = workload(cluster, ns, job) or {}
    return next((c for c in (wl.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def admitted(cluster: Cluster, ns: str, job: str) -> dict[str, Any] | None:
    return condition(status(cluster, ns, job), "Admitted")


@pytest.mark.timeout(150)
def test_second_job_waits_with_kueues_reason_and_no_pods_until_the_first_is_deleted(
    cluster: Cluster, ns: str, quota: Any
) -> None:
    quota(8)
    create_job(cluster, ns, queued("first", replicas=2, gpusPerReplica=4))
    wait_phase(cluster, ns, "first", "Running", timeout=60)
    assert admitted(cluster, ns, "first")["status"] == "True"
    create_job(cluster, ns, queued("second", replicas=2, gpusPerReplica=4))

    def waiting() -> dict[str, Any] | None:
        c = admitted(cluster, ns, "second")
        return c if c and c["status"] == "False" and "quota" in c["message"] else None

    cond = wait_for(waiting, 30, interval=0.2, message=lambda: f"second's Admitted; {status(cluster, ns, 'second')}")
    assert "nvidia.com/gpu" in cond["message"], cond
    st = status(cluster, ns, "second")
    assert st["phase"] == "Pending" and st["message"].startswith("waiting for Kueue"), st
    holds_for(lambda: not live_pods(cluster, ns, "second"), 3, message="a queued job has no pods")
    custom(cluster).delete_namespaced_custom_object("lepton.ai", "v1alpha1", ns, "trainingjobs", "first")
    wait_phase(cluster, ns, "second", "Running", timeout=60)
    assert admitted(cluster, ns, "second")["status"] == "True"
    assert len(live_pods(cluster, ns, "second")) == 2


def _deletion_graces(cluster: Cluster, ns: str, names: list[str]) -> Future[dict[str, int]]:
    """Watch the pods `names` from now on: each one's deletionGracePeriodSeconds when its deletion starts
    (kwok then removes it at once: only a watch sees the graceful deletion)."""
    from kubernetes import watch

    started = threading.Event()

    def run() -> dict[str, int]:
        seen: dict[str, int] = {}
        w = watch.Watch()
        rv = cluster.core.list_namespaced_pod(ns).metadata.resource_version
        started.set()
        for ev in w.stream(cluster.core.list_namespaced_pod, ns, resource_version=rv, timeout_seconds=60):
            meta = ev["object"].metadata
            if meta.name in names and meta.deletion_timestamp and meta.name not in seen:
                seen[meta.name] = meta.deletion_grace_period_seconds
            if len(seen) == len(names):
                w.stop()
        return seen

    future = ThreadPoolExecutor(max_workers=1).submit(run)
    started.wait(10)
    return future


def _checkpoint_mounts(pods: list[dict[str, Any]]) -> set[tuple[str, str]]:
    out = set()
    for p in pods:
        vols = {v["name"]: v for v in p["spec"]["volumes"]}
        for m in p["spec"]["containers"][0]["volumeMounts"]:
            if "hostPath" in vols.get(m["name"], {}):
                out.add((vols[m["name"]]["hostPath"]["path"], m.get("subPath", "")))
    return out


@pytest.mark.timeout(200)
def test_high_priority_job_preempts_a_low_one_which_resumes_at_the_same_epoch_later(
    cluster: Cluster, ns: str, quota: Any
) -> None:
    quota(8, preemption="LowerPriority")
    low, high = quota.priority("low", 10), quota.priority("high", 1000)
    ckpt = {"volume": {"hostPath": CKPT}}
    create_job(cluster, ns, queued("low", {PRIORITY_LABEL: low}, replicas=2, gpusPerReplica=4, checkpoint=ckpt))
    wait_phase(cluster, ns, "low", "Running", timeout=60)
    before = live_pods(cluster, ns, "low")
    mounts = _checkpoint_mounts(before)
    assert mounts, "the workers mount the checkpoint folder"
    graces = _deletion_graces(cluster, ns, [p["metadata"]["name"] for p in before])
    create_job(cluster, ns, queued("high", {PRIORITY_LABEL: high}, replicas=2, gpusPerReplica=4))

    def evicted() -> dict[str, Any] | None:
        """The job's Admitted=False/EvictedPreempted lasts only until Kueue requeues the Workload (at once
        when kwok removes the pods at once); the Workload's Evicted condition stays."""
        c = admitted(cluster, ns, "low")
        if c and c["reason"] == "EvictedPreempted":
            return c
        w = wl_condition(cluster, ns, "low", "Evicted")
        return w if w and w["status"] == "True" and w["reason"] == "Preempted" else None

    wait_for(evicted, 60, interval=0.2, message=lambda: f"low evicted; {status(cluster, ns, 'low')}")
    wait_for(lambda: not job_pods(cluster, ns, "low"), 60, interval=0.2, message="low's workers gone")
    # deleted with their grace period (SIGTERM: time for the trainer's checkpoint), never forced
    assert graces.result(timeout=30) == {p["metadata"]["name"]: 30 for p in before}
    wait_phase(cluster, ns, "high", "Running", timeout=60)
    requeued = wl_condition(cluster, ns, "low", "Requeued")
    assert requeued is not None and requeued["status"] == "True" and requeued["reason"] == "Preempted", requeued
    st = status(cluster, ns, "low")
    assert st["phase"] == "Pending" and st.get("restarts", 0) == 0 and st.get("restartEpoch", 0) == 0, st
    holds_for(lambda: not live_pods(cluster, ns, "low"), 2, message="the preempted job stays stopped")

    custom(cluster).delete_namespaced_custom_object("lepton.ai", "v1alpha1", ns, "trainingjobs", "high")
    wait_phase(cluster, ns, "low", "Running", timeout=90)
    after = live_pods(cluster, ns, "low")
    st = status(cluster, ns, "low")
    assert st.get("restarts", 0) == 0 and st.get("restartEpoch", 0) == 0, st
    assert sorted(p["metadata"]["name"] for p in after) == sorted(p["metadata"]["name"] for p in before)
    assert {p["metadata"]["uid"] for p in after}.isdisjoint({p["metadata"]["uid"] for p in before})
    assert _checkpoint_mounts(after) == mounts


@pytest.mark.timeout(120)
def test_elastic_job_is_admitted_partially_within_its_range(cluster: Cluster, ns: str, quota: Any) -> None:
    quota(6)
    create_job(cluster, ns, queued("elastic", replicas=4, minReplicas=2, maxReplicas=4, gpusPerReplica=2))
    st = wait_phase(cluster, ns, "elastic", "Running", timeout=60)
    assert st["replicas"] == 3, st
    assert len(live_pods(cluster, ns, "elastic")) == 3
    wl = workload(cluster, ns, "elastic")
    assert wl is not None
    assert wl["spec"]["podSets"][0]["minCount"] == 2 and wl["spec"]["podSets"][0]["count"] == 4
    assert wl["status"]["admission"]["podSetAssignments"][0]["count"] == 3
    pods_ready = wl_condition(cluster, ns, "elastic", "PodsReady")
    assert pods_ready is not None and pods_ready["status"] == "True", pods_ready


@pytest.mark.timeout(180)
def test_elastic_job_grows_with_a_workload_slice_when_quota_frees(cluster: Cluster, ns: str, quota: Any) -> None:
    quota(8)
    create_job(cluster, ns, queued("holder", replicas=1, gpusPerReplica=2))
    wait_phase(cluster, ns, "holder", "Running", timeout=60)
    policy = {"scaleUpCooldownSeconds": 0}
    spec = {"replicas": 4, "minReplicas": 2, "maxReplicas": 4, "gpusPerReplica": 2, "elasticPolicy": policy}
    create_job(cluster, ns, queued("grows", **spec))
    st = wait_phase(cluster, ns, "grows", "Running", timeout=60)
    assert st["replicas"] == 3, st

    def growth_reported() -> dict[str, Any] | None:
        c = admitted(cluster, ns, "grows")
        return c if c and "growth to 4: waiting for Kueue" in c["message"] else None

    wait_for(growth_reported, 30, interval=0.2, message=lambda: f"growth pending; {status(cluster, ns, 'grows')}")
    custom(cluster).delete_namespaced_custom_object("lepton.ai", "v1alpha1", ns, "trainingjobs", "holder")

    def grown() -> dict[str, Any] | None:
        s = status(cluster, ns, "grows")
        return s if s.get("replicas") == 4 and s.get("phase") == "Running" else None

    st = wait_for(grown, 90, interval=0.2, message=lambda: f"grown to 4; {status(cluster, ns, 'grows')}")
    assert st.get("restarts", 0) == 0 and st["restartEpoch"] == 1, st
    wait_for(lambda: len(live_pods(cluster, ns, "grows")) == 4, 30, interval=0.2, message="4 workers")
    finished = [
        w
        for w in custom(cluster).list_namespaced_custom_object(KUEUE, KV, ns, "workloads")["items"]
        if any(
            c["type"] == "Finished" and c.get("reason") == "WorkloadSliceReplaced"
            for c in w["status"].get("conditions", [])
        )
    ]
    assert len(finished) == 1, "the first slice was replaced by the grown one"


@pytest.mark.timeout(120)
def test_the_example_is_admitted_on_its_flavor(cluster: Cluster, ns: str) -> None:
    """examples/trainingjob-kueue.yaml with its cluster-scoped objects renamed (sessions share the cluster) and a
    hostPath for the claim (kwok has no storage): admitted at 4 x 2 GPUs on the H100 flavor."""
    docs = list(yaml.safe_load_all((REPO / "examples" / "trainingjob-kueue.yaml").read_text()))
    suffix = uuid.uuid4().hex[:6]
    by_kind = {d["kind"]: d for d in docs}
    flavor, cq, wpc = by_kind["ResourceFlavor"], by_kind["ClusterQueue"], by_kind["WorkloadPriorityClass"]
    for d in (flavor, cq, wpc):
        d["metadata"]["name"] += f"-{suffix}"
    cq["spec"]["resourceGroups"][0]["flavors"][0]["name"] = flavor["metadata"]["name"]
    by_kind["LocalQueue"]["spec"]["clusterQueue"] = cq["metadata"]["name"]
    job = by_kind["TrainingJob"]
    job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] = wpc["metadata"]["name"]
    job["spec"]["checkpoint"]["volume"] = {"hostPath": CKPT}
    docs = [d for d in docs if d["kind"] != "PersistentVolumeClaim"]
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))
    try:
        st = wait_phase(cluster, ns, "digits-queued", "Running", timeout=60)
        assert st["replicas"] == 4 and admitted(cluster, ns, "digits-queued")["status"] == "True", st
        wl = workload(cluster, ns, "digits-queued")
        assert wl is not None and wl["spec"]["priority"] == 100
        pods = live_pods(cluster, ns, "digits-queued")
        assert {p["spec"]["nodeSelector"]["nvidia.com/gpu.product"] for p in pods} == {"NVIDIA-H100-80GB-HBM3"}
    finally:
        delete_namespace(cluster, ns, wait=True)
        for d in (cq, flavor, wpc):
            cluster.kubectl("delete", f"{d['kind']}.{KUEUE}", d["metadata"]["name"], "--ignore-not-found")


@pytest.mark.timeout(150)
def test_suspending_a_queued_job_hands_its_quota_to_the_next_one(cluster: Cluster, ns: str, quota: Any) -> None:
    quota(8)
    create_job(cluster, ns, queued("first", replicas=2, gpusPerReplica=4))
    wait_phase(cluster, ns, "first", "Running", timeout=60)
    create_job(cluster, ns, queued("second", replicas=2, gpusPerReplica=4))
    wait_for(lambda: (admitted(cluster, ns, "second") or {}).get("status") == "False", 30, interval=0.2)
    patch_job(cluster, ns, "first", {"spec": {"suspend": True}})
    wait_phase(cluster, ns, "first", "Suspended", timeout=30)
    wait_phase(cluster, ns, "second", "Running", timeout=60)  # the quota went back with the Workload deactivated
    assert (workload(cluster, ns, "first") or {})["spec"]["active"] is False
    patch_job(cluster, ns, "first", {"spec": {"suspend": False}})

    def queued_again() -> dict[str, Any] | None:
        c = admitted(cluster, ns, "first")
        return c if c and c["status"] == "False" and "quota" in c["message"] else None

    wait_for(queued_again, 60, interval=0.2, message=lambda: f"first queued; {status(cluster, ns, 'first')}")
    assert (workload(cluster, ns, "first") or {})["spec"]["active"] is True
    assert not live_pods(cluster, ns, "first")
