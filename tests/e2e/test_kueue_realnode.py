"""Preemption under Kueue on the real nodes (issue 19): the evicted trainer saves a checkpoint on SIGTERM, the
job waits without pods, and re-admitted it resumes from that checkpoint and finishes (docs/kueue.md, "Preemption
and checkpoints"). tests/e2e/test_kueue.py shows the operator's side on kwok nodes, where no code runs.

The quota is CPU (the real nodes have no GPUs): a ClusterQueue of 1 CPU, two 2 x 300m jobs. Kueue runs as a host
process of the cluster (started if it is not); the operator is this module's own, with the Kueue integration on,
watching only `<session prefix>kr-*` (neither the session's operator nor test_kueue.py's sees these namespaces).
Figures print as a JSON line (`-s`); they are not asserted.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import REPO, create_job, custom, job_manifest, job_pods, live_pods, status, wait_phase
from lepton_cluster.operator import OperatorProcess
from lepton_cluster.realnode.drills import epoch_pods, stepping_walls
from lepton_cluster.realnode.plan import RUNTIME_LABEL, RUNTIME_TOLERATION, RUNTIME_VALUE
from lepton_cluster.testing import create_namespace, delete_namespace, holds_for, unique_name, wait_for

from ..conftest import SESSION_PREFIX
from .checkpoints import checkpoint_dir, start_job
from .test_kueue import KUEUE, KV, PRIORITY_LABEL, QUEUE_LABEL, admitted, kobj, kueue_operator_process, wl_condition
from .test_realnode_training import digits_manifest, result_of

pytestmark = [pytest.mark.e2e]

NS_PREFIX = f"{SESSION_PREFIX}kr"
WORKER = {"cpu": "300m", "memory": "1Gi"}  # 2 workers: 600m of the 1-CPU quota; two jobs do not fit
STOPPED = re.compile(r"stopped by SIGTERM at step=(\d+)")  # train.py, after the checkpoint
RESUMED = re.compile(r"resumed from checkpoint step=(\d+)")  # trainer.py
ARGS = [
    *("-m", "lepton_trainer.train", "--workload", "digits", "--epochs", "20"),
    *("--step-sleep", "0.1", "--checkpoint-every", "20", "--log-every", "10"),
]


@pytest.fixture(scope="module")
def kueue_operator(cluster: Cluster, crds: None) -> Iterator[OperatorProcess]:
    env = {
        "LEPTON_NAMESPACES": json.dumps([f"{NS_PREFIX}-*"]),
        "LEPTON_ALLOWED_HOSTPATH_PREFIXES": json.dumps([str(REPO / "run")]),
    }
    with kueue_operator_process(cluster, "kueue-real", env) as proc:
        yield proc


@pytest.fixture
def ns(cluster: Cluster, kueue_operator: OperatorProcess) -> Iterator[str]:
    name = create_namespace(cluster, unique_name(f"{NS_PREFIX}-preempt"))
    try:
        yield name
    finally:
        delete_namespace(cluster, name, wait=True)  # Workloads first: a ClusterQueue in use keeps its finalizer


@pytest.fixture
def cpu_queue(cluster: Cluster, ns: str) -> Iterator[tuple[str, str]]:
    """A ClusterQueue of 1 CPU (and 8Gi) that preempts lower priorities, the LocalQueue `team` in `ns`, and two
    WorkloadPriorityClasses; yields (low, high) class names. All removed afterwards."""
    api, suffix = custom(cluster), uuid.uuid4().hex[:6]
    flavor, cq, low, high = f"cpu-{suffix}", f"cq-cpu-{suffix}", f"low-{suffix}", f"high-{suffix}"
    quota = [{"name": "cpu", "nominalQuota": "1"}, {"name": "memory", "nominalQuota": "8Gi"}]
    spec = {
        "namespaceSelector": {},
        "preemption": {"withinClusterQueue": "LowerPriority"},
        "resourceGroups": [{"coveredResources": ["cpu", "memory"], "flavors": [{"name": flavor, "resources": quota}]}],
    }
    made = [
        ("resourceflavors", kobj("ResourceFlavor", flavor)),
        ("clusterqueues", kobj("ClusterQueue", cq, spec=spec)),
        ("workloadpriorityclasses", kobj("WorkloadPriorityClass", low, value=10)),
        ("workloadpriorityclasses", kobj("WorkloadPriorityClass", high, value=1000)),
    ]
    for plural, obj in made:
        api.create_cluster_custom_object(KUEUE, KV, plural, obj)
    api.create_namespaced_custom_object(
        KUEUE, KV, ns, "localqueues", kobj("LocalQueue", "team", spec={"clusterQueue": cq})
    )
    try:
        yield low, high
    finally:
        delete_namespace(cluster, ns, wait=True)
        for plural, obj in reversed(made):
            cluster.kubectl(
                "delete", f"{plural}.{KUEUE}", obj["metadata"]["name"], "--ignore-not-found", "--wait=false"
            )


def low_job(checkpoints: Path, priority: str) -> dict[str, Any]:
    manifest = digits_manifest(checkpoints, ARGS)
    manifest["metadata"] = {"name": "low", "labels": {QUEUE_LABEL: "team", PRIORITY_LABEL: priority}}
    manifest["spec"]["resources"] = WORKER
    return manifest


def high_job(priority: str) -> dict[str, Any]:
    """Two idle workers of the same size: what matters is that they need the quota the low job holds."""
    manifest = job_manifest(
        "high",
        image="localhost/lepton-trainer:dev",
        command=["python", "-c", "import time; time.sleep(3600)"],
        replicas=2,
        gpusPerReplica=0,
        resources=WORKER,
        nodeSelector={RUNTIME_LABEL: RUNTIME_VALUE},
        tolerations=[RUNTIME_TOLERATION],
    )
    manifest["metadata"]["labels"] = {QUEUE_LABEL: "team", PRIORITY_LABEL: priority}
    return manifest


def follow_logs(cluster: Cluster, ns: str, pods: list[str]) -> list[Future[str]]:
    """Each running pod's whole log, complete when its container ends (the evicted pods' logs go with them)."""

    def read(pod: str) -> str:
        resp = cluster.core.read_namespaced_pod_log(pod, ns, follow=True, _preload_content=False, _request_timeout=600)
        return bytes(resp.read()).decode(errors="replace")

    pool = ThreadPoolExecutor(max_workers=len(pods))
    futures = [pool.submit(read, p) for p in pods]
    pool.shutdown(wait=False)
    return futures


def pod_log(cluster: Cluster, ns: str, pod: str) -> str:
    return cluster.kubectl("-n", ns, "logs", pod, check=False).stdout


@pytest.mark.timeout(900)
def test_preempted_job_checkpoints_on_sigterm_waits_and_resumes_from_it(
    cluster: Cluster, ns: str, cpu_queue: tuple[str, str], trainer_image: str
) -> None:
    low, high = cpu_queue
    ckpt = start_job(cluster, ns, low_job(checkpoint_dir(ns), low))
    wait_phase(cluster, ns, "low", "Running", timeout=240)
    assert (admitted(cluster, ns, "low") or {}).get("status") == "True"
    wait_for(lambda: list(ckpt.glob("step-*.ckpt")), 300, interval=0.2, message="low's first checkpoint")
    before = epoch_pods(cluster, ns, "low", 0)
    assert len(before) == 2, before
    logs = follow_logs(cluster, ns, [p["metadata"]["name"] for p in before])

    t_high = time.monotonic()
    create_job(cluster, ns, high_job(high))

    def evicted() -> dict[str, Any] | None:
        c = admitted(cluster, ns, "low")
        return c if c and c["reason"] == "EvictedPreempted" else None

    wait_for(evicted, 60, interval=0.2, message=lambda: f"low evicted; {status(cluster, ns, 'low')}")
    wait_for(lambda: not job_pods(cluster, ns, "low"), 90, interval=0.2, message="low's workers gone")
    preempted_s = time.monotonic() - t_high

    # rank 0 (the one that writes) saved on SIGTERM and exited; the newest checkpoint is the step it stopped at
    rank0 = logs[0].result(timeout=60)
    stopped = STOPPED.search(rank0)
    rank1 = logs[1].result(timeout=60)
    assert stopped, f"{rank0[-4000:]}\n--- rank 1 ---\n{rank1[-4000:]}"
    step = int(stopped.group(1))
    assert f"checkpoint step={step} (" in rank0, rank0[-3000:]  # on SIGTERM, or periodic at that very step
    assert max(ckpt.glob("step-*.ckpt")).name == f"step-{step:010d}.ckpt", sorted(ckpt.iterdir())
    assert (m := STOPPED.search(rank1)) and int(m.group(1)) == step, rank1[-3000:]

    wait_phase(cluster, ns, "high", "Running", timeout=120)

    def waiting() -> dict[str, Any] | None:
        c = admitted(cluster, ns, "low")
        return c if c and c["status"] == "False" and "quota" in c["message"] else None

    cond = wait_for(waiting, 60, interval=0.2, message=lambda: f"low waits; {status(cluster, ns, 'low')}")
    assert cond is not None and "cpu" in cond["message"], cond
    requeued = wl_condition(cluster, ns, "low", "Requeued")
    assert requeued is not None and requeued["status"] == "True" and requeued["reason"] == "Preempted", requeued
    st = status(cluster, ns, "low")
    assert st["phase"] == "Pending" and st.get("restarts", 0) == 0 and st.get("restartEpoch", 0) == 0, st
    holds_for(lambda: not live_pods(cluster, ns, "low"), 3, message="the preempted job has no pods")

    deleted_at = time.time()
    custom(cluster).delete_namespaced_custom_object("lepton.ai", "v1alpha1", ns, "trainingjobs", "high")
    wait_phase(cluster, ns, "low", "Running", timeout=180)
    after = epoch_pods(cluster, ns, "low", 0)
    assert {p["metadata"]["uid"] for p in after}.isdisjoint({p["metadata"]["uid"] for p in before})
    walls: list[float] = wait_for(
        lambda: stepping_walls(cluster, ns, "low", 0, 2) or [],
        300,
        interval=0.5,
        message="both re-admitted ranks stepping",
    )
    resumed = RESUMED.search(pod_log(cluster, ns, after[0]["metadata"]["name"]))
    assert resumed is not None and int(resumed.group(1)) >= step, resumed

    st = wait_phase(cluster, ns, "low", "Succeeded", timeout=600)
    assert st["restarts"] == 0 and st["restartEpoch"] == 0, st
    result = result_of(epoch_pods(cluster, ns, "low", 0)[0])
    assert result is not None and result["testAccuracy"] >= 0.95, result
    print(
        json.dumps(
            {
                "high created -> low's workers gone s": round(preempted_s, 1),
                "stopped at step": step,
                "high deleted -> low stepping again s": round(max(walls) - deleted_at, 1),
                "resumed at step": int(resumed.group(1)),
                "accuracy": result["testAccuracy"],
            }
        )
    )
