"""kopf wiring for InferenceService: indexes, event triggers, and one autoscaler task per service.

The task scrapes every running pod's server each `scrape_interval` (the in-flight integral from /metrics;
/v2/health/ready for the version or the reason a model did not load), feeds the pure autoscaler, and
triggers a reconcile when the decision or what the servers report changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf
from pydantic import ValidationError

from ..api.inferenceservice import InferenceService
from ..builders.common import INFERENCESERVICE_APP, managed_labels, selector
from ..builders.inferenceservice import SERVE_PORT
from ..config import OperatorConfig
from ..constants import (
    API_VERSION,
    GROUP,
    INFERENCESERVICE_PLURAL,
    LABEL_ISVC,
    VERSION,
)
from ..kube.client import Kube, merge_patch
from ..kube.errors import ApiError
from ..kube.events import post_event
from ..kube.podmetrics import PodReport, PodScraper
from ..prices import PriceTable
from ..reconcile.autoscale import Decision, Policy, Sample, decide
from ..reconcile.inferenceservice import Observed, Plan, desired_replicas, plan
from ..reconcile.views import DeploymentView, NodeView, PodView, Probes, deployment_view, pod_view
from .invalid import describe, report_invalid
from .runtime import WorkQueue, WriteCache
from .trainingjob import TrainingJobController

log = logging.getLogger("lepton_operator.inferenceservice")
Key = tuple[str, str]
CHILD_LABELS = managed_labels(INFERENCESERVICE_APP)
CHILD_SELECTOR = selector(CHILD_LABELS)


@dataclass
class Indexes:
    """kopf's indexes of services and their children; TrainingJobs and nodes from the TrainingJob informers."""

    isvcs: kopf.Index[Key, Any]
    deployments: kopf.Index[Key, DeploymentView]
    services: kopf.Index[Key, str]
    pods: kopf.Index[Key, PodView]
    jobs: Mapping[Key, Collection[dict[str, Any]]]
    nodes: Mapping[str, Collection[NodeView]]


@dataclass
class ScalerState:
    """The autoscaler's memory of one service (lost on operator restart: it then waits a window to scale down)."""

    samples: list[Sample] = field(default_factory=list)
    panic_since: float | None = None
    decision: Decision | None = None
    probes: Probes = field(default_factory=Probes)
    last: dict[str, tuple[float, float]] = field(default_factory=dict)  # pod -> (inflight integral, time)
    versions: dict[str, str] = field(default_factory=dict)  # pod -> model version reported
    task: asyncio.Task[None] | None = None


class InferenceServiceController:
    def __init__(self, kube: Kube, config: OperatorConfig, prices: Callable[[], PriceTable]) -> None:
        self.kube, self.config, self.prices = kube, config, prices
        self.queue = WorkQueue[Key](self.reconcile, workers=4)
        self.scraper = PodScraper(timeout=min(1.0, config.scrape_interval))
        self.idx: Indexes | None = None
        self._states: dict[Key, ScalerState] = {}
        self._written = WriteCache()

    def state(self, key: Key) -> ScalerState:
        return self._states.setdefault(key, ScalerState())

    def trigger(self, key: Key, idx: Indexes) -> None:
        self.idx = idx
        st = self.state(key)
        if st.task is None or st.task.done():
            st.task = asyncio.get_running_loop().create_task(self._scale_loop(key), name=f"autoscaler {key}")
        self.queue.add(key)

    def job_changed(self, namespace: str, name: str) -> None:
        """A TrainingJob changed (e.g. succeeded): reconcile the services that serve its model."""
        idx = self.idx
        if idx is None:
            return  # no InferenceService seen yet
        for key, store in list(idx.isvcs.items()):
            body: dict[str, Any] = next(iter(store), {})
            if key[0] == namespace and ((body.get("spec") or {}).get("model") or {}).get("fromTrainingJob") == name:
                self.trigger(key, idx)

    def forget(self, key: Key) -> None:
        st = self._states.pop(key, None)
        if st and st.task:
            st.task.cancel()
        self.queue.forget(key)
        self._written.forget(key)

    async def close(self) -> None:
        for key in list(self._states):
            self.forget(key)
        await self.queue.close()
        await self.scraper.close()
        await self.kube.close()

    # -- autoscaler --------------------------------------------------------------------------------
    async def _scale_loop(self, key: Key) -> None:
        interval = self.config.scrape_interval
        while True:
            started = time.monotonic()
            try:
                await self._scale_once(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # the outermost boundary of the task: log and keep scaling
                log.exception("inferenceservice %s/%s: autoscaler pass failed", *key)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _scale_once(self, key: Key) -> None:
        idx, st = self.idx, self.state(key)
        if idx is None or not (store := idx.isvcs.get(key)):
            return
        try:
            isvc = InferenceService.model_validate(self._written.current(key, next(iter(store))))
        except ValidationError:
            return
        pods = [p for p in idx.pods.get(key, []) if p.phase == "Running" and p.ip and not p.deleting]
        reports = await asyncio.gather(
            *(self.scraper.scrape(p.ip or "", SERVE_PORT, p.name not in st.versions) for p in pods)
        )
        now = time.monotonic()
        probes, total = self._tally(st, pods, reports, now)
        span = now - st.samples[-1].time if st.samples else self.config.scrape_interval
        st.samples.append(Sample(now, total, span=min(span, 5 * self.config.scrape_interval)))
        horizon = now - isvc.spec.autoscaling.stable_window_seconds - 5
        st.samples = [s for s in st.samples if s.time >= horizon]
        current = isvc.status.replicas or desired_replicas(isvc, None)
        deps = list(idx.deployments.get(key, []))
        ready = probes.loaded if probes.answered else (deps[0].ready_replicas if deps else 0)
        decision = decide(st.samples, now, current, ready, Policy.of(isvc.spec), st.panic_since)
        st.panic_since = decision.panic_since
        scaling = isvc.spec.autoscaling.enabled and (
            decision.replicas != current or decision.panic != bool(isvc.status.panic)
        )
        changed = probes != st.probes or scaling
        st.decision, st.probes = decision, probes
        if changed:
            self.trigger(key, idx)

    @staticmethod
    def _tally(
        st: ScalerState, pods: list[PodView], reports: list[PodReport | None], now: float
    ) -> tuple[Probes, float]:
        total, answered, loaded, failures, versions = 0.0, 0, 0, {}, set()
        alive = {p.name for p in pods}
        for pod, r in zip(pods, reports, strict=True):
            if r is None:
                st.last.pop(pod.name, None)
                continue
            answered += 1
            prev = st.last.get(pod.name)
            if prev and now > prev[1] and r.inflight_seconds >= prev[0]:
                total += (r.inflight_seconds - prev[0]) / (now - prev[1])  # mean concurrency since the last scrape
            else:
                total += r.inflight
            st.last[pod.name] = (r.inflight_seconds, now)
            if r.version:
                st.versions[pod.name] = r.version
            if r.loaded:
                loaded += 1
                versions.add(st.versions.get(pod.name, ""))
            elif r.state == "Failed":
                failures[pod.name] = r.reason
        for gone in set(st.last) - alive:
            st.last.pop(gone, None)
        for gone in set(st.versions) - alive:
            st.versions.pop(gone, None)
        version = ",".join(sorted(v for v in versions if v)) or None
        return Probes(answered, loaded, version, failures), total

    # -- one pass ----------------------------------------------------------------------------------
    async def reconcile(self, key: Key) -> float | None:
        idx = self.idx
        if idx is None or not (store := idx.isvcs.get(key)):
            return None
        body = self._written.current(key, next(iter(store)))
        now = datetime.now(UTC)
        try:
            isvc = InferenceService.model_validate(body)
        except ValidationError as exc:  # the same condition and Event as a TrainingJob's
            errors = describe(exc)
            fields = {"ready": "False", "message": f"invalid spec: {errors}"[:4096]}
            await report_invalid(self.kube, INFERENCESERVICE_PLURAL, body, errors, now, fields)
            return None
        st = self.state(key)
        job = None
        if src := isvc.spec.model.from_training_job:
            job = next(iter(idx.jobs.get((key[0], src), [])), None)
        pods = list(idx.pods.get(key, []))
        seen = Observed(
            deployment=next(iter(idx.deployments.get(key, [])), None),
            service_exists=key in idx.services,
            pods=pods,
            training_job=job,
            probes=st.probes,
            scale=st.decision if isvc.spec.autoscaling.enabled else None,
            nodes={p.node: n for p in pods if p.node for n in idx.nodes.get(p.node, [])},
            prices=self.prices(),
            image=self.config.serve_image,
        )
        decision = plan(isvc, seen, now)
        try:
            await self._apply(key, body, decision, now)
        except ApiError as exc:
            if exc.namespace_gone:
                self.forget(key)
                return None
            log.warning("inferenceservice %s/%s: apply failed (%s); retrying", *key, exc)
            return 2.0
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("inferenceservice %s/%s: apply failed (%s); retrying", *key, exc)
            return 2.0
        return None

    async def _apply(self, key: Key, body: dict[str, Any], p: Plan, now: datetime) -> None:
        ns, name = key
        if p.create or p.patch_deployment or p.scaled:
            log.info(
                "inferenceservice %s/%s: create %s%s%s",
                ns,
                name,
                [o["kind"] for o in p.create],
                ", patch the Deployment" if p.patch_deployment else "",
                f", replicas {p.scaled[0]} -> {p.scaled[1]}" if p.scaled else "",
            )
        for obj in p.create:
            await self.kube.create(obj)
        if p.patch_deployment is not None:
            await self.kube.patch("apps/v1", "deployments", ns, name, p.patch_deployment)
        if p.status is not None:
            patch = merge_patch(body.get("status") or {}, p.status)
            updated = await self.kube.patch_status(API_VERSION, INFERENCESERVICE_PLURAL, ns, name, patch)
            if updated is not None:
                self._written.wrote(key, body, updated)
        for ev in p.events:
            await post_event(self.kube, body, ev.type, ev.reason, ev.message, now)


# -- indexes ---------------------------------------------------------------------------------------
def ours(namespace: str | None, memo: kopf.Memo, **_: Any) -> bool:
    """kopf `when=` filter: the namespace matches LEPTON_NAMESPACES patterns (always true without patterns)."""
    config: OperatorConfig = memo.config
    return config.watches(namespace)


@kopf.index(GROUP, VERSION, INFERENCESERVICE_PLURAL, when=ours)
async def inferenceservice_bodies(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]]:
    return {(namespace, name): dict(body)}


@kopf.index("apps", "v1", "deployments", labels=CHILD_LABELS, when=ours)
async def inferenceservice_deployments(
    namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Key, Any]:
    return {(namespace, labels.get(LABEL_ISVC, "")): deployment_view(dict(body))}


@kopf.index("", "v1", "services", labels=CHILD_LABELS, when=ours)
async def inferenceservice_services(namespace: str, labels: kopf.Labels, name: str, **_: Any) -> dict[Key, str]:
    return {(namespace, labels.get(LABEL_ISVC, "")): name}


@kopf.index("", "v1", "pods", labels=CHILD_LABELS, when=ours)
async def inferenceservice_pods(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Key, PodView]:
    return {(namespace, labels.get(LABEL_ISVC, "")): pod_view(dict(body))}


def _controller(memo: kopf.Memo) -> InferenceServiceController:
    ctl: InferenceServiceController = memo.inferenceservices
    return ctl


def _indexes(kwargs: dict[str, Any], memo: kopf.Memo) -> Indexes:
    jobs: TrainingJobController = memo.trainingjobs
    return Indexes(
        kwargs["inferenceservice_bodies"],
        kwargs["inferenceservice_deployments"],
        kwargs["inferenceservice_services"],
        kwargs["inferenceservice_pods"],
        jobs.idx.jobs,
        jobs.idx.nodes,
    )


# -- triggers --------------------------------------------------------------------------------------
@kopf.on.event(GROUP, VERSION, INFERENCESERVICE_PLURAL, when=ours)
async def inferenceservice_changed(type: str | None, namespace: str, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    ctl = _controller(memo)
    if type == "DELETED":
        ctl.forget((namespace, name))
        return
    ctl.trigger((namespace, name), _indexes(kwargs, memo))


@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS, when=ours)
@kopf.on.event("", "v1", "pods", labels=CHILD_LABELS, when=ours)
@kopf.on.event("", "v1", "services", labels=CHILD_LABELS, when=ours)
async def serving_child_changed(namespace: str, labels: kopf.Labels, memo: kopf.Memo, **kwargs: Any) -> None:
    key = (namespace, labels.get(LABEL_ISVC, ""))
    idx = _indexes(kwargs, memo)
    if key in idx.isvcs:
        _controller(memo).trigger(key, idx)
