"""spec.template end to end: the worker pods the API server stores carry the template's volumes, /dev/shm, the
ServiceAccount, pull secrets, labels and annotations; a template setting what the operator owns is refused by the
API server with a message naming the field; a hostPath the operator does not allow is an InvalidSpec."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import (
    REPO,
    condition,
    create_job,
    job_manifest,
    job_pods,
    live_pods,
    patch_job,
    wait_phase,
)
from lepton_cluster.testing import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]
EXAMPLE = REPO / "examples" / "trainingjob-own-script.yaml"
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture
def data_volume(cluster: Cluster, namespace: str) -> Iterator[str]:
    """A PersistentVolume an admin made for the example's claim (kwok nodes: the path is never read)."""
    name = f"{namespace}-data"
    cluster.core.create_persistent_volume(
        {
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "hostPath": {"path": "/var/lib/lepton/data"},
                "claimRef": {"namespace": namespace, "name": "own-script-data"},
            },
        }
    )
    try:
        yield name
    finally:
        cluster.core.delete_persistent_volume(name)


@pytest.mark.timeout(120)
def test_own_script_example_pods_carry_the_template(cluster: Cluster, namespace: str, data_volume: str) -> None:
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    job = next(d for d in docs if d["kind"] == "TrainingJob")
    job["spec"]["template"]["spec"]["tolerations"] = [GPU_TAINT]  # every kwok node is a GPU node
    path = REPO / "run" / "e2e" / f"{namespace}-own-script.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs))
    cluster.kubectl("apply", "-n", namespace, "-f", str(path))

    def running() -> list[dict[str, Any]] | None:
        pods = live_pods(cluster, namespace, "own-script")
        return pods if len(pods) == 2 and all(p["status"].get("phase") == "Running" for p in pods) else None

    pods = wait_for(running, 60, interval=0.2, message="2 running pods of own-script")
    assert pods is not None
    for pod in pods:
        spec, meta = pod["spec"], pod["metadata"]
        assert meta["labels"]["team"] == "vision" and meta["labels"]["lepton.ai/job-name"] == "own-script"
        assert meta["annotations"]["example.com/owner"] == "vision-team"
        assert spec["serviceAccountName"] == "own-script" and spec["automountServiceAccountToken"] is False
        assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]
        assert spec["terminationGracePeriodSeconds"] == 60 and spec["restartPolicy"] == "Never"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["script"]["configMap"]["name"] == "own-script"
        assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "own-script-data", "readOnly": True}
        assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Gi"}
        (trainer,) = spec["containers"]
        mounts = {m["mountPath"]: m["name"] for m in trainer["volumeMounts"]}
        assert mounts == {"/scripts": "script", "/data": "data", "/checkpoints": "checkpoints", "/dev/shm": "dshm"}
        assert trainer["args"] == ["/scripts/train.py"] and trainer["image"] == job["spec"]["image"]
        assert {"RANK", "WORLD_SIZE"}.isdisjoint(e["name"] for e in trainer["env"])  # torchrun sets them
        assert trainer["securityContext"]["allowPrivilegeEscalation"] is False
    for pod in pods:
        cluster.complete_pod(namespace, pod["metadata"]["name"])
    wait_phase(cluster, namespace, "own-script", "Succeeded")


def trainer(**fields: Any) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "trainer", **fields}]}}


OWNED: list[tuple[str, dict[str, Any], str]] = [
    ("image", trainer(image="other:1"), "spec.template.spec.containers[trainer].image: set spec.image"),
    ("env", trainer(env=[{"name": "PET_NNODES", "value": "1"}]), "spec.template.spec.containers[trainer].env"),
    ("port", trainer(ports=[{"containerPort": 29400}]), "spec.template.spec.containers[trainer].ports"),
    ("gpus", trainer(resources={"limits": {"nvidia.com/gpu": 2}}), "nvidia.com/gpu is the operator's"),
    ("restart", {"spec": {"restartPolicy": "OnFailure"}}, "spec.template.spec.restartPolicy"),
    ("hostname", {"spec": {"hostname": "h"}}, "spec.template.spec.hostname and subdomain"),
    ("label", {"metadata": {"labels": {"lepton.ai/job-name": "x"}}}, "spec.template.metadata.labels"),
    ("name", {"metadata": {"name": "x"}}, "spec.template.metadata: name"),
    ("volume", {"spec": {"volumes": [{"name": "dshm", "emptyDir": {}}]}}, "spec.template.spec.volumes"),
    ("schema", trainer(ports=[{"containerPort": "http"}]), "spec.template.spec.containers[0].ports[0].containerPort"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("case", "template", "message"), OWNED, ids=[c[0] for c in OWNED])
def test_a_template_setting_an_owned_field_is_refused_naming_it(
    cluster: Cluster, namespace: str, case: str, template: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiException) as err:
        create_job(cluster, namespace, job_manifest(f"own-{case}", template=template))
    assert err.value.status == 422
    assert message in json.loads(err.value.body or "{}")["message"], err.value.body


@pytest.mark.timeout(60)
def test_a_template_hostpath_outside_the_allowed_prefixes_is_an_invalid_spec(cluster: Cluster, namespace: str) -> None:
    volumes = [{"name": "etc", "hostPath": {"path": "/etc"}}]
    create_job(cluster, namespace, job_manifest("nosy-template", template={"spec": {"volumes": volumes}}))
    st = wait_phase(cluster, namespace, "nosy-template", "Failed", timeout=30)
    invalid = condition(st, "InvalidSpec")
    assert invalid is not None
    message = invalid["message"]
    assert message.startswith("spec.template.spec.volumes[0].hostPath.path: hostPath /etc is not under"), message
    assert job_pods(cluster, namespace, "nosy-template") == []


@pytest.mark.timeout(90)
def test_the_template_changes_only_while_suspended_and_resumed_pods_use_it(cluster: Cluster, namespace: str) -> None:
    create_job(cluster, namespace, job_manifest("tweak", template={"metadata": {"labels": {"v": "1"}}}))
    wait_phase(cluster, namespace, "tweak", "Running")
    change = {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}}
    with pytest.raises(ApiException) as err:
        patch_job(cluster, namespace, "tweak", change)
    assert "spec.template can change only while the job is suspended" in json.loads(err.value.body or "{}")["message"]
    patch_job(cluster, namespace, "tweak", {"spec": {"suspend": True}})
    wait_phase(cluster, namespace, "tweak", "Suspended")
    patch_job(cluster, namespace, "tweak", change)
    patch_job(cluster, namespace, "tweak", {"spec": {"suspend": False}})

    def relabelled() -> bool:
        pods = live_pods(cluster, namespace, "tweak")
        return len(pods) == 2 and all(p["metadata"]["labels"].get("v") == "2" for p in pods)

    assert wait_for(relabelled, 30, interval=0.2, message="2 pods of the new template")
