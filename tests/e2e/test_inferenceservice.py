"""InferenceService end to end: Deployment/Service from a finished TrainingJob, a broken model, autoscaling
with real server processes on the simulated pods' loopback IPs under real load."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import REPO, condition, crd_established, custom, job_pods, wait_phase
from lepton_cluster.testing import holds_for, wait_for

from .serving import JSON, ROW, Load, PodServers, export_digits_model

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator", "isvc_crd")]
GROUP, VERSION, PLURAL = "lepton.ai", "v1alpha1", "inferenceservices"


@pytest.fixture(scope="module")
def isvc_crd(cluster: Cluster, crds: None) -> None:
    wait_for(lambda: crd_established(cluster, "inferenceservices.lepton.ai"), 30, message="the CRD Established")


@pytest.fixture
def node_root(tmp_path: Path) -> Path:
    """The simulated nodes' filesystem: hostPath volumes resolve under here."""
    return tmp_path / "node"


@pytest.fixture
def servers(cluster: Cluster, namespace: str, node_root: Path) -> Iterator[list[PodServers]]:
    started: list[PodServers] = []
    yield started
    for s in started:
        s.stop()


def isvc_status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    obj = custom(cluster).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    st: dict[str, Any] = obj.get("status") or {}
    return st


def wait_status(cluster: Cluster, ns: str, name: str, check: Any, timeout: float, what: str) -> dict[str, Any]:
    def ok() -> dict[str, Any] | None:
        st = isvc_status(cluster, ns, name)
        return st if check(st) else None

    result: dict[str, Any] = wait_for(
        ok, timeout, interval=0.2, message=lambda: f"{what}; status {isvc_status(cluster, ns, name)}"
    )
    return result


def cond_is(type_: str, status: str, reason: str | None = None) -> Any:
    def check(st: dict[str, Any]) -> bool:
        c = condition(st, type_)
        return c is not None and c["status"] == status and (reason is None or c["reason"] == reason)

    return check


def deployment(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return cluster.to_dict(cluster.apps.read_namespaced_deployment(name, ns))


def create_isvc(cluster: Cluster, ns: str, name: str, **spec: Any) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService", "metadata": {"name": name}, "spec": spec}
    custom(cluster).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)


@pytest.mark.timeout(150)
def test_a_service_from_a_finished_trainingjob_gets_ready_with_a_url(
    cluster: Cluster, namespace: str, node_root: Path, servers: list[PodServers]
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "inferenceservice-digits.yaml"))
    waiting = wait_status(cluster, namespace, "digits", cond_is("ModelLoaded", "False", "WaitingForTrainingJob"), 30,
                          "waiting for the TrainingJob")  # fmt: skip
    assert "digits-train is" in condition(waiting, "ModelLoaded")["message"]
    # The "trainer" exports into the job's own folder of its hostPath checkpoint volume; then its pod completes.
    job = custom(cluster).get_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", "digits-train")
    export_digits_model(node_root / f"var/lib/lepton/digits/{namespace}/digits-train-{job['metadata']['uid']}/export")
    wait_phase(cluster, namespace, "digits-train", "Running")
    for pod in job_pods(cluster, namespace, "digits-train"):
        cluster.complete_pod(namespace, pod["metadata"]["name"])
    wait_phase(cluster, namespace, "digits-train", "Succeeded")

    dep = wait_for(lambda: _maybe_deployment(cluster, namespace, "digits"), 30, message="the Deployment")
    spec = dep["spec"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    container = spec["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    args = container["args"]
    assert args[args.index("--model-dir") + 1] == "/checkpoints/export"
    folder = f"{namespace}/digits-train-{job['metadata']['uid']}"  # the job's own folder, as its workers saw it
    assert container["volumeMounts"][0] == {
        "name": "model", "mountPath": "/checkpoints", "readOnly": True, "subPath": folder
    }  # fmt: skip
    assert cluster.core.read_namespaced_service("digits", namespace).spec.ports[0].port == 80

    servers.append(PodServers(cluster, namespace, "digits", node_root))
    # Ready first comes from the pods' readiness (kwok); then the operator hears from the real server itself.
    st = wait_status(cluster, namespace, "digits", cond_is("ModelLoaded", "True", "Loaded"), 60, "Loaded")
    assert condition(st, "Ready")["status"] == "True"
    assert st["url"] == f"http://digits.{namespace}.svc.cluster.local/v2/models/digits"
    assert st["modelVersion"]
    assert st["replicaSummary"] == "1/1" and float(st["cost"]["rateUsdPerHour"]) > 0

    def table() -> list[str] | None:
        lines = cluster.kubectl("get", "lisvc", "-n", namespace).stdout.splitlines()
        return lines if lines[1].split()[1:4] == [st["url"], "True", "1/1"] else None

    header = wait_for(table, 10, interval=0.2, message="kubectl get lisvc")[0]
    assert header.split() == ["NAME", "URL", "READY", "REPLICAS", "COST/H", "AGE"]
    url = servers[0].ready_urls()[0]
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": ROW}]}).encode()
    import urllib.request

    req = urllib.request.Request(f"{url}/v2/models/digits/infer", data=body, headers=JSON)
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read())["outputs"][0]["shape"] == [1]

    # A new server setting rolls out as a new ReplicaSet (maxUnavailable 0) and the service stays Ready.
    custom(cluster).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "digits", {"spec": {"batching": {"maxBatchSize": 8}}}
    )

    def rolled() -> bool:
        d = deployment(cluster, namespace, "digits")
        args = d["spec"]["template"]["spec"]["containers"][0]["args"]
        st = d.get("status") or {}
        return (
            args[args.index("--max-batch-size") + 1] == "8"
            and st.get("updatedReplicas") == st.get("readyReplicas") == 1
        )

    wait_for(rolled, 60, interval=0.2, message="the rollout of maxBatchSize 8")
    wait_status(cluster, namespace, "digits", cond_is("Ready", "True"), 60, "Ready after the rollout")
    events = cluster.core.list_namespaced_event(namespace, field_selector="involvedObject.name=digits").items
    reasons = {e.reason for e in events}
    assert {"WaitingForTrainingJob", "Serving", "RollingUpdate"} <= reasons and reasons & {
        "Loaded",
        "ReadinessProbePassed",
    }


def _maybe_deployment(cluster: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        return deployment(cluster, ns, name)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


@pytest.mark.timeout(120)
def test_a_broken_model_path_gives_model_loaded_false_with_the_reason(
    cluster: Cluster, namespace: str, node_root: Path, servers: list[PodServers]
) -> None:
    (node_root / "srv/models").mkdir(parents=True)
    create_isvc(
        cluster, namespace, "broken", model={"modelPath": "/models/nope", "volume": {"hostPath": "/srv/models"}},
        maxReplicas=1,
    )  # fmt: skip
    servers.append(PodServers(cluster, namespace, "broken", node_root))
    st = wait_status(cluster, namespace, "broken", cond_is("ModelLoaded", "False", "LoadFailed"), 60, "LoadFailed")
    message = condition(st, "ModelLoaded")["message"]
    assert "cannot load the model from" in message and "does not exist" in message, message
    assert condition(st, "Ready")["status"] == "False" and st["ready"] == "False"
    events = cluster.core.list_namespaced_event(namespace, field_selector="involvedObject.name=broken").items
    assert any(e.reason == "LoadFailed" and e.type == "Warning" for e in events)


@pytest.mark.timeout(200)
def test_autoscaling_follows_real_load_up_and_back_down(
    cluster: Cluster, namespace: str, node_root: Path, servers: list[PodServers]
) -> None:
    export_digits_model(node_root / "srv/models/digits")
    create_isvc(
        cluster, namespace, "auto",
        model={"modelPath": "/models/digits", "volume": {"hostPath": "/srv/models"}},
        minReplicas=1, maxReplicas=3,
        autoscaling={"targetInFlight": 2, "stableWindowSeconds": 12, "panicWindowSeconds": 6},
    )  # fmt: skip
    # Each forward pass takes 200 ms more than the tiny CNN needs: a model whose time is spent on the device.
    pods = PodServers(cluster, namespace, "auto", node_root, "--simulated-latency-ms", "200")
    servers.append(pods)
    wait_status(cluster, namespace, "auto", cond_is("Ready", "True"), 60, "Ready")
    load = Load(pods, "auto")
    try:
        load.clients(1)  # half the capacity of one replica
        # A steady baseline: the windows fill with ~1 in flight and one replica is enough.
        holds_for(lambda: isvc_status(cluster, namespace, "auto").get("replicas") == 1, 8, interval=0.5)
        step = time.monotonic()
        load.clients(4)  # 2x the capacity of one replica
        wait_status(cluster, namespace, "auto", lambda s: s.get("replicas", 0) >= 2, 30, "scale-up")
        decided = time.monotonic() - step
        wait_for(lambda: len(pods.ready_urls()) >= 2, 60, interval=0.2, message="a second server serving")
        serving = time.monotonic() - step
        print(f"\n2x load step: scale-up decided after {decided:.1f} s, second replica serving after {serving:.1f} s")
        assert decided <= 10.0
        st = isvc_status(cluster, namespace, "auto")
        assert st["replicas"] <= 3
        load.stop_clients()
        idle = time.monotonic()
        wait_status(cluster, namespace, "auto", lambda s: s.get("replicas") == 1, 90, "scale-down to 1")
        print(f"idle: back to 1 replica after {time.monotonic() - idle:.1f} s; {load.ok} ok, {load.errors} errors")
    finally:
        load.close()
    events = cluster.core.list_namespaced_event(namespace, field_selector="involvedObject.name=auto").items
    assert {"ScaledUp", "ScaledDown"} <= {e.reason for e in events}
    wait_for(lambda: deployment(cluster, namespace, "auto")["spec"]["replicas"] == 1, 10, message="Deployment at 1")
