"""spec.template: the worker pod the builder renders from it, field by field, and who wins when both set."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from lepton_operator.api.pod import EnvVar
from lepton_operator.builders.placement import Placement
from lepton_operator.builders.template import trainer_resources
from lepton_operator.builders.trainingjob import worker_pod
from lepton_operator.config import OperatorConfig
from lepton_operator.handlers.trainingjob import TrainingJobController
from lepton_operator.reconcile.views import pod_view
from lepton_trainer import contract

from .fakekube import FakeKube
from .jobs import job_body, make_job

Pod = dict[str, Any]
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
GPU_TERM = {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["H100"]}
ZONE_TERM = {"key": "zone", "operator": "In", "values": ["a"]}


def tmpl(spec: dict[str, Any] | None = None, trainer: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    """A template: pod spec fields, the trainer container's fields (when given), metadata."""
    pod_spec = dict(spec or {})
    if trainer is not None:
        pod_spec["containers"] = [{"name": "trainer", **trainer}, *pod_spec.get("containers", [])]
    return {"metadata": meta, "spec": pod_spec}


def trainer_of(pod: Pod) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in pod["spec"]["containers"] if c["name"] == "trainer"]
    assert len(found) == 1
    return found[0]


def env_of(pod: Pod) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in trainer_of(pod)["env"]}


def volume(pod: Pod, name: str) -> dict[str, Any]:
    return next(v for v in pod["spec"]["volumes"] if v["name"] == name)


def mounts(pod: Pod) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in trainer_of(pod).get("volumeMounts", [])}


DATA = [
    {"name": "data", "persistentVolumeClaim": {"claimName": "imagenet", "readOnly": True}},
    {"name": "scripts", "configMap": {"name": "train-py"}},
    {"name": "creds", "secret": {"secretName": "s3"}},
]
SIDECAR = {"name": "logs", "image": "fluent-bit"}
INIT = {"name": "fetch", "image": "busybox", "command": ["true"]}

# (id, flat spec fields, what the pod shows, expected)
CASES: list[tuple[str, dict[str, Any], Callable[[Pod], Any], Any]] = [
    ("no template: the trainer alone", {}, lambda p: [c["name"] for c in p["spec"]["containers"]], ["trainer"]),
    ("no template: /dev/shm in memory, unbounded", {}, lambda p: volume(p, "dshm")["emptyDir"], {"medium": "Memory"}),
    (
        "shm sized by the flat memory",
        {"resources": {"memory": "8Gi"}},
        lambda p: volume(p, "dshm")["emptyDir"],
        {"medium": "Memory", "sizeLimit": "8Gi"},
    ),
    (
        "shm sized by the template's memory limit",
        {"template": tmpl(trainer={"resources": {"limits": {"memory": "4Gi"}}})},
        lambda p: volume(p, "dshm")["emptyDir"]["sizeLimit"],
        "4Gi",
    ),
    (
        "shm of the template's own wins",
        {
            "template": tmpl(
                {"volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}]},
                trainer={"volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}]},
            )
        },
        lambda p: (mounts(p)["/dev/shm"], [v["name"] for v in p["spec"]["volumes"]]),
        ("shm", ["shm"]),
    ),
    (
        "data volumes flow through",
        {
            "template": tmpl(
                {"volumes": DATA},
                trainer={
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data"},
                        {"name": "scripts", "mountPath": "/scripts"},
                    ]
                },
            )
        },
        lambda p: (p["spec"]["volumes"][:3], mounts(p)),
        (DATA, {"/data": "data", "/scripts": "scripts", "/dev/shm": "dshm"}),
    ),
    (
        "checkpoint mount joins the template's",
        {
            "template": tmpl({"volumes": DATA[:1]}, trainer={"volumeMounts": [{"name": "data", "mountPath": "/data"}]}),
            "checkpoint": {"volume": {"persistentVolumeClaim": "ck"}},
        },
        lambda p: sorted(mounts(p)),
        ["/checkpoints", "/data", "/dev/shm"],
    ),
    (
        "serviceAccountName and imagePullSecrets",
        {"template": tmpl({"serviceAccountName": "trainer-sa", "imagePullSecrets": [{"name": "registry"}]})},
        lambda p: (p["spec"]["serviceAccountName"], p["spec"]["imagePullSecrets"]),
        ("trainer-sa", [{"name": "registry"}]),
    ),
    ("no API token by default", {}, lambda p: p["spec"]["automountServiceAccountToken"], False),
    (
        "the template may mount a token",
        {"template": tmpl({"automountServiceAccountToken": True})},
        lambda p: p["spec"]["automountServiceAccountToken"],
        True,
    ),
    (
        "pod labels: the template's, the operator's over them",
        {"template": tmpl(labels={"team": "vision"})},
        lambda p: (p["metadata"]["labels"]["team"], p["metadata"]["labels"]["lepton.ai/job-name"]),
        ("vision", "mnist"),
    ),
    (
        "pod annotations",
        {"template": tmpl(annotations={"sidecar.istio.io/inject": "false"})},
        lambda p: p["metadata"]["annotations"],
        {"sidecar.istio.io/inject": "false"},
    ),
    (
        "name, hostname, restartPolicy are the operator's",
        {"template": tmpl({"dnsPolicy": "ClusterFirst"})},
        lambda p: (
            p["metadata"]["name"],
            p["spec"]["hostname"],
            p["spec"]["subdomain"],
            p["spec"]["restartPolicy"],
            p["spec"]["dnsPolicy"],
        ),
        ("mnist-0-1", "mnist-0-1", "mnist", "Never", "ClusterFirst"),
    ),
    (
        "extra resources beside the GPUs",
        {"template": tmpl(trainer={"resources": {"limits": {"rdma/hca": 1}}})},
        lambda p: trainer_of(p)["resources"]["limits"],
        {"rdma/hca": 1, "nvidia.com/gpu": "4"},
    ),
    (
        "flat cpu/memory win by key",
        {
            "resources": {"cpu": "4"},
            "template": tmpl(
                trainer={"resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "2"}}}
            ),
        },
        lambda p: trainer_of(p)["resources"],
        {
            "limits": {"cpu": "4", "memory": "1Gi", "nvidia.com/gpu": "4"},
            "requests": {"cpu": "4", "nvidia.com/gpu": "4"},
        },
    ),
    (
        "image and ports are the operator's, extra ports kept",
        {"template": tmpl(trainer={"ports": [{"name": "metrics", "containerPort": 9090}]})},
        lambda p: (trainer_of(p)["image"], [x["containerPort"] for x in trainer_of(p)["ports"]]),
        ("trainer:1", [contract.RDZV_PORT, contract.PROGRESS_PORT, 9090]),
    ),
    (
        "template command/args when no flat ones",
        {"template": tmpl(trainer={"command": ["python"], "args": ["t.py"]})},
        lambda p: (trainer_of(p)["command"], trainer_of(p)["args"]),
        (["python"], ["t.py"]),
    ),
    (
        "flat command/args win",
        {
            "command": ["torchrun"],
            "args": ["-m", "x"],
            "template": tmpl(trainer={"command": ["python"], "args": ["t.py"]}),
        },
        lambda p: (trainer_of(p)["command"], trainer_of(p)["args"]),
        (["torchrun"], ["-m", "x"]),
    ),
    (
        "env: contract, template's, flat over template by name",
        {
            "env": [{"name": "A", "value": "flat"}],
            "template": tmpl(trainer={"env": [{"name": "A", "value": "t"}, {"name": "B", "value": "t"}]}),
        },
        lambda p: (
            env_of(p)["A"],
            env_of(p)["B"],
            [e["name"] for e in trainer_of(p)["env"]][-2:],
            env_of(p)[contract.REPLICA_INDEX],
        ),
        ("flat", "t", ["B", "A"], "1"),
    ),
    (
        "init containers and sidecars flow through, restricted",
        {"template": tmpl({"initContainers": [INIT], "containers": [SIDECAR]}, trainer={})},
        lambda p: (
            [c["name"] for c in p["spec"]["containers"]],
            p["spec"]["initContainers"][0]["securityContext"],
            p["spec"]["containers"][1]["image"],
        ),
        (["trainer", "logs"], {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}, "fluent-bit"),
    ),
    (
        "template securityContext keys win over the defaults",
        {"template": tmpl({"securityContext": {"runAsUser": 2000}})},
        lambda p: (p["spec"]["securityContext"]["runAsUser"], p["spec"]["securityContext"]["runAsNonRoot"]),
        (2000, True),
    ),
    (
        "tolerations joined",
        {
            "tolerations": [{"key": "flat", "operator": "Exists"}],
            "template": tmpl({"tolerations": [{"key": "t", "operator": "Exists"}]}),
        },
        lambda p: [t["key"] for t in p["spec"]["tolerations"]],
        ["t", "nvidia.com/gpu", "flat"],
    ),
    (
        "nodeSelector: flat over template by key",
        {"nodeSelector": {"a": "flat"}, "template": tmpl({"nodeSelector": {"a": "t", "b": "t"}})},
        lambda p: p["spec"]["nodeSelector"],
        {"a": "flat", "b": "t"},
    ),
    (
        "priorityClassName: flat wins",
        {"priorityClassName": "high", "template": tmpl({"priorityClassName": "low"})},
        lambda p: p["spec"]["priorityClassName"],
        "high",
    ),
    (
        "priorityClassName from the template",
        {"template": tmpl({"priorityClassName": "low"})},
        lambda p: p["spec"]["priorityClassName"],
        "low",
    ),
    (
        "grace period: the template's wins",
        {"template": tmpl({"terminationGracePeriodSeconds": 120})},
        lambda p: p["spec"]["terminationGracePeriodSeconds"],
        120,
    ),
    (
        "gpuType added to every required term of the template",
        {
            "gpuType": "H100",
            "template": tmpl(
                {"affinity": {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchExpressions": [ZONE_TERM]}]}}}}
            ),
        },
        lambda p: p["spec"]["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"],
        [{"matchExpressions": [ZONE_TERM, GPU_TERM]}],
    ),
    (
        "pod anti-affinity kept beside the gpuType",
        {"gpuType": "H100", "template": tmpl({"affinity": {"podAntiAffinity": {"x": 1}}})},
        lambda p: (
            p["spec"]["affinity"]["podAntiAffinity"],
            p["spec"]["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"],
        ),
        ({"x": 1}, [{"matchExpressions": [GPU_TERM]}]),
    ),
]


@pytest.mark.parametrize(("spec", "show", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_worker_pod_from_template(spec: dict[str, Any], show: Callable[[Pod], Any], expected: Any) -> None:
    job = make_job(**{"image": "trainer:1", **spec})
    before = copy.deepcopy(job.spec.template)
    assert show(worker_pod(job, 0, 1, 2)) == expected
    assert job.spec.template == before, "the builder must not change the job's template"


def test_a_contract_name_slipping_past_an_older_crd_never_overrides_the_contract() -> None:
    job = make_job(template=tmpl(trainer={"env": [{"name": contract.REPLICAS, "value": "99"}]}))
    job.spec.env = [EnvVar(name=contract.REPLICA_INDEX, value="7")]
    env = trainer_of(worker_pod(job, 0, 1, 2))["env"]
    picked = [(e["name"], e["value"]) for e in env if e["name"] in (contract.REPLICAS, contract.REPLICA_INDEX)]
    assert sorted(picked) == sorted([(contract.REPLICAS, "2"), (contract.REPLICA_INDEX, "1")])


def test_cost_policy_preferences_are_added_to_the_templates() -> None:
    pref = {"weight": 1, "preference": {"matchExpressions": [ZONE_TERM]}}
    job = make_job(
        template=tmpl({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [pref]}}})
    )
    placement = Placement(preferred=[(50, "H100", False)], tolerate_spot=False)
    node = worker_pod(job, 0, 0, 1, placement=placement)["spec"]["affinity"]["nodeAffinity"]
    assert node["preferredDuringSchedulingIgnoredDuringExecution"][0] == pref
    assert len(node["preferredDuringSchedulingIgnoredDuringExecution"]) == 2


async def test_a_template_hostpath_not_allowed_gets_invalid_spec_naming_the_field_and_no_pods() -> None:
    host = {"name": "data", "hostPath": {"path": "/etc"}}
    kube, body = FakeKube(), job_body(template=tmpl({"volumes": [DATA[0], host]}))
    ctl = TrainingJobController(kube, OperatorConfig(allowed_hostpath_prefixes=["/srv"]))  # type: ignore[arg-type]
    kube.stored[("ml", "mnist")] = copy.deepcopy(body)
    ctl.idx.jobs.put(("ml", "mnist"), "mnist", body)
    assert await ctl.reconcile(("ml", "mnist")) is None
    cond = next(c for c in kube.stored[("ml", "mnist")]["status"]["conditions"] if c["type"] == "InvalidSpec")
    assert cond["message"].startswith("spec.template.spec.volumes[1].hostPath.path: hostPath /etc is not under")
    assert ("create Event", "InvalidSpec") in kube.calls and kube.pods == {}


@pytest.mark.parametrize(
    ("flat", "trainer", "expected"),
    [
        (None, None, None),
        ({"cpu": "4"}, {"requests": {"cpu": "2", "memory": "1Gi"}}, {"cpu": "4", "memory": "1Gi"}),
        (None, {"limits": {"cpu": 2, "memory": "8Gi"}}, {"cpu": "2", "memory": "8Gi"}),
        (None, {"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}}, {"cpu": "500m"}),
        (None, {"limits": {"cpu": "1e3", "memory": "2Gi"}}, {"memory": "2Gi"}),  # a form pricing cannot read
    ],
)
def test_cost_accounting_reads_the_trainers_cpu_and_memory(
    flat: dict[str, Any] | None, trainer: dict[str, Any] | None, expected: dict[str, str] | None
) -> None:
    template = tmpl(trainer={"resources": trainer}) if trainer else None
    job = make_job(resources=flat, template=template)
    got = trainer_resources(job.spec.template, job.spec.resources)
    assert (got.to_wire() if got else None) == expected


def test_a_sidecars_end_says_nothing_of_the_workers() -> None:
    """The worker's exit code and start are its trainer's, whatever order the kubelet lists containers in."""
    sidecar = {"name": "logs", "state": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": "t0"}}}
    trainer = {"name": "trainer", "state": {"running": {"startedAt": "t1"}}}
    pod = {"metadata": {"name": "w"}, "status": {"phase": "Running", "containerStatuses": [sidecar, trainer]}}
    view = pod_view(pod)
    assert (view.exit_code, view.reason, view.started_at) == (None, None, "t1")
    server = {"name": "server", "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}
    assert pod_view({"status": {"phase": "Failed", "containerStatuses": [server]}}).exit_code == 3
