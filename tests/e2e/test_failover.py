"""Failover and elastic scaling end to end. Tests that break or fill nodes use nodes of their own."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import condition, create_job, job_manifest, live_pods, patch_job, status, wait_phase
from lepton_cluster.testing import unique_name, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]
POOL_LABEL = "lepton.ai/e2e-pool"

NodePool = Callable[..., tuple[dict[str, str], list[str]]]


@pytest.fixture
def node_pool(cluster: Cluster) -> Iterator[NodePool]:
    """Adds simulated GPU nodes with a label of their own; returns (nodeSelector, names); deletes them after."""
    made: list[str] = []

    def make(count: int = 1, gpus: int = 8) -> tuple[dict[str, str], list[str]]:
        pool = unique_name("pool")
        names = cluster.add_nodes(count, gpus_per_node=gpus, labels={POOL_LABEL: pool})
        made.extend(names)
        return {POOL_LABEL: pool}, names

    yield make
    for name in made:
        cluster.delete_node(name)


def epoch_running(cluster: Cluster, ns: str, name: str, epoch: int, timeout: float = 30) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        st = status(cluster, ns, name)
        return st if st.get("restartEpoch") == epoch and st.get("phase") == "Running" else None

    result: dict[str, Any] = wait_for(
        reached, timeout, interval=0.05, message=lambda: f"epoch {epoch} running: {status(cluster, ns, name)}"
    )
    return result


def pod_names(cluster: Cluster, ns: str, name: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in live_pods(cluster, ns, name))


@pytest.mark.timeout(90)
def test_restart_budget_runs_out_with_backoff_limit_exceeded(cluster: Cluster, namespace: str) -> None:
    create_job(cluster, namespace, job_manifest("budget", failurePolicy={"maxRestarts": 1}))
    wait_phase(cluster, namespace, "budget", "Running")
    cluster.fail_pod(namespace, "budget-0-0", exit_code=137)
    epoch_running(cluster, namespace, "budget", 1)
    cluster.fail_pod(namespace, "budget-1-1", exit_code=139, reason="Error")
    st = wait_phase(cluster, namespace, "budget", "Failed")
    assert condition(st, "Failed")["reason"] == "BackoffLimitExceeded" and st["restarts"] == 1
    assert st["lastFailure"]["pod"] == "budget-1-1" and st["lastFailure"]["exitCode"] == 139


@pytest.mark.timeout(90)
def test_eviction_and_preemption_restart_without_spending_the_budget(cluster: Cluster, namespace: str) -> None:
    create_job(cluster, namespace, job_manifest("evicted", failurePolicy={"maxRestarts": 0}))
    wait_phase(cluster, namespace, "evicted", "Running")
    cluster.evict_pod(namespace, "evicted-0-1")
    st = epoch_running(cluster, namespace, "evicted", 1)
    assert st["restarts"] == 0 and st["lastFailure"]["reason"] in ("Evicted", "Preempted", "Disrupted")
    events = cluster.core.list_namespaced_event(namespace, field_selector="involvedObject.name=evicted").items
    restart = next(e for e in events if e.reason == st["lastFailure"]["reason"])
    assert "evicted-0-1" in restart.message


@pytest.mark.timeout(120)
def test_node_not_ready_moves_the_job_to_other_nodes_fast(
    cluster: Cluster, namespace: str, node_pool: NodePool
) -> None:
    selector, _ = node_pool(count=3, gpus=8)  # two for the job, one spare
    create_job(cluster, namespace, job_manifest("survivor", replicas=2, gpusPerReplica=8, nodeSelector=selector))
    wait_phase(cluster, namespace, "survivor", "Running")
    bad = next(p["spec"]["nodeName"] for p in live_pods(cluster, namespace, "survivor"))
    t0 = time.monotonic()
    cluster.set_node_not_ready(bad)
    st = epoch_running(cluster, namespace, "survivor", 1)
    elapsed = time.monotonic() - t0
    pods = live_pods(cluster, namespace, "survivor")
    assert {p["spec"]["nodeName"] for p in pods}.isdisjoint({bad})
    assert st["restarts"] == 0 and st["lastFailure"]["reason"] == "NodeLost"
    print(f"node NotReady -> all replacement pods Running: {elapsed:.2f} s")


@pytest.mark.timeout(90)
def test_rank_zero_lost_still_recovers_with_a_new_rendezvous_host(cluster: Cluster, namespace: str) -> None:
    create_job(cluster, namespace, job_manifest("rank0", replicas=3))
    wait_phase(cluster, namespace, "rank0", "Running")
    cluster.core.delete_namespaced_pod("rank0-0-0", namespace, grace_period_seconds=0)
    epoch_running(cluster, namespace, "rank0", 1)
    pods = live_pods(cluster, namespace, "rank0")
    assert sorted(p["metadata"]["name"] for p in pods) == ["rank0-1-0", "rank0-1-1", "rank0-1-2"]
    env = {e["name"]: e.get("value") for e in pods[0]["spec"]["containers"][0]["env"]}
    assert env["PET_RDZV_ENDPOINT"].startswith("rank0-1-0.rank0.")
    assert status(cluster, namespace, "rank0")["lastFailure"]["reason"] == "PodLost"


@pytest.mark.timeout(150)
def test_elastic_job_starts_small_grows_when_gpus_free_and_never_shrinks_below_min(
    cluster: Cluster, namespace: str, node_pool: NodePool
) -> None:
    selector, (node,) = node_pool(count=1, gpus=8)
    create_job(cluster, namespace, job_manifest("filler", replicas=3, gpusPerReplica=2, nodeSelector=selector))
    wait_phase(cluster, namespace, "filler", "Running")
    elastic = job_manifest(
        "stretchy",
        replicas=8,
        minReplicas=2,
        maxReplicas=8,
        gpusPerReplica=1,
        nodeSelector=selector,
        elasticPolicy={"scaleUpCooldownSeconds": 0, "unschedulableTimeoutSeconds": 3},
    )
    create_job(cluster, namespace, elastic)
    st = wait_phase(cluster, namespace, "stretchy", "Running")
    assert st["replicas"] == 2 and st["ready"] == "2/2"
    # The filler finishes, freeing 6 GPUs.
    for pod in live_pods(cluster, namespace, "filler"):
        cluster.complete_pod(namespace, pod["metadata"]["name"])
    wait_phase(cluster, namespace, "filler", "Succeeded")
    st = wait_for(
        lambda: (s := status(cluster, namespace, "stretchy")).get("replicas") == 8 and s.get("phase") == "Running",
        40,
        interval=0.2,
        message=lambda: f"growth to 8: {status(cluster, namespace, 'stretchy')}",
    )
    assert status(cluster, namespace, "stretchy")["restarts"] == 0
    # Drain the node: cordon it and evict one worker. The new epoch fits nowhere and waits at min.
    cluster.cordon(node)
    cluster.evict_pod(namespace, pod_names(cluster, namespace, "stretchy")[0])

    def waits_at_min() -> dict[str, Any] | None:
        s = status(cluster, namespace, "stretchy")
        return s if s.get("replicas") == 2 and "waiting" in (s.get("message") or "") else None

    st = wait_for(waits_at_min, 40, interval=0.2, message=lambda: f"min: {status(cluster, namespace, 'stretchy')}")
    assert condition(st, "PodsScheduled")["status"] == "False"
    assert len(live_pods(cluster, namespace, "stretchy")) == 2
    cluster.uncordon(node)
    wait_phase(cluster, namespace, "stretchy", "Running")


@pytest.mark.timeout(90)
def test_kubectl_scale_changes_the_world_size_and_out_of_range_is_refused(cluster: Cluster, namespace: str) -> None:
    create_job(cluster, namespace, job_manifest("scaled", replicas=2, minReplicas=1, maxReplicas=4))
    wait_phase(cluster, namespace, "scaled", "Running")
    cluster.kubectl("scale", "-n", namespace, "tj/scaled", "--replicas=3")
    st = epoch_running(cluster, namespace, "scaled", 1)
    assert st["replicas"] == 3 and st["ready"] == "3/3" and st["restarts"] == 0
    assert pod_names(cluster, namespace, "scaled") == ["scaled-1-0", "scaled-1-1", "scaled-1-2"]
    refused = cluster.kubectl("scale", "-n", namespace, "tj/scaled", "--replicas=9", check=False)
    assert refused.returncode != 0 and "spec.replicas must be <= spec.maxReplicas" in refused.stderr
    patch_job(cluster, namespace, "scaled", {"spec": {"replicas": 1}})
    assert epoch_running(cluster, namespace, "scaled", 2)["replicas"] == 1


@pytest.mark.timeout(90)
def test_last_failure_is_exactly_the_last_one_no_stale_fields(cluster: Cluster, namespace: str) -> None:
    create_job(cluster, namespace, job_manifest("twice", replicas=2))
    wait_phase(cluster, namespace, "twice", "Running")
    cluster.fail_pod(namespace, "twice-0-1", exit_code=137, message="CUDA out of memory")
    st = epoch_running(cluster, namespace, "twice", 1)
    assert st["lastFailure"]["exitCode"] == 137 and "CUDA" in st["lastFailure"]["message"]
    cluster.core.delete_namespaced_pod("twice-1-0", namespace, grace_period_seconds=0)
    st = epoch_running(cluster, namespace, "twice", 2)
    assert st["lastFailure"]["reason"] == "PodLost" and st["lastFailure"]["pod"] == "twice-1-0"
    assert {"exitCode", "message"}.isdisjoint(st["lastFailure"]), st["lastFailure"]  # nothing left of the crash
