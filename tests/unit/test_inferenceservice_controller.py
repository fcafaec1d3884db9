"""The InferenceService controller's pass against a fake API: an invalid spec is reported, never only logged."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from lepton_operator.api.inferenceservice import InferenceService
from lepton_operator.config import OperatorConfig
from lepton_operator.handlers.inferenceservice import InferenceServiceController
from lepton_operator.kube.errors import ApiError
from lepton_operator.prices import DEFAULT_PRICES
from lepton_operator.reconcile.inferenceservice import resolve_model

from .fakekube import FakeKube
from .jobs import job_body

KEY = ("ml", "digits")


def isvc(model: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": "digits", "namespace": "ml", "uid": "u-2", "generation": 1, "resourceVersion": "3"}
    return {"apiVersion": "lepton.ai/v1alpha1", "kind": "InferenceService", "metadata": meta, "spec": {"model": model}}


def controller(
    kube: FakeKube, body: dict[str, Any], jobs: dict[Any, list[Any]] | None = None
) -> InferenceServiceController:
    ctl = InferenceServiceController(kube, OperatorConfig(), lambda: DEFAULT_PRICES, jobs or {}, {})  # type: ignore[arg-type]
    kube.stored[KEY] = copy.deepcopy(body)
    ctl.idx.isvcs.put(KEY, KEY[1], body)
    return ctl


async def test_an_invalid_spec_is_a_condition_and_one_event() -> None:
    kube = FakeKube()
    ctl = controller(kube, isvc({"modelPath": "relative/path"}))  # the CRD's pattern would refuse it
    assert await ctl.reconcile(KEY) is None
    status = kube.stored[KEY]["status"]
    cond = next(c for c in status["conditions"] if c["type"] == "InvalidSpec")
    assert cond["status"] == "True" and "spec.model.modelPath" in cond["message"]
    assert status["ready"] == "False" and status["message"].startswith("invalid spec: ")
    ctl.idx.isvcs.put(KEY, KEY[1], copy.deepcopy(kube.stored[KEY]))
    await ctl.reconcile(KEY)
    assert [name for verb, name in kube.calls if verb == "create Event"] == ["InvalidSpec"]  # once


async def test_a_service_of_an_unreadable_trainingjob_says_so_instead_of_failing_every_pass() -> None:
    kube = FakeKube()
    job = job_body(replicas=0)  # out of bounds for the model
    job["metadata"]["name"] = "train"
    ctl = controller(kube, isvc({"fromTrainingJob": "train"}), {("ml", "train"): [job]})
    await ctl.reconcile(KEY)
    cond = next(c for c in kube.stored[KEY]["status"]["conditions"] if c["type"] == "ModelLoaded")
    assert cond["status"] == "False" and cond["reason"] == "TrainingJobInvalid"


@pytest.mark.parametrize(
    ("volume", "source", "sub_path"),
    [
        ({"hostPath": "/srv/ckpt"}, {"hostPath": {"path": "/srv/ckpt", "type": "Directory"}}, "ml/train-uid-1"),
        ({"persistentVolumeClaim": "shared"}, {"persistentVolumeClaim": {"claimName": "shared", "readOnly": True}},
         "ml/train-uid-1"),
    ],
)  # fmt: skip
def test_a_service_of_a_trainingjob_mounts_that_jobs_own_checkpoint_folder(
    volume: dict[str, Any], source: dict[str, Any], sub_path: str | None
) -> None:
    job = job_body(status={"phase": "Succeeded"}, checkpoint={"volume": volume, "path": "/ckpt"})
    job["metadata"]["name"] = "train"
    model = resolve_model(InferenceService.model_validate(isvc({"fromTrainingJob": "train"})), job)
    assert (model.path, model.volume, model.mount_path, model.sub_path) == ("/ckpt/export", source, "/ckpt", sub_path)


async def test_api_errors_back_off_exponentially_like_a_trainingjobs() -> None:
    def fault(verb: str, obj: dict) -> Exception | None:
        return ApiError(500, "POST", "deployments", "etcd timeout") if obj.get("kind") == "Deployment" else None

    ctl = controller(FakeKube(fault), isvc({"modelPath": "/models/digits"}))
    assert [await ctl.reconcile(KEY) for _ in range(3)] == [1.0, 2.0, 4.0]


async def test_conflicts_are_retried_soon_and_still_back_off() -> None:
    """A storm of writes conflicts pass after pass: 0.1 s, then doubling (bench/chaos.py's 409 drill)."""
    kube = FakeKube()
    ctl = controller(kube, isvc({"modelPath": "/models/digits"}))
    kube.stored[KEY]["metadata"]["resourceVersion"] = "9"  # the index stays behind
    assert [await ctl.reconcile(KEY) for _ in range(4)] == [0.1, 0.2, 0.4, 0.8]


async def test_the_status_write_is_conditional_on_the_version_planned_from() -> None:
    kube = FakeKube()
    ctl = controller(kube, isvc({"modelPath": "/models/digits"}))
    kube.stored[KEY]["metadata"]["resourceVersion"] = "9"  # changed since the index saw it
    assert await ctl.reconcile(KEY) == 0.1  # Conflict: planned again soon, from the newer version
    assert "status" not in kube.stored[KEY]
    ctl.idx.isvcs.put(KEY, KEY[1], copy.deepcopy(kube.stored[KEY]))
    assert await ctl.reconcile(KEY) is None
    assert kube.stored[KEY]["status"]["modelPath"] == "/models/digits"
