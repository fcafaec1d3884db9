"""Cost in status against the formula, budgets, costPolicy placement and the operator's metrics."""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from lepton_cluster import config as cfg
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import (
    GROUP,
    PLURAL,
    VERSION,
    condition,
    create_job,
    job_manifest,
    job_pods,
    live_pods,
    patch_job,
    status,
    table,
    wait_phase,
)
from lepton_cluster.operator import OperatorProcess
from lepton_cluster.testing import unique_name, wait_for
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import SESSION_PREFIX

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]
H100_ON_DEMAND = 6.88  # $/GPU-hour in the default price table
CPU, MEM = 0.031611, 0.004237


def ts(text: str) -> float:
    """RFC 3339 as the API server writes it, or as the kubernetes client renders it (+00:00)."""
    return float(calendar.timegm(time.strptime(text.replace("+00:00", "Z"), "%Y-%m-%dT%H:%M:%SZ")))


def pod_times(pod: dict[str, Any]) -> tuple[float, float | None]:
    state = pod["status"]["containerStatuses"][0]["state"]
    if state.get("terminated"):
        return ts(state["terminated"]["startedAt"]), ts(state["terminated"]["finishedAt"])
    return ts(state["running"]["startedAt"]), None


@pytest.mark.timeout(150)
def test_cost_matches_the_formula_across_a_restart_epoch_and_an_operator_restart(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    spec = {
        "gpusPerReplica": 4,
        "gpuType": "NVIDIA-H100-80GB-HBM3",
        "costPolicy": "speed",
        "resources": {"cpu": "8", "memory": "64Gi"},
    }
    per_pod_hour = 4 * H100_ON_DEMAND + 8 * CPU + 64 * MEM
    create_job(cluster, namespace, job_manifest("priced", replicas=2, **spec))
    wait_phase(cluster, namespace, "priced", "Running")
    first = {p["metadata"]["name"]: pod_times(p) for p in live_pods(cluster, namespace, "priced")}
    assert sorted(first) == ["priced-0-0", "priced-0-1"]
    time.sleep(3)  # let the epoch accrue some cost
    cluster.fail_pod(namespace, "priced-0-1", exit_code=137)
    wait_for(lambda: status(cluster, namespace, "priced").get("restartEpoch") == 1, 30, message="epoch 1")
    restart_seen = ts(status(cluster, namespace, "priced")["lastFailure"]["time"])
    failed = next(p for p in job_pods(cluster, namespace, "priced") if p["metadata"]["name"] == "priced-0-1")
    first["priced-0-1"] = pod_times(failed)
    wait_phase(cluster, namespace, "priced", "Running")
    operator.kill()
    time.sleep(2)  # the job runs on while the operator is down
    operator.start()
    second = {  # the previous epoch's failed pod is kept for its logs: only epoch 1 runs now
        p["metadata"]["name"]: pod_times(p)
        for p in live_pods(cluster, namespace, "priced")
        if p["metadata"]["name"].startswith("priced-1-")
    }
    assert len(second) == 2
    for name in second:
        cluster.complete_pod(namespace, name)
    done = wait_phase(cluster, namespace, "priced", "Succeeded")
    ends = {p["metadata"]["name"]: pod_times(p)[1] for p in job_pods(cluster, namespace, "priced")}
    seconds = sum((end if end is not None else restart_seen) - start for start, end in first.values())
    seconds += sum(ends[name] - start for name, (start, _) in second.items())  # type: ignore[operator]
    expected = per_pod_hour * seconds / 3600
    cost = done["cost"]
    print(f"cost in status ${cost['accruedUsd']:.6f} vs formula ${expected:.6f} over {seconds:.0f} pod-seconds")
    assert cost["accruedUsd"] == pytest.approx(expected, rel=0.01)
    assert cost["gpuHours"] == pytest.approx(4 * seconds / 3600, rel=0.01)
    assert cost["estimatedCostUsd"] == f"{cost['accruedUsd']:.2f}"
    assert cost["priceSource"].startswith("defaults")
    (row,) = table(cluster, namespace)
    assert float(row["GPU-H"]) == pytest.approx(cost["gpuHours"]) and row["COST"] == cost["estimatedCostUsd"]


@pytest.mark.timeout(120)
def test_budget_stops_the_job_at_the_limit_and_raising_it_resumes(cluster: Cluster, namespace: str) -> None:
    dear = {"gpus": {"NVIDIA-H100-80GB-HBM3": {"onDemand": 900.0}}}  # 2 x 4 GPUs: $2/s
    manifest = job_manifest(
        "capped",
        replicas=2,
        gpusPerReplica=4,
        gpuType="NVIDIA-H100-80GB-HBM3",
        costPolicy="speed",
        prices=dear,
        budget={"maxUsd": 8},
    )
    create_job(cluster, namespace, manifest)
    st = wait_phase(cluster, namespace, "capped", "Suspended", timeout=60)
    assert condition(st, "BudgetExceeded")["status"] == "True"
    assert st["cost"]["accruedUsd"] >= 8 and st["cost"]["accruedUsd"] < 8 + 2 * 3  # within a few seconds of it
    wait_for(lambda: not live_pods(cluster, namespace, "capped"), 30, interval=0.2, message="pods deleted")
    events = cluster.core.list_namespaced_event(namespace, field_selector="involvedObject.name=capped").items
    assert any(e.reason == "BudgetExceeded" and e.type == "Warning" for e in events)
    patch_job(cluster, namespace, "capped", {"spec": {"budget": {"maxUsd": 1000}}})
    st = wait_phase(cluster, namespace, "capped", "Running")
    assert condition(st, "BudgetExceeded")["status"] == "False"


@pytest.fixture
def price_pool(cluster: Cluster) -> Iterator[dict[str, str]]:
    """One H100 on-demand node and one A100 spot node, reachable only through their own label."""
    pool = {"lepton.ai/e2e-pool": unique_name("price")}
    nodes = cluster.add_nodes(1, gpu=cfg.H100, labels=pool) + cluster.add_nodes(1, gpu=cfg.A100, spot=True, labels=pool)
    yield pool
    for node in nodes:
        cluster.delete_node(node)


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("policy", "product", "capacity"),
    [
        ("cost", "NVIDIA-A100-SXM4-80GB", "spot"),
        ("speed", "NVIDIA-H100-80GB-HBM3", "on-demand"),
    ],
)
def test_cost_policy_chooses_the_node(
    cluster: Cluster, namespace: str, price_pool: dict[str, str], policy: str, product: str, capacity: str
) -> None:
    create_job(
        cluster,
        namespace,
        job_manifest("placed", replicas=2, gpusPerReplica=2, costPolicy=policy, nodeSelector=price_pool),
    )
    wait_phase(cluster, namespace, "placed", "Running")
    for pod in live_pods(cluster, namespace, "placed"):
        labels = cluster.core.read_node(pod["spec"]["nodeName"]).metadata.labels
        assert (labels["nvidia.com/gpu.product"], labels["lepton.ai/capacity-type"]) == (product, capacity)


def scrape(operator: OperatorProcess) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(operator.metrics()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@pytest.mark.timeout(90)
def test_metrics_are_served_and_agree_with_the_cluster(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    create_job(cluster, namespace, job_manifest("observed", replicas=2))
    wait_phase(cluster, namespace, "observed", "Running")
    cluster.fail_pod(namespace, "observed-0-0", exit_code=137)
    wait_for(lambda: status(cluster, namespace, "observed").get("restartEpoch") == 1, 30, message="epoch 1")
    wait_phase(cluster, namespace, "observed", "Running")

    def phases_in_cluster() -> dict[str, int]:
        """Phases of the jobs this session's operator watches (other sessions may share the cluster)."""
        items = client.CustomObjectsApi(cluster.api_client).list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
        counts: dict[str, int] = {}
        for item in items:
            if not item["metadata"]["namespace"].startswith(f"{SESSION_PREFIX}-"):
                continue
            phase = (item.get("status") or {}).get("phase") or "Pending"
            counts[phase] = counts.get(phase, 0) + 1
        return counts

    def consistent() -> bool:
        jobs = scrape(operator).get("lepton_trainingjobs", {})
        served = {dict(k)["phase"]: int(v) for k, v in jobs.items() if v}
        return served == phases_in_cluster()

    wait_for(
        consistent,
        30,
        interval=0.5,
        message=lambda: f"metrics {scrape(operator).get('lepton_trainingjobs')} vs cluster {phases_in_cluster()}",
    )
    m = scrape(operator)
    assert m["lepton_trainingjob_restarts_total"][(("namespace", namespace), ("reason", "WorkerCrashed"))] == 1
    assert m["lepton_failover_duration_seconds_count"][()] >= 1
    assert m["lepton_apply_to_pods_created_seconds_count"][()] >= 1
    assert m["lepton_reconcile_duration_seconds_count"][()] > 0
    assert (("namespace", namespace),) in m["lepton_gpu_hours"] and (("namespace", namespace),) in m["lepton_cost_usd"]
    for name in m:
        assert not any(k in ("pod", "name", "job") for labels in m[name] for k, _ in labels), name
