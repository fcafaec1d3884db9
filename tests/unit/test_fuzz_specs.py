"""Fuzz: generated TrainingJob and InferenceService objects (plausible, hostile, missing and extra fields, deep
nesting) through the pure layers, as a pass runs them. The only error allowed is the models' ValidationError (the
controller reports it as InvalidSpec); what the builders render passes Kubernetes' structural rules; the same
inputs give the same decision; the status a plan writes passes the status schema."""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from lepton_operator.api.base import QUANTITY
from lepton_operator.api.inferenceservice import InferenceService, InferenceServiceStatus
from lepton_operator.api.trainingjob import TrainingJob
from lepton_operator.api.trainingjob_status import MAX_USD, TrainingJobStatus
from lepton_operator.prices import DEFAULT_PRICES
from lepton_operator.reconcile import hostpaths
from lepton_operator.reconcile import inferenceservice as isvc_reconcile
from lepton_operator.reconcile import trainingjob as tj_reconcile
from lepton_operator.reconcile.autoscale import Decision
from lepton_operator.reconcile.views import DeploymentView, NodeView, Probes, pod_view
from pydantic import ValidationError

from .jobs import make_job, pod
from .strategies import FUZZ, HOSTILE, JSON, TEXT, inferenceservice, raw_pod, trainingjob

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
ALLOWED_HOSTPATHS = ("/data",)
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
QUANTITY_RE = re.compile(QUANTITY)
NODES = {
    "gpu-0": NodeView("gpu-0", {"nvidia.com/gpu.product": "NVIDIA-L4"}, (), 8, False, True),
    "gpu-1": NodeView("gpu-1", {"lepton.ai/capacity-type": "spot"}, (), 8, False, True),
}


def label_problems(labels: dict[str, Any]) -> list[str]:
    out = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if prefix and not (len(prefix) <= 253 and DNS_SUBDOMAIN.fullmatch(prefix)):
            out.append(f"label key prefix {key!r}")
        if not (len(name) <= 63 and LABEL_NAME.fullmatch(name)):
            out.append(f"label key {key!r}")
        if not isinstance(value, str) or not (value == "" or (len(value) <= 63 and LABEL_NAME.fullmatch(value))):
            out.append(f"label value {key}={value!r}")
    return out


def resource_problems(containers: list[dict[str, Any]]) -> list[str]:
    out = []
    for c in containers:
        for part, amounts in (c.get("resources") or {}).items():
            for name, amount in amounts.items():
                if not (isinstance(amount, str) and QUANTITY_RE.fullmatch(amount)):
                    out.append(f"{c['name']}.resources.{part}.{name}={amount!r}")
    return out


def pod_spec_problems(spec: dict[str, Any]) -> list[str]:
    out = []
    containers = [*spec["containers"], *(spec.get("initContainers") or [])]
    names = [c["name"] for c in containers]
    if len(set(names)) != len(names):
        out.append(f"container names {names}")
    volumes = [v["name"] for v in spec.get("volumes") or []]
    if len(set(volumes)) != len(volumes):
        out.append(f"volume names {volumes}")
    for c in containers:
        mounts = [m["mountPath"] for m in c.get("volumeMounts") or []]
        if len(set(mounts)) != len(mounts) and c["name"] == "trainer":
            out.append(f"trainer mount paths {mounts}")
    for key in ("hostname", "subdomain"):
        if key in spec and not (len(spec[key]) <= 63 and DNS_LABEL.fullmatch(spec[key])):
            out.append(f"spec.{key} {spec[key]!r}")
    return out + resource_problems(containers)


def slice_problems(obj: dict[str, Any]) -> list[str]:
    """EndpointSlice validation: at most 1000 endpoints, hostnames DNS labels, addresses of the slice's family and
    not loopback, link-local, multicast or unspecified."""
    event("trainingjob: an EndpointSlice")
    out = [] if len(obj["endpoints"]) <= 1000 else ["more than 1000 endpoints"]
    for e in obj["endpoints"]:
        if not (len(e["hostname"]) <= 63 and DNS_LABEL.fullmatch(e["hostname"])):
            out.append(f"endpoint hostname {e['hostname']!r}")
        addr = ipaddress.ip_address(e["addresses"][0])
        special = addr.is_loopback or addr.is_link_local or addr.is_multicast or addr.is_unspecified
        if special or f"IPv{addr.version}" != obj["addressType"]:
            out.append(f"endpoint address {addr} in an {obj['addressType']} slice")
    return out


def object_problems(obj: dict[str, Any]) -> list[str]:
    """What the API server (or a kubelet) would refuse in a rendered child."""
    meta = obj["metadata"]
    out = []
    if not (len(meta["name"]) <= 63 and DNS_LABEL.fullmatch(meta["name"])):
        out.append(f"{obj['kind']} name {meta['name']!r}")
    out += label_problems(meta.get("labels") or {})
    if [o.get("controller") for o in meta.get("ownerReferences") or []] != [True]:
        out.append("not one controlling owner")
    if obj["kind"] == "Pod":
        out += pod_spec_problems(obj["spec"])
    if obj["kind"] == "Deployment":
        template = obj["spec"]["template"]
        out += label_problems(template["metadata"]["labels"]) + pod_spec_problems(template["spec"])
        selected = obj["spec"]["selector"]["matchLabels"].items()
        if not selected <= template["metadata"]["labels"].items():
            out.append("the selector does not select the template")
        if obj["spec"]["replicas"] < 0:
            out.append("negative replicas")
    if obj["kind"] == "EndpointSlice":
        out += slice_problems(obj)
    json.dumps(obj, allow_nan=False)  # what the client sends must be JSON
    return out


@dataclass(frozen=True)
class Outcome:
    """A pass's decision in comparable form (None: the spec is reported as invalid)."""

    invalid: str | None
    decision: str | None


def summary(p: tj_reconcile.Plan | isvc_reconcile.Plan) -> str:
    status = p.status.to_wire() if p.status is not None else None
    fields = {k: v for k, v in vars(p).items() if k != "status"}
    return json.dumps({"status": status, **fields}, default=repr, sort_keys=True)


def trainingjob_pass(body: dict[str, Any], raw_pods: list[dict[str, Any]], extra: dict[str, Any]) -> Outcome:
    """A TrainingJob pass as handlers/trainingjob.py runs it, less the I/O."""
    try:
        job = TrainingJob.model_validate(body)
    except ValidationError as exc:
        event("trainingjob: refused by the models")
        return Outcome(f"spec: {exc.error_count()} errors", None)
    ckpt = job.spec.checkpoint
    path = ckpt.volume.host_path if ckpt else None
    if why := hostpaths.refusal("hostPath", path, ALLOWED_HOSTPATHS) or hostpaths.template_refusal(
        job.spec.template, ALLOWED_HOSTPATHS
    ):
        event("trainingjob: hostPath refused")
        return Outcome(why, None)
    try:
        prices = DEFAULT_PRICES.merged(job.spec.prices.to_wire() if job.spec.prices else None, "spec.prices")
    except ValidationError as exc:
        event("trainingjob: spec.prices refused")
        return Outcome(f"prices: {exc.error_count()} errors", None)
    pods = [pod_view(raw) for raw in raw_pods]
    seen = tj_reconcile.Observed(pods, nodes=NODES, prices=prices, **extra)
    p = tj_reconcile.plan(job, seen, NOW)
    event(f"trainingjob: planned, {'creates pods' if any(o['kind'] == 'Pod' for o in p.create) else 'no pod'}")
    problems = [x for obj in p.create for x in object_problems(obj)]
    assert not problems, problems
    if p.status is not None:
        wire = p.status.to_wire()
        json.dumps(wire, allow_nan=False)
        assert TrainingJobStatus.model_validate(wire).to_wire() == wire  # the status schema takes it as it is
    for name in [*p.delete, *p.force_delete]:
        assert name in {q.name for q in pods}
    return Outcome(None, summary(p))


@st.composite
def observed_extra(draw: st.DrawFn) -> dict[str, Any]:
    return draw(
        st.fixed_dictionaries(
            {},
            optional={
                "service_exists": st.booleans(),
                "lost_nodes": st.frozensets(st.sampled_from(["gpu-0", "gpu-1", "gone"])),
                "capacity": st.integers(0, 2048),
                "live_progress": st.dictionaries(
                    st.sampled_from(["step", "totalSteps", "loss", "etaSeconds", "state", "testAccuracy", "x"]), JSON
                ),
                "live_progress_error": TEXT,
                "create_refused": TEXT,
            },
        )
    )


@given(body=trainingjob(), data=st.data())
@settings(FUZZ, max_examples=500)
def test_a_trainingjob_pass_never_raises_renders_valid_children_and_is_deterministic(
    body: dict[str, Any], data: st.DataObject
) -> None:
    name = body["metadata"]["name"]
    epoch = body["status"].get("restartEpoch")
    near = [str(e) for e in (epoch - 1, epoch, epoch + 1) if e >= 0] if isinstance(epoch, int) else ["0", "1"]
    epochs = st.sampled_from(near) | st.text(max_size=5)
    raw_pods = data.draw(st.lists(raw_pod(name, epochs), max_size=6, unique_by=lambda p: p["metadata"]["name"]))
    for raw in raw_pods:  # names as the builder gives them, mostly
        labels = raw["metadata"]["labels"]
        if data.draw(st.booleans()):
            raw["metadata"]["name"] = f"{name}-{labels['lepton.ai/restart-epoch']}-{labels['lepton.ai/replica-index']}"
    extra = data.draw(observed_extra())
    first = trainingjob_pass(copy.deepcopy(body), copy.deepcopy(raw_pods), dict(extra))
    assert trainingjob_pass(copy.deepcopy(body), copy.deepcopy(raw_pods), dict(extra)) == first


@given(doc=HOSTILE)
@FUZZ
def test_a_trainingjob_of_any_shape_is_read_or_refused_with_a_validation_error(doc: Any) -> None:
    for body in (doc, {"metadata": {"name": "a", "namespace": "b", "uid": "c"}, "spec": doc, "status": doc}):
        with contextlib.suppress(ValidationError):
            TrainingJob.model_validate(body)
        with contextlib.suppress(ValidationError):
            InferenceService.model_validate(body)


def inferenceservice_pass(body: dict[str, Any], job: dict[str, Any] | None, extra: dict[str, Any]) -> Outcome:
    try:
        isvc = InferenceService.model_validate(body)
    except ValidationError as exc:
        event("inferenceservice: refused by the models")
        return Outcome(f"spec: {exc.error_count()} errors", None)
    if isvc.spec.model.volume is not None:
        path = isvc.spec.model.volume.host_path
    else:
        path = hostpaths.checkpoint_host_path(job)
    if why := hostpaths.refusal("hostPath", path, ALLOWED_HOSTPATHS):
        event("inferenceservice: hostPath refused")
        return Outcome(why, None)
    seen = isvc_reconcile.Observed(training_job=job, nodes=NODES, **extra)
    p = isvc_reconcile.plan(isvc, seen, NOW)
    event(f"inferenceservice: planned, {'creates' if p.create else 'creates nothing'}")
    problems = [x for obj in p.create for x in object_problems(obj)]
    assert not problems, problems
    if p.patch_deployment is not None:
        json.dumps(p.patch_deployment, allow_nan=False)
    if p.status is not None:
        wire = p.status.to_wire()
        assert InferenceServiceStatus.model_validate(wire).to_wire() == wire
    return Outcome(None, summary(p))


@given(body=inferenceservice(), job=st.none() | trainingjob(), data=st.data())
@FUZZ
def test_an_inferenceservice_pass_never_raises_renders_valid_children_and_is_deterministic(
    body: dict[str, Any], job: dict[str, Any] | None, data: st.DataObject
) -> None:
    if job is not None and data.draw(st.booleans()):
        job["status"]["phase"] = "Succeeded"
    deployment = st.builds(
        DeploymentView,
        st.integers(0, 300),
        st.integers(0, 300),
        st.integers(0, 300),
        st.sampled_from(["", "abc"]),
    )
    decision = st.builds(
        Decision,
        st.integers(1, 256),
        st.none() | st.floats(0, 1e6),
        st.floats(0, 1e6),
        st.floats(0, 1e6),
        st.sampled_from(["Stable", "Panic", "NoMetrics"]),
    )
    probes = st.builds(
        Probes,
        st.integers(0, 10),
        st.integers(0, 10),
        st.none() | st.text(max_size=20),
        st.dictionaries(st.text(max_size=10), TEXT, max_size=2),
    )
    extra = data.draw(
        st.fixed_dictionaries(
            {"deployment": st.none() | deployment, "service_exists": st.booleans()},
            optional={
                "pods": st.lists(raw_pod().map(pod_view), max_size=3),
                "probes": probes,
                "scale": decision,
                "image": st.text(min_size=1, max_size=40),
            },
        )
    )
    first = inferenceservice_pass(copy.deepcopy(body), copy.deepcopy(job), extra)
    assert inferenceservice_pass(copy.deepcopy(body), copy.deepcopy(job), extra) == first


def test_regression_cost_saturates_at_the_status_bounds() -> None:
    """Found by the fuzzer: quantities and prices the CRD admits multiplied past CostStatus' bounds, and the plan
    raised ValidationError on every pass (no failover, budget or deadline for that job)."""
    job = make_job(
        status={"restartEpoch": 0, "launched": True, "phase": "Running"},
        resources={"cpu": "999999999999", "memory": "999999Pi"},
        budget={"maxUsd": 100},
    )
    pods = [pod(job, 0, r, extra={"containerStatuses": []}) for r in range(2)]
    seen = tj_reconcile.Observed(pods, prices=DEFAULT_PRICES.merged({"cpuCoreHour": 100, "memoryGibHour": 100}, "test"))
    p = tj_reconcile.plan(job, seen, NOW)
    assert p.status is not None and p.status.cost is not None
    assert p.status.cost.accrued_usd == MAX_USD and p.status.phase == "Suspended"  # the budget still acts
    assert TrainingJobStatus.model_validate(p.status.to_wire()) == p.status


def test_regression_ready_replicas_beyond_the_schema_are_capped() -> None:
    """Found by the fuzzer: a Deployment scaled by hand past 256 ready replicas made a status the API server
    refuses."""
    body = {
        "metadata": {"name": "m", "namespace": "ml", "uid": "u", "generation": 1},
        "spec": {"model": {"modelPath": "/models/m"}, "autoscaling": {"enabled": False}},
    }
    seen = isvc_reconcile.Observed(deployment=DeploymentView(300, 300, 300, ""), service_exists=True)
    p = isvc_reconcile.plan(InferenceService.model_validate(body), seen, NOW)
    assert p.status is not None and p.status.ready_replicas == 256
