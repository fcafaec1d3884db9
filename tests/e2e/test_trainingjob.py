"""TrainingJob end to end: real API server, scheduler, controller-manager, kwok GPU nodes, operator process."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import (
    GROUP,
    PLURAL,
    REPO,
    VERSION,
    condition,
    create_job,
    custom,
    dns_records,
    get_job,
    job_manifest,
    job_pods,
    live_pods,
    patch_job,
    status,
    table,
    wait_phase,
)
from lepton_cluster.operator import OperatorProcess
from lepton_cluster.testing import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]


def run_all_pods(cluster: Cluster, ns: str, name: str, n: int) -> list[dict[str, Any]]:
    def running() -> list[dict[str, Any]] | None:
        pods = live_pods(cluster, ns, name)
        ok = len(pods) == n and all(p["status"].get("phase") == "Running" for p in pods)
        return pods if ok else None

    result: list[dict[str, Any]] = wait_for(running, 30, interval=0.2, message=f"{n} running pods of {name}")
    return result


@pytest.mark.timeout(90)
def test_sample_job_runs_on_gpu_nodes_and_succeeds(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "trainingjob-digits.yaml"))
    st = wait_phase(cluster, namespace, "digits", "Running")
    assert st["ready"] == "2/2" and st["replicas"] == 2 and st["restarts"] == 0
    pods = run_all_pods(cluster, namespace, "digits", 2)
    assert sorted(p["metadata"]["name"] for p in pods) == ["digits-0-0", "digits-0-1"]
    for pod in pods:
        node = cluster.core.read_node(pod["spec"]["nodeName"])
        assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    (row,) = table(cluster, namespace)
    assert list(row) == ["NAME", "PHASE", "READY", "RESTARTS", "PROGRESS", "GPU-H", "COST", "AGE"]
    assert (row["NAME"], row["PHASE"], row["READY"], row["RESTARTS"]) == ("digits", "Running", "2/2", "0")
    assert condition(st, "Running")["status"] == "True"
    result = '{"state":"Succeeded","testAccuracy":0.9722,"steps":560}'  # what the trainer writes
    for pod in pods:
        cluster.complete_pod(namespace, pod["metadata"]["name"], message=result)
    done = wait_phase(cluster, namespace, "digits", "Succeeded")
    assert done["progress"]["testAccuracy"] == 0.9722
    assert table(cluster, namespace)[0]["PROGRESS"] == "done acc=0.972"
    assert done["completionTime"] and condition(done, "Succeeded")["reason"] == "Succeeded"
    events = cluster.core.list_namespaced_event(namespace, field_selector="involvedObject.name=digits").items
    assert {"AllWorkersRunning", "Succeeded"} <= {e.reason for e in events}


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("min-gt-max", {"replicas": 2, "minReplicas": 4, "maxReplicas": 3}, "spec.minReplicas must be <= spec.maxReplicas"),
    ("min-gt-replicas", {"replicas": 2, "minReplicas": 3}, "spec.minReplicas must be <= spec.replicas"),
    ("replicas-gt-max", {"replicas": 5, "maxReplicas": 4}, "spec.replicas must be <= spec.maxReplicas"),
    ("negative-gpus", {"gpusPerReplica": -1}, "spec.gpusPerReplica"),
    ("zero-replicas", {"replicas": 0}, "spec.replicas"),
    ("gpu-type-format", {"gpuType": "H100 80GB!"}, "spec.gpuType"),
    ("reserved-env", {"env": [{"name": "WORLD_SIZE", "value": "8"}]}, "reserved for the trainer's environment"),
    ("reserved-env-prefix", {"env": [{"name": "PET_NNODES", "value": "1"}]}, "reserved for the trainer's environment"),
    ("env-value-and-from", {"env": [{"name": "A"}]}, "set exactly one of value and valueFrom"),
    ("bad-memory", {"resources": {"memory": "lots"}}, "spec.resources.memory"),
    ("no-image", {"image": ""}, "spec.image"),
    ("two-volumes", {"checkpoint": {"volume": {"emptyDir": True, "hostPath": "/x"}}}, "set exactly one of"),
    ("gpu-type-without-gpus", {"gpusPerReplica": 0, "gpuType": "NVIDIA-A100-SXM4-80GB"}, "spec.gpuType needs"),
    ("negative-deadline", {"activeDeadlineSeconds": 0}, "spec.activeDeadlineSeconds"),
    ("unknown-policy-type", {"failurePolicy": {"maxRestarts": -3}}, "spec.failurePolicy.maxRestarts"),
    (
        "env-too-big",
        {"env": [{"name": f"V{i}", "value": "x" * 4000} for i in range(9)]},
        "spec.env: names and values at most 32768 characters in all",
    ),
    (
        "args-too-big",
        {"command": ["x" * 4000] * 4, "args": ["y" * 4000] * 5},
        "spec.command and spec.args: at most 32768 characters in all",
    ),
    ("zero-speed", {"prices": {"gpus": {"NVIDIA-L4": {"onDemand": 1, "relativeSpeed": 0}}}}, "relativeSpeed"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("case", "spec", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_spec_is_refused_with_the_field_named(
    cluster: Cluster, namespace: str, case: str, spec: dict[str, Any], message: str
) -> None:
    manifest = job_manifest(f"bad-{case}")
    manifest["spec"].update(spec)
    with pytest.raises(ApiException) as err:
        create_job(cluster, namespace, manifest)
    assert err.value.status == 422
    assert message in json.loads(err.value.body)["message"], err.value.body
    assert custom(cluster).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"] == []
    assert job_pods(cluster, namespace, f"bad-{case}") == []


@pytest.mark.timeout(60)
def test_bad_name_and_immutable_fields_are_refused(cluster: Cluster, namespace: str) -> None:
    with pytest.raises(ApiException) as err:
        create_job(cluster, namespace, job_manifest("x" * 49))
    assert "metadata.name must be a DNS-1035 label of at most 48 characters" in json.loads(err.value.body)["message"]
    create_job(cluster, namespace, job_manifest("keep", gpuType="NVIDIA-A100-SXM4-80GB"))
    for patch, field in (
        ({"spec": {"gpuType": "NVIDIA-H100-80GB-HBM3"}}, "gpuType is immutable"),
        ({"spec": {"image": "other:2"}}, "spec.image is immutable"),
        ({"spec": {"gpusPerReplica": 2}}, "spec.gpusPerReplica is immutable"),
    ):
        with pytest.raises(ApiException) as err:
            patch_job(cluster, namespace, "keep", patch)
        assert err.value.status == 422 and field in json.loads(err.value.body)["message"], err.value.body
    assert get_job(cluster, namespace, "keep")["spec"]["gpuType"] == "NVIDIA-A100-SXM4-80GB"


@pytest.mark.timeout(90)
def test_deleting_a_job_removes_its_pods_and_service(cluster: Cluster, namespace: str) -> None:
    create_job(cluster, namespace, job_manifest("gone", replicas=3))
    st = wait_phase(cluster, namespace, "gone", "Running")
    service = cluster.core.read_namespaced_service("gone", namespace).spec
    assert service.cluster_ip == "None" and not service.selector  # the operator writes its endpoints
    # kwok's pods have loopback addresses, which an EndpointSlice may not hold: no record, and no refused write
    assert dns_records(cluster, namespace, "gone") == {} and "refused" not in (st.get("message") or ""), st
    custom(cluster).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "gone")

    def children_gone() -> bool:
        services = cluster.core.list_namespaced_service(namespace, label_selector="lepton.ai/job-name=gone").items
        return not live_pods(cluster, namespace, "gone") and not services

    wait_for(children_gone, 60, interval=0.3, message="pods and Service garbage-collected")


@pytest.mark.timeout(120)
def test_operator_killed_mid_creation_leaves_exactly_16_pods(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    create_job(cluster, namespace, job_manifest("big", replicas=16))
    wait_for(lambda: job_pods(cluster, namespace, "big"), 20, interval=0.01, message="first pod")
    operator.kill()
    created_before_kill = len(job_pods(cluster, namespace, "big"))
    operator.start()
    pods = run_all_pods(cluster, namespace, "big", 16)
    names = sorted(p["metadata"]["name"] for p in pods)
    assert names == sorted(f"big-0-{r}" for r in range(16))
    st = wait_phase(cluster, namespace, "big", "Running")
    assert st["ready"] == "16/16" and st["restarts"] == 0 and st["restartEpoch"] == 0
    assert len(job_pods(cluster, namespace, "big")) == 16
    print(f"pods existing when the operator was killed: {created_before_kill}/16")


@pytest.mark.timeout(90)
def test_suspend_deletes_pods_keeps_status_and_resume_recreates(cluster: Cluster, namespace: str) -> None:
    create_job(cluster, namespace, job_manifest("nap", replicas=2))
    wait_phase(cluster, namespace, "nap", "Running")
    patch_job(cluster, namespace, "nap", {"spec": {"suspend": True}})
    st = wait_phase(cluster, namespace, "nap", "Suspended")
    wait_for(lambda: not live_pods(cluster, namespace, "nap"), 30, interval=0.2, message="pods deleted")
    assert condition(st, "Suspended")["status"] == "True" and st["replicas"] == 2
    patch_job(cluster, namespace, "nap", {"spec": {"suspend": False}})
    st = wait_phase(cluster, namespace, "nap", "Running")
    assert condition(st, "Suspended")["status"] == "False"


@pytest.mark.timeout(60)
def test_unschedulable_job_says_why(cluster: Cluster, namespace: str) -> None:
    create_job(cluster, namespace, job_manifest("huge", replicas=1, gpusPerReplica=16))

    def reported() -> dict[str, Any] | None:
        return condition(status(cluster, namespace, "huge"), "PodsScheduled")

    cond = wait_for(reported, 30, interval=0.2, message="PodsScheduled condition")
    assert cond["status"] == "False" and cond["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in cond["message"]
    assert status(cluster, namespace, "huge")["phase"] == "Pending"


@pytest.mark.timeout(90)
def test_crash_restarts_a_new_epoch_and_user_error_fails(cluster: Cluster, namespace: str) -> None:
    create_job(cluster, namespace, job_manifest("flaky", replicas=2))
    wait_phase(cluster, namespace, "flaky", "Running")
    cluster.fail_pod(namespace, "flaky-0-1", exit_code=137)

    def next_epoch_running() -> dict[str, Any] | None:
        st = status(cluster, namespace, "flaky")
        return st if st.get("restartEpoch") == 1 and st.get("phase") == "Running" else None

    st = wait_for(next_epoch_running, 30, interval=0.2, message="epoch 1 running")
    assert st["restarts"] == 1
    names = sorted(p["metadata"]["name"] for p in live_pods(cluster, namespace, "flaky"))
    assert names == ["flaky-0-1", "flaky-1-0", "flaky-1-1"]  # the failed worker stays for `kubectl logs`
    cluster.fail_pod(namespace, "flaky-1-0", exit_code=1, message="ValueError: learning rate must be positive")
    st = wait_phase(cluster, namespace, "flaky", "Failed")
    assert "exit code 1" in st["message"] and "learning rate must be positive" in st["message"]
    assert condition(st, "Failed")["reason"] == "WorkerFailed"


@pytest.mark.timeout(60)
def test_active_deadline_fails_and_ttl_deletes_the_job(cluster: Cluster, namespace: str) -> None:
    create_job(cluster, namespace, job_manifest("brief", activeDeadlineSeconds=2, ttlSecondsAfterFinished=3))
    st = wait_phase(cluster, namespace, "brief", "Failed", timeout=20)
    assert condition(st, "Failed")["reason"] == "DeadlineExceeded"

    def deleted() -> bool:
        try:
            get_job(cluster, namespace, "brief")
        except ApiException as e:
            return e.status == 404
        return False

    wait_for(deleted, 20, interval=0.2, message="job deleted by its TTL")


@pytest.mark.timeout(90)
def test_a_worker_the_api_server_refuses_is_reported_and_retried_with_backoff(cluster: Cluster, namespace: str) -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "one-pod"},
        "spec": {"hard": {"pods": "1"}},
    }
    cluster.core.create_namespaced_resource_quota(namespace, quota)
    create_job(cluster, namespace, job_manifest("capped", replicas=2))

    def refused() -> dict[str, Any] | None:
        cond = condition(status(cluster, namespace, "capped"), "ReplicaFailure")
        return cond if cond and cond["status"] == "True" else None

    cond = wait_for(refused, 30, interval=0.2, message="ReplicaFailure condition")
    assert cond["reason"] == "FailedCreate" and "forbidden" in cond["message"], cond
    events = cluster.core.list_namespaced_event(namespace, field_selector="involvedObject.name=capped").items
    assert "FailedCreate" in {e.reason for e in events}
    cluster.core.delete_namespaced_resource_quota("one-pod", namespace)
    st = wait_phase(cluster, namespace, "capped", "Running", timeout=60)
    assert condition(st, "ReplicaFailure")["status"] == "False"


@pytest.mark.timeout(90)
def test_a_job_runs_in_a_namespace_enforcing_pod_security_restricted(cluster: Cluster, namespace: str) -> None:
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
    cluster.core.patch_namespace(namespace, {"metadata": {"labels": labels}})
    create_job(cluster, namespace, job_manifest("locked", replicas=2, checkpoint={"volume": {"emptyDir": True}}))
    pods = run_all_pods(cluster, namespace, "locked", 2)  # admitted by the API server's Pod Security check
    for pod in pods:
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["automountServiceAccountToken"] is False
    st = wait_phase(cluster, namespace, "locked", "Running")
    assert condition(st, "ReplicaFailure") is None or condition(st, "ReplicaFailure")["status"] == "False"


@pytest.mark.timeout(60)
def test_a_hostpath_outside_the_allowed_prefixes_is_refused_with_the_field_named(
    cluster: Cluster, namespace: str
) -> None:
    create_job(cluster, namespace, job_manifest("nosy", checkpoint={"volume": {"hostPath": "/etc"}}))
    st = wait_phase(cluster, namespace, "nosy", "Failed", timeout=30)
    message = condition(st, "InvalidSpec")["message"]
    assert message.startswith("spec.checkpoint.volume.hostPath: hostPath /etc is not under"), message
    events = cluster.core.list_namespaced_event(namespace, field_selector="involvedObject.name=nosy").items
    assert "InvalidSpec" in {e.reason for e in events}
    assert job_pods(cluster, namespace, "nosy") == []
