"""Pod and Service rendering."""

from __future__ import annotations

import json

import pytest
from lepton_operator.api.trainingjob import TrainingJob
from lepton_operator.builders.names import pod_name
from lepton_operator.builders.trainingjob import contract_env, endpoint_slice, headless_service, worker_pod
from lepton_operator.constants import GPU_PRODUCT_LABEL, LABEL_EPOCH, LABEL_JOB, LABEL_REPLICA
from lepton_trainer import contract

from .jobs import make_job


def env_of(pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}


def test_pod_name_is_deterministic() -> None:
    assert pod_name("mnist", 3, 7) == "mnist-3-7"


def test_worker_pod_has_gpus_toleration_affinity_and_owner() -> None:
    job = make_job(gpuType="NVIDIA-H100-80GB-HBM3", resources={"cpu": "8", "memory": "64Gi"})
    pod = worker_pod(job, epoch=2, rank=1, world_size=2)
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == "mnist-2-1"
    assert meta["labels"][LABEL_JOB] == "mnist"
    assert meta["labels"][LABEL_EPOCH] == "2" and meta["labels"][LABEL_REPLICA] == "1"
    owner = meta["ownerReferences"][0]
    assert owner["kind"] == "TrainingJob" and owner["uid"] == "uid-1" and owner["controller"] is True
    limits = spec["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    term = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"] == [
        {"key": GPU_PRODUCT_LABEL, "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3"]}
    ]
    assert spec["restartPolicy"] == "Never"
    assert spec["hostname"] == "mnist-2-1" and spec["subdomain"] == "mnist"


def test_cpu_only_pod_has_no_gpu_toleration_or_limit() -> None:
    pod = worker_pod(make_job(gpusPerReplica=0), 0, 0, 1)
    assert "resources" not in pod["spec"]["containers"][0]
    assert pod["spec"]["tolerations"] == []


def test_env_contract_matches_the_trainer() -> None:
    job = make_job(env=[{"name": "LR", "value": "0.1"}])
    env = env_of(worker_pod(job, 1, 0, 2))
    assert set(env) >= contract.INJECTED
    assert env["LR"] == "0.1"
    assert env[contract.NNODES] == "2:2"
    assert env[contract.NPROC_PER_NODE] == "4"
    assert env[contract.REPLICA_INDEX] == "0" and env[contract.RESTART_EPOCH] == "1"
    assert env[contract.RDZV_ENDPOINT] == f"mnist-1-0.mnist.ml.svc:{contract.RDZV_PORT}"
    assert set(contract_env(job, 0, 0, 2)) == contract.INJECTED


def test_the_pod_ip_comes_from_the_downward_api_so_progress_listens_only_there() -> None:
    container = worker_pod(make_job(), 0, 0, 2)["spec"]["containers"][0]
    pod_ip = next(e for e in container["env"] if e["name"] == contract.POD_IP)
    assert pod_ip == {"name": contract.POD_IP, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    assert contract.default_progress_listen({contract.POD_IP: "198.19.1.7"}) == "198.19.1.7:29500"
    assert contract.default_progress_listen({}) == "0.0.0.0:29500"  # outside a pod (a laptop, tests)


def test_rendezvous_host_changes_with_the_epoch() -> None:
    job = make_job()
    assert (
        env_of(worker_pod(job, 0, 1, 2))[contract.RDZV_ENDPOINT]
        != env_of(worker_pod(job, 1, 1, 2))[contract.RDZV_ENDPOINT]
    )


def test_checkpoint_volume_is_mounted_at_the_jobs_own_folder() -> None:
    job = make_job(checkpoint={"volume": {"persistentVolumeClaim": "ckpt"}, "path": "/ckpt"})
    pod = worker_pod(job, 0, 0, 2)
    assert pod["spec"]["volumes"][0] == {"name": "checkpoints", "persistentVolumeClaim": {"claimName": "ckpt"}}
    mount = {"name": "checkpoints", "mountPath": "/ckpt", "subPath": "ml/mnist-uid-1"}
    assert pod["spec"]["containers"][0]["volumeMounts"][0] == mount
    assert env_of(pod)[contract.CHECKPOINT_DIR] == "/ckpt"


def other_job(job: TrainingJob, name: str, uid: str) -> TrainingJob:
    return job.model_copy(update={"metadata": {**job.metadata, "name": name, "uid": uid}})


@pytest.mark.parametrize("volume", [{"persistentVolumeClaim": "shared"}, {"hostPath": "/data/ckpt"}])
def test_jobs_sharing_a_checkpoint_volume_never_share_a_folder(volume: dict) -> None:
    """Each job resumes from and prunes only its own checkpoints; a job made again under the same name starts
    afresh; every epoch of one job sees the same folder."""
    job = make_job(checkpoint={"volume": volume})

    def where(j: TrainingJob, epoch: int = 0) -> tuple[str, str]:
        pod = worker_pod(j, epoch, 0, 2)
        mount = pod["spec"]["containers"][0]["volumeMounts"][0]
        return json.dumps(pod["spec"]["volumes"], sort_keys=True), mount.get("subPath", "")

    places = {where(job), where(other_job(job, "other", "uid-2")), where(other_job(job, "mnist", "uid-3"))}
    assert len(places) == 3 and where(job, 0) == where(job, 5)
    if "hostPath" in volume:
        pod = worker_pod(job, 0, 0, 2)
        assert pod["spec"]["volumes"][0]["hostPath"] == {"path": "/data/ckpt", "type": "DirectoryOrCreate"}
        assert pod["spec"]["containers"][0]["volumeMounts"][0]["subPath"] == "ml/mnist-uid-1"


def test_headless_service_selects_no_pods_its_endpoints_are_the_operators() -> None:
    svc = headless_service(make_job())
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert "selector" not in svc["spec"]  # no scheduler spreading, no endpoint controllers (reconcile/dns.py)
    assert svc["metadata"]["labels"][LABEL_JOB] == "mnist"


def test_an_endpoint_slice_names_each_worker_for_dns_and_belongs_to_the_service() -> None:
    job = make_job()
    s = endpoint_slice(job, 0, 4, [("mnist-0-0", "198.19.0.5", "gpu-0"), ("mnist-0-1", "198.19.0.6", None)])
    assert s["metadata"]["name"] == "mnist-dns-0"
    labels = s["metadata"]["labels"]
    assert labels["kubernetes.io/service-name"] == "mnist" and labels[LABEL_JOB] == "mnist"
    assert labels["endpointslice.kubernetes.io/managed-by"] == "lepton-operator"  # not the endpointslice controller's
    assert s["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert s["addressType"] == "IPv4" and s["ports"][0]["port"] == contract.RDZV_PORT
    first, second = s["endpoints"]
    assert first == {
        "addresses": ["198.19.0.5"],
        "conditions": {"ready": True},
        "hostname": "mnist-0-0",
        "nodeName": "gpu-0",
        "targetRef": {"kind": "Pod", "namespace": "ml", "name": "mnist-0-0"},
    }
    assert "nodeName" not in second and second["hostname"] == "mnist-0-1"
