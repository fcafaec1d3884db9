"""Gang scheduling end to end: the operator's PodGroups and kube-scheduler's GangScheduling plugin (Kubernetes
v1.37, GenericWorkload on in the local cluster), against the same jobs with the gang turned off in the operator.

Each test gets a pool of its own: 4 kwok nodes x 2 GPUs (8 GPUs), labelled and tainted so that only its jobs
land there and no other test's pods take its GPUs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import REPO, condition, create_job, job_manifest, live_pods, status, wait_phase
from lepton_cluster.operator import OperatorProcess
from lepton_cluster.testing import (
    create_namespace,
    delete_namespace,
    holds_for,
    pod_manifest,
    unique_name,
    wait_for,
)

from ..conftest import SESSION_PREFIX
from .conftest import operator_env

pytestmark = [pytest.mark.e2e]

POOL = "lepton.ai/e2e-gang"


@pytest.fixture
def pool(cluster: Cluster) -> Iterator[dict[str, Any]]:
    """4 nodes x 2 GPUs in two zones (2 nodes each); the spec fields that put a job there and only there."""
    name = unique_name("gang")
    taint = {"key": POOL, "value": name, "effect": "NoSchedule"}
    nodes: list[str] = []
    try:
        for zone in (f"{name}-a", f"{name}-b"):
            nodes += cluster.add_nodes(2, gpus_per_node=2, zone=zone, labels={POOL: name}, taints=[taint])
        yield {
            "nodeSelector": {POOL: name},
            "tolerations": [{"key": POOL, "operator": "Equal", "value": name, "effect": "NoSchedule"}],
        }
    finally:
        for node in nodes:
            try:
                cluster.delete_node(node)
            except ApiException as e:
                if e.status != 404:
                    raise


@pytest.fixture
def gang_off(
    cluster: Cluster, crds: None, operator_identity: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A namespace outside the session operator's pattern, run by a second operator with LEPTON_GANG_SCHEDULING=off
    (the cluster still serves PodGroups: only the operator's setting differs)."""
    ns = create_namespace(cluster, unique_name(f"{SESSION_PREFIX}nogang"))
    env = operator_env(tmp_path_factory) | {"LEPTON_NAMESPACES": json.dumps([ns]), "LEPTON_GANG_SCHEDULING": "off"}
    proc = OperatorProcess(operator_identity, REPO / "run" / "e2e" / "gang-off", env=env)
    try:
        proc.start()
        yield ns
    finally:
        proc.stop()
        delete_namespace(cluster, ns)


def job(name: str, pool: dict[str, Any], replicas: int = 4, **spec: Any) -> dict[str, Any]:
    return job_manifest(name, replicas=replicas, gpusPerReplica=2, **pool, **spec)


def create_at_once(cluster: Cluster, ns: str, manifests: list[dict[str, Any]]) -> None:
    """POST the jobs from threads released together (no job gets a head start of a round trip)."""
    start = threading.Barrier(len(manifests))
    errors: list[BaseException] = []

    def post(m: dict[str, Any]) -> None:
        start.wait()
        try:
            create_job(cluster, ns, m)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=post, args=(m,)) for m in manifests]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors


def bound(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    return [p for p in live_pods(cluster, ns, name) if p["spec"].get("nodeName")]


def pod_groups(cluster: Cluster, ns: str) -> dict[str, dict[str, Any]]:
    items = cluster.kubectl_json("get", "podgroups.v1beta1.scheduling.k8s.io", "-n", ns)["items"]
    return {g["metadata"]["name"]: g for g in items}


def scheduling_groups(cluster: Cluster, ns: str, name: str) -> set[str | None]:
    """spec.schedulingGroup.podGroupName of the job's pods, read raw (the Python client may not know the field)."""
    pods = cluster.kubectl_json("get", "pods", "-n", ns, "-l", f"lepton.ai/job-name={name}")["items"]
    return {(p["spec"].get("schedulingGroup") or {}).get("podGroupName") for p in pods}


def placed(cluster: Cluster, ns: str, names: list[str], total: int) -> dict[str, int]:
    """Wait until every job has all its pods and `total` of them are bound and the rest reported unschedulable."""

    def settled() -> dict[str, int] | None:
        counts = {n: len(bound(cluster, ns, n)) for n in names}
        pods = [p for n in names for p in live_pods(cluster, ns, n)]
        waiting = [p for p in pods if not p["spec"].get("nodeName")]
        told = all((c := _scheduled(p)) and c.get("reason") == "Unschedulable" for p in waiting)
        return counts if sum(counts.values()) == total and told and len(pods) == 8 else None

    result: dict[str, int] = wait_for(settled, 60, interval=0.3, message=lambda: f"{total} bound pods of {names}")
    return result


def _scheduled(pod: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in pod["status"].get("conditions") or [] if c["type"] == "PodScheduled"), None)


@pytest.mark.timeout(150)
@pytest.mark.usefixtures("operator")
def test_two_gangs_on_8_gpus_one_runs_whole_the_other_binds_nothing_then_runs(
    cluster: Cluster, namespace: str, pool: dict[str, Any]
) -> None:
    create_at_once(cluster, namespace, [job("left", pool), job("right", pool)])

    def one_running() -> tuple[str, str] | None:
        phases = {n: status(cluster, namespace, n).get("phase") for n in ("left", "right")}
        first = next((n for n, ph in phases.items() if ph == "Running"), None)
        return (first, "right" if first == "left" else "left") if first else None

    first, second = wait_for(one_running, 60, interval=0.3, message="one of the two jobs Running")
    assert len(bound(cluster, namespace, first)) == 4

    def waiting_with_reason() -> dict[str, Any] | None:
        st = status(cluster, namespace, second)
        cond = condition(st, "PodsScheduled")
        return st if cond and cond["status"] == "False" and cond["reason"] == "Unschedulable" else None

    st = wait_for(
        waiting_with_reason,
        30,
        interval=0.3,
        message=lambda: f"{second}: PodsScheduled False; status {status(cluster, namespace, second)}",
    )
    assert st["phase"] == "Pending" and st["message"].startswith("waiting for GPUs: ")  # the scheduler's words
    assert len(live_pods(cluster, namespace, second)) == 4
    holds_for(lambda: not bound(cluster, namespace, second), 3.0, message=f"{second} has no bound pod")
    groups = pod_groups(cluster, namespace)
    assert {n: g["spec"]["schedulingPolicy"]["gang"]["minCount"] for n, g in groups.items()} == {
        "left-0": 4,
        "right-0": 4,
    }
    assert groups[f"{second}-0"]["status"]["conditions"][0]["reason"] == "Unschedulable"
    assert groups[f"{first}-0"]["spec"]["disruptionMode"] == {"all": {}}
    assert scheduling_groups(cluster, namespace, first) == {f"{first}-0"}
    for name in (first, second):
        gang = condition(status(cluster, namespace, name), "GangScheduling")
        assert gang and gang["status"] == "True" and f"PodGroup {name}-0, minCount 4" in gang["message"]

    for p in live_pods(cluster, namespace, first):
        cluster.complete_pod(namespace, p["metadata"]["name"])
    wait_phase(cluster, namespace, first, "Succeeded", timeout=30)
    wait_phase(cluster, namespace, second, "Running", timeout=60)
    assert len(bound(cluster, namespace, second)) == 4


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("operator")
def test_a_gang_larger_than_the_pool_binds_no_pod(cluster: Cluster, namespace: str, pool: dict[str, Any]) -> None:
    create_job(cluster, namespace, job("huge", pool, replicas=5))  # 10 GPUs on 8

    def reported() -> dict[str, Any] | None:
        cond = condition(status(cluster, namespace, "huge"), "PodsScheduled")
        return cond if cond and cond["status"] == "False" else None

    cond = wait_for(reported, 60, interval=0.3, message="huge: PodsScheduled False")
    assert "minCount (5) cannot be satisfied" in cond["message"]
    assert len(live_pods(cluster, namespace, "huge")) == 5
    holds_for(lambda: not bound(cluster, namespace, "huge"), 3.0, message="huge holds no GPU")


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("operator")
def test_topology_key_keeps_a_gang_in_one_zone_or_binds_nothing(
    cluster: Cluster, namespace: str, pool: dict[str, Any]
) -> None:
    """Each zone of the pool has 4 GPUs: 2 workers x 2 GPUs fit in one; 3 do not, though 8 GPUs are free."""
    zone = "topology.kubernetes.io/zone"
    create_job(cluster, namespace, job("pair", pool, replicas=2, topologyKey=zone))
    wait_phase(cluster, namespace, "pair", "Running", timeout=60)
    zones = {
        cluster.core.read_node(p["spec"]["nodeName"]).metadata.labels[zone] for p in bound(cluster, namespace, "pair")
    }
    assert len(zones) == 1
    assert pod_groups(cluster, namespace)["pair-0"]["spec"]["schedulingConstraints"] == {"topology": [{"key": zone}]}
    for p in live_pods(cluster, namespace, "pair"):
        cluster.complete_pod(namespace, p["metadata"]["name"])
    wait_phase(cluster, namespace, "pair", "Succeeded", timeout=30)

    create_job(cluster, namespace, job("trio", pool, replicas=3, topologyKey=zone))

    def reported() -> dict[str, Any] | None:
        cond = condition(status(cluster, namespace, "trio"), "PodsScheduled")
        return cond if cond and cond["status"] == "False" else None

    wait_for(reported, 60, interval=0.3, message="trio: PodsScheduled False")
    holds_for(lambda: not bound(cluster, namespace, "trio"), 3.0, message="trio holds no GPU")


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("operator")
def test_a_topology_key_that_is_no_label_key_is_refused_with_the_field_named(cluster: Cluster, namespace: str) -> None:
    with pytest.raises(ApiException) as err:
        create_job(cluster, namespace, job_manifest("bad", topologyKey="not a label/"))
    assert err.value.status == 422 and "spec.topologyKey must be a node label key" in err.value.body


@pytest.mark.timeout(150)
def test_without_the_gang_the_same_jobs_place_partially_and_hold_gpus(
    cluster: Cluster, gang_off: str, pool: dict[str, Any]
) -> None:
    """The operator with LEPTON_GANG_SCHEDULING=off: no PodGroup; pods bind one by one."""
    ns = gang_off
    create_job(cluster, ns, job("huge", pool, replicas=5))
    wait_for(lambda: len(bound(cluster, ns, "huge")) == 4, 60, interval=0.3, message="4 of huge's 5 pods bound")
    assert status(cluster, ns, "huge").get("phase") == "Pending"  # 8 GPUs held by a job that cannot run
    cluster.kubectl("delete", "trainingjob", "huge", "-n", ns, "--wait=true", timeout=60)
    wait_for(lambda: not live_pods(cluster, ns, "huge"), 60, interval=0.3, message="huge's pods gone")

    create_at_once(cluster, ns, [job("left", pool), job("right", pool)])
    counts = placed(cluster, ns, ["left", "right"], total=4)
    assert not pod_groups(cluster, ns) and scheduling_groups(cluster, ns, "left") == {None}
    assert condition(status(cluster, ns, "left"), "GangScheduling") is None
    print(f"without the gang, bound pods per job: {counts}")


@pytest.mark.timeout(150)
@pytest.mark.parametrize("gang", [True, False], ids=["gang", "no-gang"])
def test_two_jobs_on_6_free_gpus_hold_none_with_the_gang_and_6_without(
    cluster: Cluster, pool: dict[str, Any], request: pytest.FixtureRequest, gang: bool
) -> None:
    """Someone else's 2-GPU pod takes 2 of the pool's 8 GPUs; two 4x2-GPU jobs created at once need 8 each.
    Without the gang, pods bind one by one: 3 are bound (6 GPUs) and no job can run, whatever the order (the
    partial placement; split 2+1 it is the deadlock). With it, none binds until the pod goes, then one job runs."""
    if gang:
        request.getfixturevalue("operator")
    ns: str = request.getfixturevalue("namespace" if gang else "gang_off")
    other = pod_manifest("other", gpus=2, node_selector=pool["nodeSelector"], tolerations=pool["tolerations"])
    cluster.core.create_namespaced_pod(ns, other)
    wait_for(lambda: cluster.core.read_namespaced_pod("other", ns).spec.node_name, 30, message="the other pod bound")
    names = ["left", "right"]
    create_at_once(cluster, ns, [job(n, pool) for n in names])
    if not gang:
        counts = placed(cluster, ns, names, total=3)
        assert max(counts.values()) < 4, counts
        phases = lambda: [status(cluster, ns, n).get("phase") for n in names]  # noqa: E731
        holds_for(lambda: "Running" not in phases(), 3.0, message="no job runs while 6 GPUs are held")
        print(f"without the gang, bound pods per job on 6 free GPUs: {counts}")
        return
    counts = placed(cluster, ns, names, total=0)
    holds_for(lambda: not any(bound(cluster, ns, n) for n in names), 3.0, message="no GPU held")
    cluster.core.delete_namespaced_pod("other", ns, grace_period_seconds=0)

    def one_running() -> str | None:
        return next((n for n in names if status(cluster, ns, n).get("phase") == "Running"), None)

    first = wait_for(one_running, 60, interval=0.3, message="one job Running once the other pod is gone")
    assert len(bound(cluster, ns, first)) == 4
    assert not bound(cluster, ns, "right" if first == "left" else "left")
