"""`make demo` as a newcomer runs it, on the session's cluster: the images in the real nodes, `helm install` of
the chart (the operator as a pod), the digits job on both real nodes, the InferenceService and a prediction.
Then what a platform engineer checks of the release: where and how the operator runs, that its health and
metrics answer, that `helm upgrade` rolls it and `helm uninstall` leaves nothing of it."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from lepton_cluster import demo
from lepton_cluster.cluster import Cluster
from lepton_cluster.incluster import install_operator, release_values
from lepton_cluster.realnode.plan import RUNTIME_LABEL, RUNTIME_VALUE
from lepton_cluster.testing import delete_namespace, wait_for

pytestmark = [pytest.mark.e2e]

RELEASE, NS = demo.RELEASE, demo.RELEASE_NAMESPACE
FULLNAME = f"{RELEASE}-lepton-operator"
SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator"


@pytest.fixture
def demo_release(cluster: Cluster) -> Iterator[None]:
    assert cluster.real_node_names, "the demo needs the real nodes (LEPTON_REAL_NODES >= 2)"
    yield
    cluster.helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "120s", check=False, timeout=150)
    delete_namespace(cluster, demo.NAMESPACE, wait=True, timeout=120)


def operator_pods(cluster: Cluster) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = cluster.kubectl_json("get", "pods", "-n", NS, "-l", SELECTOR)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


def ready_pod(cluster: Cluster, not_named: str = "") -> dict[str, Any] | None:
    for pod in operator_pods(cluster):
        conds = {c["type"]: c["status"] for c in pod["status"].get("conditions") or []}
        if pod["metadata"]["name"] != not_named and conds.get("Ready") == "True":
            return pod
    return None


@pytest.mark.timeout(1500)
def test_demo_installs_the_chart_trains_and_serves_on_real_nodes(cluster: Cluster, demo_release: None) -> None:
    assert demo.up(timeout=600) == 0  # its own checks: Succeeded, accuracy >= 0.95, a prediction

    pods = operator_pods(cluster)
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    pod = pods[0]
    node = cluster.kubectl_json("get", "node", pod["spec"]["nodeName"])
    assert node["metadata"]["labels"].get(RUNTIME_LABEL) == RUNTIME_VALUE, pod["spec"]["nodeName"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "localhost/lepton-operator:dev"
    sc = container["securityContext"]
    assert (sc["runAsNonRoot"], sc["readOnlyRootFilesystem"], sc["allowPrivilegeEscalation"]) == (True, True, False)
    assert pod["spec"]["serviceAccountName"] == FULLNAME
    ip = pod["status"]["podIP"]
    assert get(f"http://{ip}:8080/healthz")
    metrics = get(f"http://{ip}:8000/metrics")
    assert "lepton_reconcile_duration_seconds_count" in metrics, metrics[:500]  # it reconciled the demo's job
    # the job's workers ran on both real nodes, and `kubectl logs` reaches them
    workers = cluster.kubectl_json("get", "pods", "-n", demo.NAMESPACE, "-l", f"lepton.ai/job-name={demo.JOB}")
    assert sorted(p["spec"]["nodeName"] for p in workers["items"]) == sorted(cluster.real_node_names)
    for w in workers["items"]:
        assert "first step after start" in cluster.kubectl("logs", "-n", demo.NAMESPACE, w["metadata"]["name"]).stdout

    # helm upgrade with a changed value rolls the Deployment; a new pod becomes Ready
    values = release_values([demo.NAMESPACE], [str(demo.RUN)])
    values["operator"]["requeueBackoffMax"] = 20
    install_operator(cluster, RELEASE, NS, values, workdir=demo.RUN)
    new = wait_for(lambda: ready_pod(cluster, not_named=pod["metadata"]["name"]), 180, message="upgraded pod Ready")
    assert new is not None
    env = {e["name"]: e.get("value") for e in new["spec"]["containers"][0]["env"]}
    assert env["LEPTON_REQUEUE_BACKOFF_MAX"] == "20", env
    history = json.loads(cluster.helm("history", RELEASE, "-n", NS, "-o", "json").stdout)
    assert [h["status"] for h in history][-1] == "deployed" and len(history) >= 2, history

    # helm uninstall leaves nothing of the release (the CRDs were applied apart, with kubectl, and stay; the
    # leader Lease is the operator's own, made at run time, as controller-runtime's are: docs/chart.md)
    cluster.helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "120s", timeout=150)
    left = cluster.kubectl(
        "get", "deploy,sa,role,rolebinding,service,configmap,pdb,networkpolicy", "-n", NS, "-o", "name", check=False
    ).stdout.split()
    assert not [name for name in left if FULLNAME in name], left
    cluster_left = cluster.kubectl("get", "clusterrole,clusterrolebinding", "-o", "name").stdout.split()
    assert not [name for name in cluster_left if FULLNAME in name], cluster_left
    wait_for(lambda: not operator_pods(cluster), 120, message="operator pods gone")
