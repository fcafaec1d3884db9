"""The autoscaler's side of InferenceService: one task per service scrapes every running pod's server each
`scrape_interval` (the in-flight integral from /metrics; /v2/health/ready for the version or the reason a model
did not load), feeds the pure autoscaler (reconcile/autoscale.py), and queues a pass of the service when the
decision or what the servers report changes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .. import metrics
from ..api.inferenceservice import InferenceService
from ..builders.inferenceservice import SERVE_PORT
from ..config import OperatorConfig
from ..kube.podmetrics import PodReport, PodScraper
from ..reconcile.autoscale import Decision, Policy, Sample, decide
from ..reconcile.inferenceservice import desired_replicas
from ..reconcile.views import DeploymentView, PodView, Probes

log = logging.getLogger("lepton_operator.autoscaler")
RESTART_SECONDS = 5.0
Key = tuple[str, str]


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


class Autoscalers:
    """The scaler tasks and their memory, by service key."""

    def __init__(
        self,
        config: OperatorConfig,
        read: Callable[[Key], dict[str, Any] | None],
        pods: Mapping[Key, Collection[PodView]],
        deployments: Mapping[Key, Collection[DeploymentView]],
        changed: Callable[[Key], None],
    ) -> None:
        self.config, self.read, self.pods, self.deployments, self.changed = config, read, pods, deployments, changed
        self.scraper = PodScraper(timeout=min(1.0, config.scrape_interval))
        self._states: dict[Key, ScalerState] = {}

    def state(self, key: Key) -> ScalerState:
        return self._states.setdefault(key, ScalerState())

    def ensure(self, key: Key) -> None:
        """The service's task runs (started on first sight)."""
        st = self.state(key)
        if st.task is None or st.task.done():
            st.task = asyncio.get_running_loop().create_task(self._scale_loop(key), name=f"autoscaler {key}")
            st.task.add_done_callback(lambda task: self._ended(key, task))

    def _ended(self, key: Key, task: asyncio.Task[None]) -> None:
        """A scaler task ended by itself (a bug: its loop logs every Exception): log it, start it again later."""
        st = self._states.get(key)
        if task.cancelled() or st is None or st.task is not task:
            return
        log.error("inferenceservice %s/%s: autoscaler task ended; restarting", *key, exc_info=task.exception())
        metrics.TASK_RESTARTS.labels("autoscaler").inc()
        asyncio.get_running_loop().call_later(RESTART_SECONDS, self._restart, key)

    def _restart(self, key: Key) -> None:
        if key in self._states:  # not forgotten meanwhile
            self.ensure(key)

    def forget(self, key: Key) -> None:
        st = self._states.pop(key, None)
        if st and st.task:
            st.task.cancel()

    async def close(self) -> None:
        for key in list(self._states):
            self.forget(key)
        await self.scraper.close()

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
        st, body = self.state(key), self.read(key)
        if body is None:
            return
        try:
            isvc = InferenceService.model_validate(body)
        except ValidationError:
            return
        pods = [p for p in self.pods.get(key, []) if p.phase == "Running" and p.ip and not p.deleting]
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
        deps = list(self.deployments.get(key, []))
        ready = probes.loaded if probes.answered else (deps[0].ready_replicas if deps else 0)
        decision = decide(st.samples, now, current, ready, Policy.of(isvc.spec), st.panic_since)
        st.panic_since = decision.panic_since
        scaling = isvc.spec.autoscaling.enabled and (
            decision.replicas != current or decision.panic != bool(isvc.status.panic)
        )
        changed = probes != st.probes or scaling
        st.decision, st.probes = decision, probes
        if changed:
            self.changed(key)

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
