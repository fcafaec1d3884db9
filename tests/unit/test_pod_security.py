"""Worker and server pods are Pod Security `restricted` by default; hostPath volumes only under allowed prefixes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from lepton_operator.api.inferenceservice import InferenceService
from lepton_operator.builders.inferenceservice import ModelMount, pod_template
from lepton_operator.builders.trainingjob import worker_pod
from lepton_operator.config import OperatorConfig
from lepton_operator.handlers.inferenceservice import InferenceServiceController
from lepton_operator.handlers.trainingjob import TrainingJobController
from lepton_operator.prices import DEFAULT_PRICES
from lepton_operator.reconcile.hostpaths import refusal, under

from .fakekube import FakeKube
from .jobs import job_body, make_job
from .test_inferenceservice_controller import isvc

RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "fsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def pods() -> list[dict[str, Any]]:
    server = pod_template(InferenceService.model_validate(isvc({"modelPath": "/m"})), ModelMount("/m"), "img")
    return [worker_pod(make_job(), 0, 0, 2)["spec"], server["spec"]]


@pytest.mark.parametrize("spec", pods(), ids=["worker", "server"])
def test_pods_are_restricted_and_carry_no_api_token(spec: dict[str, Any]) -> None:
    assert spec["securityContext"] == RESTRICTED_POD
    assert spec["automountServiceAccountToken"] is False
    assert [c["securityContext"] for c in spec["containers"]] == [RESTRICTED_CONTAINER]


@pytest.mark.parametrize(
    ("path", "prefix", "ok"),
    [
        ("/srv/ckpt", "/srv/ckpt", True),
        ("/srv/ckpt/a/b", "/srv/ckpt/", True),
        ("/srv/ckpt2", "/srv/ckpt", False),
        ("/srv/ckpt/../etc", "/srv/ckpt", False),
        ("/srv//ckpt/x", "/srv/ckpt", True),
        ("/etc", "/srv", False),
        ("/anything", "/", True),
    ],
)
def test_under_a_prefix(path: str, prefix: str, ok: bool) -> None:
    assert under(path, prefix) is ok


def test_no_hostpath_is_allowed_by_default_and_the_refusal_names_the_field() -> None:
    assert refusal("spec.x", None, []) is None
    why = refusal("spec.checkpoint.volume.hostPath", "/var/lib", [])
    assert why is not None and why.startswith("spec.checkpoint.volume.hostPath: hostPath /var/lib is not under")
    assert "LEPTON_ALLOWED_HOSTPATH_PREFIXES: none" in why
    assert OperatorConfig().allowed_hostpath_prefixes == []


def ckpt_job() -> dict[str, Any]:
    return job_body(checkpoint={"volume": {"hostPath": "/srv/ckpt"}, "path": "/ckpt"})


async def test_a_job_with_a_hostpath_not_allowed_gets_a_condition_and_an_event_and_no_pods() -> None:
    kube, body = FakeKube(), ckpt_job()
    ctl = TrainingJobController(kube, OperatorConfig(allowed_hostpath_prefixes=["/data"]))  # type: ignore[arg-type]
    kube.stored[("ml", "mnist")] = copy.deepcopy(body)
    ctl.idx.jobs.put(("ml", "mnist"), "mnist", body)
    assert await ctl.reconcile(("ml", "mnist")) is None
    status = kube.stored[("ml", "mnist")]["status"]
    cond = next(c for c in status["conditions"] if c["type"] == "InvalidSpec")
    assert cond["status"] == "True" and cond["message"].startswith("spec.checkpoint.volume.hostPath: hostPath /srv/")
    assert status["phase"] == "Failed" and ("create Event", "InvalidSpec") in kube.calls
    assert kube.pods == {}


async def test_a_job_with_an_allowed_hostpath_gets_its_pods() -> None:
    kube, body = FakeKube(), ckpt_job()
    ctl = TrainingJobController(kube, OperatorConfig(allowed_hostpath_prefixes=["/srv"]))  # type: ignore[arg-type]
    kube.stored[("ml", "mnist")] = copy.deepcopy(body)
    ctl.idx.jobs.put(("ml", "mnist"), "mnist", body)
    await ctl.reconcile(("ml", "mnist"))  # stores epoch 0 (two-phase epochs)
    ctl.idx.jobs.put(("ml", "mnist"), "mnist", copy.deepcopy(kube.stored[("ml", "mnist")]))
    await ctl.reconcile(("ml", "mnist"))
    assert sorted(kube.pods) == ["mnist-0-0", "mnist-0-1"]


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ({"modelPath": "/m/x", "volume": {"hostPath": "/m"}}, "spec.model.volume.hostPath: hostPath /m "),
        ({"fromTrainingJob": "mnist"}, "spec.model.fromTrainingJob (its spec.checkpoint.volume.hostPath): hostPath"),
    ],
)
async def test_a_service_mounting_a_hostpath_not_allowed_says_which_field(model: dict[str, Any], field: str) -> None:
    kube, body = FakeKube(), isvc(model)
    job = ckpt_job()
    ctl = InferenceServiceController(
        kube,  # type: ignore[arg-type]
        OperatorConfig(),
        lambda: DEFAULT_PRICES,
        {("ml", "mnist"): [job]},
        {},
    )
    kube.stored[("ml", "digits")] = copy.deepcopy(body)
    ctl.idx.isvcs.put(("ml", "digits"), "digits", body)
    assert await ctl.reconcile(("ml", "digits")) is None
    cond = next(c for c in kube.stored[("ml", "digits")]["status"]["conditions"] if c["type"] == "InvalidSpec")
    assert cond["message"].startswith(field) and ("create Event", "InvalidSpec") in kube.calls
