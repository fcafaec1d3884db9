"""The digits TrainingJob trained for real on the real nodes, through the operator (issue 14 items 4-5).

The trainer image (`make images`, cached) is imported into both nodes' containerd; the operator runs as a
host process (the e2e conftest). Also what the workloads need from the cluster: pods resolve cluster names
(headless Service + hostname/subdomain, as the trainer's rendezvous) and reach the API server at the
fabric address. Figures print as JSON lines (`-s`); they are not asserted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import REPO, create_job, dns_records, wait_phase
from lepton_cluster.realnode.drills import FIRST_STEP, epoch_pods, kill_container, stepping_walls
from lepton_cluster.realnode.plan import API_PORT, BUSYBOX_IMAGE, RUNTIME_LABEL, RUNTIME_TOLERATION, RUNTIME_VALUE
from lepton_cluster.testing import wait_for
from lepton_operator.reconcile.progress import parse_json

from .checkpoints import checkpoint_dir, start_job

pytestmark = [pytest.mark.e2e]

TRAINER_UID = 1000  # the trainer image's user; the operator's worker pods run as it


def on_real_node(spec: dict[str, Any]) -> dict[str, Any]:
    return {**spec, "nodeSelector": {RUNTIME_LABEL: RUNTIME_VALUE}, "tolerations": [RUNTIME_TOLERATION]}


def pod_json(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return cluster.kubectl_json("-n", ns, "get", "pod", name)  # type: ignore[no-any-return]


def terminated(cluster: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    st = pod_json(cluster, ns, name)["status"]
    state = (st.get("containerStatuses") or [{}])[0].get("state", {})
    return state.get("terminated")  # type: ignore[no-any-return]


PROBE = """
import json, os, socket, ssl, sys, urllib.request
ns = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
out = {"resolv": open("/etc/resolv.conf").read()}
out["web"] = socket.gethostbyname(f"web-0.web.{ns}.svc")
out["http"] = urllib.request.urlopen(f"http://web-0.web.{ns}.svc:8080/", timeout=10).read().decode().strip()
out["kubernetes"] = socket.gethostbyname("kubernetes.default.svc.cluster.local")
try:
    socket.gethostbyname("example.com")
    out["outside"] = "resolved"
except OSError as e:
    out["outside"] = type(e).__name__
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
ctx = ssl.create_default_context(cafile="/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
token = open("/var/run/secrets/kubernetes.io/serviceaccount/token").read()
req = urllib.request.Request(f"https://{host}:{port}/version", headers={"Authorization": "Bearer " + token})
out["version"] = json.load(urllib.request.urlopen(req, context=ctx, timeout=10))["gitVersion"]
req = urllib.request.Request(f"https://{host}:{port}/api/v1/nodes", headers={"Authorization": "Bearer " + token})
try:
    urllib.request.urlopen(req, context=ctx, timeout=10)
except urllib.error.HTTPError as e:
    out["nodes"] = [e.code, json.load(e)["message"]]
print(json.dumps(out))
"""


@pytest.mark.timeout(600)
def test_pods_resolve_cluster_names_and_reach_the_api_server(
    cluster: Cluster, namespace: str, trainer_image: str
) -> None:
    ns, api_host = namespace, cluster.real.services.ip
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 8080}]},
    }
    web = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "labels": {"app": "web"}},
        "spec": on_real_node(
            {
                "hostname": "web-0",
                "subdomain": "web",
                "containers": [
                    {
                        "name": "web",
                        "image": BUSYBOX_IMAGE,
                        "command": ["sh", "-c", "mkdir /w && echo hello > /w/index.html && httpd -f -p 8080 -h /w"],
                    }
                ],
            }
        ),
    }
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe"},
        "spec": on_real_node(
            {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "probe",
                        "image": trainer_image,
                        "command": ["python", "-c", PROBE],
                        # what the chart sets for the operator's pod: the API server at the fabric address
                        "env": [
                            {"name": "KUBERNETES_SERVICE_HOST", "value": api_host},
                            {"name": "KUBERNETES_SERVICE_PORT", "value": str(API_PORT)},
                        ],
                    }
                ],
            }
        ),
    }
    t0 = time.monotonic()
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump_all([service, web]))
    wait_for(lambda: pod_json(cluster, ns, "web-0")["status"].get("phase") == "Running", 60, message="web-0 Running")
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(probe))
    done = wait_for(lambda: terminated(cluster, ns, "probe"), 120, interval=0.2, message="the probe pod ran")
    logs = cluster.kubectl("-n", ns, "logs", "probe").stdout
    assert done is not None and done["exitCode"] == 0, logs
    out = json.loads(logs.strip().splitlines()[-1])
    print(json.dumps({"probe pod create -> done s": round(time.monotonic() - t0, 1)}))
    assert f"nameserver {api_host}" in out["resolv"] and f"search {ns}.svc.cluster.local" in out["resolv"], out
    assert out["web"] == pod_json(cluster, ns, "web-0")["status"]["podIP"], out
    assert out["http"] == "hello", out
    assert out["kubernetes"] == "127.96.0.1", out  # the Service's ClusterIP (nothing routes it: use the fabric)
    assert out["outside"] == "gaierror", out  # no name outside the cluster resolves: nothing is forwarded
    assert out["version"] == cluster.kubectl_json("version")["serverVersion"]["gitVersion"], out
    assert out["nodes"][0] == 403 and f"system:serviceaccount:{ns}:default" in out["nodes"][1], out


def digits_manifest(checkpoints: Path, args: list[str] | None = None) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((REPO / "examples" / "trainingjob-digits-real.yaml").read_text())
    manifest["spec"]["checkpoint"]["volume"]["hostPath"] = str(checkpoints)
    if args:
        manifest["spec"]["args"] = args
    return manifest


def result_of(pod: dict[str, Any]) -> dict[str, Any] | None:
    term = pod["status"]["containerStatuses"][0]["state"].get("terminated") or {}
    return parse_json(term.get("message"))


@pytest.mark.timeout(900)
def test_digits_trains_on_both_real_nodes(
    cluster: Cluster, namespace: str, operator: object, trainer_image: str
) -> None:
    ns = namespace
    t0 = time.monotonic()
    start_job(cluster, ns, digits_manifest(checkpoint_dir(ns)))
    wait_phase(cluster, ns, "digits", "Running", timeout=120)
    running = time.monotonic() - t0
    st = wait_phase(cluster, ns, "digits", "Succeeded", timeout=600)
    pods = epoch_pods(cluster, ns, "digits", 0)
    assert st["restarts"] == 0 and len(pods) == 2, st
    assert {p["spec"]["nodeName"] for p in pods} == set(cluster.real_node_names), [p["spec"]["nodeName"] for p in pods]
    for pod in pods:
        assert pod["spec"]["securityContext"]["runAsUser"] == TRAINER_UID, pod["spec"]["securityContext"]
        assert pod["spec"]["containers"][0].get("imagePullPolicy") == "IfNotPresent", pod["spec"]["containers"][0]
        logs = cluster.kubectl("-n", ns, "logs", pod["metadata"]["name"]).stdout
        assert FIRST_STEP.search(logs), logs[-2000:]
    result = result_of(pods[0])
    assert result is not None and result["testAccuracy"] >= 0.95, result
    print(
        json.dumps(
            {
                "apply -> Running s": round(running, 1),
                "apply -> Succeeded s": round(time.monotonic() - t0, 1),
                "accuracy": result["testAccuracy"],
                "nodes": [p["spec"]["nodeName"] for p in pods],
            }
        )
    )


@pytest.mark.timeout(900)
def test_a_killed_worker_restarts_the_epoch_and_resumes_from_the_checkpoint(
    cluster: Cluster, namespace: str, operator: object, trainer_image: str
) -> None:
    ns = namespace
    args = [
        *("-m", "lepton_trainer.train", "--workload", "digits", "--epochs", "12"),
        *("--step-sleep", "0.05", "--checkpoint-every", "20", "--log-every", "10"),
    ]
    ckpt = start_job(cluster, ns, digits_manifest(checkpoint_dir(ns), args))
    wait_phase(cluster, ns, "digits", "Running", timeout=120)
    saved = wait_for(lambda: list(ckpt.glob("step-*.ckpt")), 300, interval=0.2, message="a first checkpoint")
    assert saved and all(f.stat().st_uid == TRAINER_UID for f in saved), saved  # written by the non-root workers

    victim = epoch_pods(cluster, ns, "digits", 0)[1]
    killed_at = time.time()
    kill_container(cluster, victim)

    walls = wait_for(
        lambda: stepping_walls(cluster, ns, "digits", 1, 2), 300, interval=0.5, message="both ranks of epoch 1 stepping"
    )
    assert walls is not None
    # the new epoch's rank 0 was found by its DNS name: the operator's EndpointSlice holds epoch 1's workers
    epoch1 = {p["metadata"]["name"]: p["status"]["podIP"] for p in epoch_pods(cluster, ns, "digits", 1)}
    assert dns_records(cluster, ns, "digits") == epoch1
    st = wait_phase(cluster, ns, "digits", "Succeeded", timeout=600)
    assert (st["restarts"], st["restartEpoch"]) == (1, 1), st
    assert st["lastFailure"]["pod"] == victim["metadata"]["name"] and st["lastFailure"]["exitCode"] == 137, st
    new = epoch_pods(cluster, ns, "digits", 1)
    result = result_of(new[0])
    assert result is not None and result["testAccuracy"] >= 0.95, result
    logs = cluster.kubectl("-n", ns, "logs", new[0]["metadata"]["name"]).stdout
    assert "resumed from checkpoint step=" in logs, logs[-3000:]
    print(
        json.dumps(
            {
                "kill -> all ranks stepping s": round(max(walls) - killed_at, 1),
                "accuracy": result["testAccuracy"],
                "restarts": st["restarts"],
            }
        )
    )


@pytest.mark.timeout(300)
def test_a_worker_over_its_memory_limit_is_oomkilled_by_the_cgroup(
    cluster: Cluster, namespace: str, operator: object, trainer_image: str
) -> None:
    """The kubelet's cgroup enforces resources.memory: the kernel kills the worker, the container ends
    OOMKilled (137), and the operator classifies it so (lastFailure.reason); with no restarts left, Failed."""
    ns = namespace
    hog = "import time; chunks = []\nwhile True:\n    chunks.append(bytearray(32 << 20)); time.sleep(0.01)"
    manifest: dict[str, Any] = {
        "apiVersion": "lepton.ai/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "hog"},
        "spec": {
            "image": "localhost/lepton-trainer:dev",
            "command": ["python", "-c", hog],
            "replicas": 1,
            "gpusPerReplica": 0,
            "resources": {"cpu": "500m", "memory": "256Mi"},
            "nodeSelector": {RUNTIME_LABEL: RUNTIME_VALUE},
            "tolerations": [RUNTIME_TOLERATION],
            "failurePolicy": {"maxRestarts": 0},
        },
    }
    create_job(cluster, ns, manifest)
    st = wait_phase(cluster, ns, "hog", "Failed", timeout=180)
    failure = st["lastFailure"]
    assert (failure["reason"], failure["exitCode"]) == ("OOMKilled", 137), failure
    pod = pod_json(cluster, ns, failure["pod"])
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "OOMKilled", pod["status"]
    assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "256Mi"
