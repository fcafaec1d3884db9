"""kopf wiring for TrainingJob: indexes of jobs, pods and Services; events trigger a level-based reconcile."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf
from pydantic import ValidationError

from ..api.trainingjob import TrainingJob
from ..constants import (
    API_VERSION,
    COND_INVALID,
    GROUP,
    LABEL_JOB,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    MANAGER,
    TRAININGJOB_PLURAL,
    VERSION,
)
from ..kube.client import ApiError, Kube
from ..kube.events import post_event
from ..reconcile.observe import PodView, pod_view
from ..reconcile.trainingjob import Plan, plan, rfc3339
from .runtime import Coalescer

log = logging.getLogger("lepton_operator.trainingjob")
Key = tuple[str, str]
CHILD_LABELS = {LABEL_NAME: "trainingjob", LABEL_MANAGED_BY: MANAGER}


class TrainingJobController:
    """Observe (from kopf's indexes) -> plan (pure) -> apply (kube/); one status write per pass."""

    def __init__(self, kube: Kube, backoff_max: float = 30.0) -> None:
        self.kube = kube
        self.coalescer = Coalescer()
        self.backoff_max = backoff_max
        self._failures: dict[Key, int] = {}
        # Status we wrote whose watch event has not reached the index yet: key -> (based-on rv, new body).
        self._written: dict[Key, tuple[str, dict[str, Any]]] = {}

    async def trigger(
        self,
        key: Key,
        jobs: kopf.Index[Key, Any],
        pods: kopf.Index[Key, PodView],
        services: kopf.Index[Key, str],
    ) -> None:
        async def once() -> float | None:
            return await self.reconcile(key, jobs, pods, services)

        await self.coalescer.trigger(key, once)

    def forget(self, key: Key) -> None:
        self.coalescer.forget(key)
        self._written.pop(key, None)
        self._failures.pop(key, None)

    def _current(self, key: Key, body: dict[str, Any]) -> dict[str, Any]:
        """The index's body, unless our own status write is newer than it."""
        written = self._written.get(key)
        if written is None:
            return body
        based_on, newer = written
        if body["metadata"].get("resourceVersion") == based_on:
            return newer
        del self._written[key]
        return body

    async def reconcile(
        self,
        key: Key,
        jobs: kopf.Index[Key, Any],
        pods: kopf.Index[Key, PodView],
        services: kopf.Index[Key, str],
    ) -> float | None:
        store = jobs.get(key)
        if not store:
            return None
        body = self._current(key, next(iter(store)))
        now = datetime.now(UTC)
        try:
            job = TrainingJob.model_validate(body)
        except ValidationError as exc:
            await self._report_invalid(key, body, exc, now)
            return None
        decision = plan(job, list(pods.get(key, [])), key in services, now)
        try:
            await self._apply(key, body, decision, now)
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            tries = self._failures[key] = self._failures.get(key, 0) + 1
            delay = min(self.backoff_max, 0.5 * (1 << min(tries, 10)))
            log.warning("trainingjob %s/%s: apply failed (%s); retrying in %.1fs", *key, exc, delay)
            return delay
        self._failures.pop(key, None)
        requeue: float | None = decision.requeue_after
        return requeue

    async def _apply(self, key: Key, body: dict[str, Any], p: Plan, now: datetime) -> None:
        ns, name = key
        if p.create or p.delete or p.status is not None or p.delete_job:
            log.info(
                "trainingjob %s/%s: create %d, delete %d, phase %s%s",
                ns,
                name,
                len(p.create),
                len(p.delete),
                (p.status or body.get("status") or {}).get("phase"),
                ", deleting the finished job (TTL)" if p.delete_job else "",
            )
        if p.delete_job:
            await self.kube.delete(API_VERSION, TRAININGJOB_PLURAL, ns, name, propagationPolicy="Background")
            return
        await asyncio.gather(
            *(self.kube.delete("v1", "pods", ns, pod, propagationPolicy="Background") for pod in p.delete)
        )
        await asyncio.gather(*(self.kube.create(obj) for obj in p.create))
        if p.status is not None:
            old = body.get("status") or {}
            patch = {**{k: None for k in old if k not in p.status}, **p.status}
            updated = await self.kube.patch_status(API_VERSION, TRAININGJOB_PLURAL, ns, name, patch)
            if updated is not None:
                self._written[key] = (body["metadata"].get("resourceVersion", ""), updated)
        for ev in p.events:
            await post_event(self.kube, body, ev.type, ev.reason, ev.message, now)

    async def _report_invalid(self, key: Key, body: dict[str, Any], exc: ValidationError, now: datetime) -> None:
        """Runtime invalid state (e.g. a CRD older than the operator): a condition and an Event, no crash."""
        errors = "; ".join(
            f"spec.{'.'.join(str(x) for x in e['loc'][1:])}: {e['msg']}"
            if e["loc"][:1] == ("spec",)
            else f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        status = dict(body.get("status") or {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != COND_INVALID]
        if any(c.get("type") == COND_INVALID and c.get("message") == errors for c in status.get("conditions") or []):
            return
        conditions.append(
            {
                "type": COND_INVALID,
                "status": "True",
                "reason": "InvalidSpec",
                "message": errors,
                "lastTransitionTime": rfc3339(now),
            }
        )
        log.warning("trainingjob %s/%s: invalid spec: %s", *key, errors)
        try:
            await self.kube.patch_status(
                API_VERSION,
                TRAININGJOB_PLURAL,
                *key,
                {"conditions": conditions, "phase": "Failed", "message": f"invalid spec: {errors}"},
            )
            await post_event(self.kube, body, "Warning", "InvalidSpec", errors, now)
        except (ApiError, aiohttp.ClientError) as api_exc:
            log.warning("trainingjob %s/%s: cannot report invalid spec: %s", *key, api_exc)


@kopf.index(GROUP, VERSION, TRAININGJOB_PLURAL)
def trainingjob_bodies(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]]:
    return {(namespace, name): dict(body)}


@kopf.index("", "v1", "pods", labels=CHILD_LABELS)
def trainingjob_pods(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Key, PodView]:
    return {(namespace, labels.get(LABEL_JOB, "")): pod_view(dict(body))}


@kopf.index("", "v1", "services", labels=CHILD_LABELS)
def trainingjob_services(namespace: str, labels: kopf.Labels, name: str, **_: Any) -> dict[Key, str]:
    return {(namespace, labels.get(LABEL_JOB, "")): name}


def _controller(memo: kopf.Memo) -> TrainingJobController:
    ctl: TrainingJobController = memo.trainingjobs
    return ctl


@kopf.on.event(GROUP, VERSION, TRAININGJOB_PLURAL)
async def trainingjob_changed(
    type: str | None,
    namespace: str,
    name: str,
    memo: kopf.Memo,
    trainingjob_bodies: kopf.Index[Key, Any],
    trainingjob_pods: kopf.Index[Key, PodView],
    trainingjob_services: kopf.Index[Key, str],
    **_: Any,
) -> None:
    ctl = _controller(memo)
    if type == "DELETED":
        ctl.forget((namespace, name))
        return
    await ctl.trigger((namespace, name), trainingjob_bodies, trainingjob_pods, trainingjob_services)


@kopf.on.event("", "v1", "pods", labels=CHILD_LABELS)
@kopf.on.event("", "v1", "services", labels=CHILD_LABELS)
async def child_changed(
    namespace: str,
    labels: kopf.Labels,
    memo: kopf.Memo,
    trainingjob_bodies: kopf.Index[Key, Any],
    trainingjob_pods: kopf.Index[Key, PodView],
    trainingjob_services: kopf.Index[Key, str],
    **_: Any,
) -> None:
    key = (namespace, labels.get(LABEL_JOB, ""))
    await _controller(memo).trigger(key, trainingjob_bodies, trainingjob_pods, trainingjob_services)
