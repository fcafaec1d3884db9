"""The InferenceService decision: (service, Deployment, pods, server probes, autoscaler, now) -> Plan."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..api.base import Condition
from ..api.inferenceservice import MAX_REPLICAS, InferenceService, InferenceServiceStatus, ServingCost
from ..api.trainingjob import TrainingJob
from ..builders import inferenceservice as build
from ..builders.common import claim_or_host_path
from ..builders.trainingjob import checkpoint_source
from ..constants import COND_INVALID, COND_MODEL_LOADED, COND_READY
from ..prices import DEFAULT_PRICES, PriceTable
from ..timestamps import rfc3339
from .autoscale import Decision
from .conditions import get, ready_summary, set_condition
from .plan import Event
from .pricing import pod_rate
from .views import DeploymentView, NodeView, PodView, Probes


@dataclass(frozen=True)
class Observed:
    deployment: DeploymentView | None
    service_exists: bool
    pods: list[PodView] = field(default_factory=list)
    training_job: dict[str, Any] | None = None  # the body of spec.model.fromTrainingJob, when it exists
    probes: Probes = field(default_factory=Probes)
    scale: Decision | None = None  # the autoscaler's latest decision
    nodes: Mapping[str, NodeView] = field(default_factory=dict)
    prices: PriceTable = field(default_factory=lambda: DEFAULT_PRICES)
    image: str = "ghcr.io/lepton-ai/lepton-trainer:0.1.0"


@dataclass
class Plan:
    create: list[dict[str, Any]] = field(default_factory=list)
    patch_deployment: dict[str, Any] | None = None  # a merge patch of the Deployment
    status: InferenceServiceStatus | None = None  # the whole new status, stored exactly; None when unchanged
    events: list[Event] = field(default_factory=list)
    scaled: tuple[int, int] | None = None  # (from, to) replicas


class Unresolved(Exception):
    """The model source cannot be served (yet): a reason and a message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def resolve_model(isvc: InferenceService, job_body: dict[str, Any] | None) -> build.ModelMount:
    """The export to serve: spec.model.modelPath, or the export of a succeeded TrainingJob on its volume."""
    src = isvc.spec.model
    if src.model_path:
        vol = src.volume
        if vol is None:
            return build.ModelMount(src.model_path)
        source = claim_or_host_path(vol.persistent_volume_claim, vol.host_path, read_only=True)
        return build.ModelMount(src.model_path, source, vol.mount_path)
    name = src.from_training_job
    if job_body is None:
        raise Unresolved("TrainingJobNotFound", f"trainingjob {name} does not exist in this namespace")
    try:
        job = TrainingJob.model_validate(job_body)
    except ValidationError as exc:
        raise Unresolved(
            "TrainingJobInvalid", f"trainingjob {name} has an invalid spec: {exc.errors()[0]['msg']}"
        ) from exc
    phase = job.status.phase or "Pending"
    if phase != "Succeeded":
        raise Unresolved("WaitingForTrainingJob", f"trainingjob {name} is {phase}; serving starts when it succeeds")
    ckpt = job.spec.checkpoint
    found = checkpoint_source(job, read_only=True)
    if ckpt is None or found is None or ckpt.volume.empty_dir:
        raise Unresolved(
            "ModelNotPersisted",
            f"trainingjob {name} kept its checkpoints in {'an emptyDir' if ckpt else 'no volume'}: its export is gone; "
            "give it a persistentVolumeClaim or hostPath checkpoint volume",
        )
    source, sub_path = found  # the job's own folder, as its workers saw it
    return build.ModelMount(f"{ckpt.path.rstrip('/')}/export", source, ckpt.path, sub_path)


def rate_per_hour(
    isvc: InferenceService, pods: list[PodView], nodes: Mapping[str, NodeView], prices: PriceTable
) -> float:
    """USD per hour of the running replicas (the TrainingJob cost model's prices)."""
    spec = isvc.spec
    return sum(
        pod_rate(spec.gpus, spec.resources, spec.gpu_type, nodes.get(pod.node or ""), prices)
        for pod in pods
        if pod.phase == "Running" and not pod.deleting
    )


def desired_replicas(isvc: InferenceService, scale: Decision | None) -> int:
    spec = isvc.spec
    if spec.autoscaling.enabled and scale is not None:
        return scale.replicas
    start = spec.replicas if not spec.autoscaling.enabled else (isvc.status.replicas or spec.replicas)
    return max(spec.min_replicas, min(spec.max_replicas, start or spec.min_replicas))


def _model_condition(seen: Observed) -> tuple[bool, str, str]:
    p = seen.probes
    if p.failures:
        pod, why = sorted(p.failures.items())[0]
        return False, "LoadFailed", f"{pod}: {why}"
    if p.loaded:
        return True, "Loaded", f"{p.loaded} replica(s) serve version {p.version}"
    if p.answered == 0 and seen.deployment and seen.deployment.ready_replicas:
        return True, "ReadinessProbePassed", "replicas pass the readiness probe (model loaded)"
    return False, "Loading", "no replica has loaded the model yet"


def plan(isvc: InferenceService, seen: Observed, now: datetime) -> Plan:
    """Decide one pass for a service: its Deployment and Service, replicas, conditions, cost."""
    p, stamp, gen = Plan(), rfc3339(now), isvc.metadata.get("generation")
    old = isvc.status
    st = old.model_copy(deep=True)
    conditions: list[Condition] = list(st.conditions or [])

    def cond(type_: str, ok: bool, reason: str, message: str) -> None:
        t = set_condition(conditions, type_, ok, reason, message, stamp, gen)
        if t is not None:
            p.events.append(Event("Normal" if ok else "Warning", reason, f"{type_}: {message}"))

    if get(conditions, COND_INVALID) is not None:  # readable again: no Event for the good news
        set_condition(conditions, COND_INVALID, False, "ValidSpec", "the spec is valid", stamp, gen)
    try:
        model = resolve_model(isvc, seen.training_job)
    except Unresolved as why:
        cond(COND_MODEL_LOADED, False, why.reason, why.message)
        cond(COND_READY, False, why.reason, why.message)
        st.message = why.message
    else:
        _serve(isvc, seen, model, p, st, stamp)
        ok, reason, message = _model_condition(seen)
        cond(COND_MODEL_LOADED, ok, reason, message)
        ready_n, replicas = st.ready_replicas or 0, st.replicas or 0
        serving = bool(ready_n and (ok or seen.probes.loaded))  # old replicas may serve while a new model fails
        if serving:
            cond(COND_READY, True, "Serving", f"{ready_n} of {replicas} replica(s) ready at {st.url}")
        elif ok:
            cond(COND_READY, False, "NoReadyReplicas", "no replica is ready")
        else:
            cond(COND_READY, False, reason, message)
        st.message = None if serving and ok else message
    st.conditions = conditions
    ready_cond = get(conditions, COND_READY)
    st.ready = ready_cond.status if ready_cond else "False"
    st.observed_generation = gen
    rate = rate_per_hour(isvc, seen.pods, seen.nodes, seen.prices)
    st.cost = ServingCost(rate_usd_per_hour=f"{rate:.2f}", price_source=seen.prices.source)
    # The in-flight figure is informational: written along with other changes, never on its own.
    if seen.scale is not None:
        st.in_flight = f"{seen.scale.stable:.1f}"
    if st.model_copy(update={"in_flight": None}) != old.model_copy(update={"in_flight": None}):
        p.status = st
    return p


def _serve(
    isvc: InferenceService, seen: Observed, model: build.ModelMount, p: Plan, st: InferenceServiceStatus, stamp: str
) -> None:
    """The Deployment and Service for the resolved model, at the replicas wanted now (with a scale Event)."""
    old_replicas = isvc.status.replicas
    st.model_path = model.path
    replicas = desired_replicas(isvc, seen.scale)
    want = build.deployment(isvc, model, seen.image, replicas)
    dep = seen.deployment
    if dep is None:
        p.create.append(want)
    elif dep.template_hash != want["metadata"]["annotations"][build.TEMPLATE_HASH]:
        p.patch_deployment = {"metadata": {"annotations": want["metadata"]["annotations"]}, "spec": want["spec"]}
        p.events.append(Event("Normal", "RollingUpdate", f"rolling out a new server template ({model.path})"))
    elif dep.replicas != replicas:
        p.patch_deployment = {"spec": {"replicas": replicas}}
    if not seen.service_exists:
        p.create.append(build.service(isvc))
    if old_replicas is not None and replicas != old_replicas:
        p.scaled = (old_replicas, replicas)
        cause = seen.scale.reason if seen.scale else "Spec"
        load = f", {seen.scale.stable:.1f} in flight (panic window {seen.scale.burst:.1f})" if seen.scale else ""
        verb = "ScaledUp" if replicas > old_replicas else "ScaledDown"
        p.events.append(Event("Normal", verb, f"{old_replicas} -> {replicas} replicas ({cause}{load})"))
        st.last_scale_time = stamp
    st.replicas = replicas
    # The Deployment may be scaled by hand past what the status schema holds (until the next pass patches it).
    st.ready_replicas = min(dep.ready_replicas, MAX_REPLICAS) if dep else 0
    st.replica_summary = ready_summary(st.ready_replicas, replicas)
    st.selector = build.selector(isvc.metadata["name"])
    st.url = build.url(isvc)
    if seen.probes.version:
        st.model_version = seen.probes.version
    if seen.scale is not None:
        st.panic = seen.scale.panic
