"""InferenceService controller on the shared runtime (controller.py): informers of services and their
Deployments, Services and pods; TrainingJobs and nodes from the TrainingJob controller's indexes; one
autoscaler task per service (autoscaler.py). A pass observes them, plans (reconcile/), and applies."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ..api.inferenceservice import InferenceService
from ..builders.common import INFERENCESERVICE_APP, managed_labels, selector
from ..config import OperatorConfig
from ..constants import API_VERSION, INFERENCESERVICE_PLURAL, LABEL_ISVC
from ..kube.client import Kube
from ..kube.informer import Index, Informer
from ..prices import PriceTable
from ..reconcile import hostpaths
from ..reconcile.inferenceservice import Observed, Plan, plan
from ..reconcile.views import DeploymentView, NodeView, PodView, deployment_view, pod_view
from .autoscaler import Autoscalers
from .controller import Controller, Key, key_of, owner_of
from .invalid import describe, report_invalid

log = logging.getLogger("lepton_operator.inferenceservice")
CHILD_SELECTOR = selector(managed_labels(INFERENCESERVICE_APP))


@dataclass
class Indexes:
    """Services and their children by service key; TrainingJobs and nodes from the TrainingJob controller."""

    jobs: Mapping[Key, Collection[dict[str, Any]]]
    nodes: Mapping[str, Collection[NodeView]]
    isvcs: Index[Key, dict[str, Any]] = field(default_factory=Index)
    deployments: Index[Key, DeploymentView] = field(default_factory=Index)
    services: Index[Key, str] = field(default_factory=Index)
    pods: Index[Key, PodView] = field(default_factory=Index)


class InferenceServiceController(Controller):
    kind, plural = "inferenceservice", INFERENCESERVICE_PLURAL

    def __init__(
        self,
        kube: Kube,
        config: OperatorConfig,
        prices: Callable[[], PriceTable],
        jobs: Mapping[Key, Collection[dict[str, Any]]],
        nodes: Mapping[str, Collection[NodeView]],
    ) -> None:
        self.config, self.prices = config, prices
        self.idx = Indexes(jobs, nodes)
        super().__init__(kube, self.idx.isvcs, 4, config.requeue_backoff_max)
        self.scalers = Autoscalers(config, self.body, self.idx.pods, self.idx.deployments, self.queue.add)

    # -- watching --------------------------------------------------------------------------------
    def informers(self) -> list[Informer]:
        """Services and our labelled Deployments, Services and pods in the watched namespaces (or cluster-wide)."""
        found: list[Informer] = []
        namespaces: list[str | None] = list(self.config.exact_namespaces) or [None]
        for ns in namespaces:
            found += [
                Informer(self.kube, API_VERSION, INFERENCESERVICE_PLURAL, self._on_isvc, namespace=ns),
                Informer(self.kube, "apps/v1", "deployments", self._on_deployment, namespace=ns,
                         label_selector=CHILD_SELECTOR),
                Informer(self.kube, "v1", "services", self._on_service, namespace=ns, label_selector=CHILD_SELECTOR),
                Informer(self.kube, "v1", "pods", self._on_pod, namespace=ns, label_selector=CHILD_SELECTOR),
            ]  # fmt: skip
        return found

    def _on_isvc(self, kind: str, obj: dict[str, Any]) -> None:
        key = key_of(obj)
        if self.config.watches(key[0]):
            self.on_object(kind, obj, self.config.status_batch_seconds)
            if kind != "DELETED":
                self.scalers.ensure(key)

    def _child(
        self, index: Index[Key, Any], view: Callable[[dict[str, Any]], Any], kind: str, obj: dict[str, Any]
    ) -> None:
        key, name = owner_of(obj, LABEL_ISVC), obj["metadata"]["name"]
        if not self.config.watches(key[0]):
            return
        if kind == "DELETED":
            index.remove(key, name)
        else:
            index.put(key, name, view(obj))
        if key in self.idx.isvcs:
            self.queue.add(key)

    def _on_deployment(self, kind: str, obj: dict[str, Any]) -> None:
        self._child(self.idx.deployments, deployment_view, kind, obj)

    def _on_service(self, kind: str, obj: dict[str, Any]) -> None:
        self._child(self.idx.services, lambda o: o["metadata"]["name"], kind, obj)

    def _on_pod(self, kind: str, obj: dict[str, Any]) -> None:
        self._child(self.idx.pods, pod_view, kind, obj)

    def job_changed(self, namespace: str, name: str) -> None:
        """A TrainingJob changed (e.g. succeeded): reconcile the services that serve its model."""
        for key, store in list(self.idx.isvcs.items()):
            body: dict[str, Any] = next(iter(store), {})
            if key[0] == namespace and ((body.get("spec") or {}).get("model") or {}).get("fromTrainingJob") == name:
                self.queue.add(key)

    def forget(self, key: Key) -> None:
        super().forget(key)
        self.scalers.forget(key)

    async def close(self) -> None:
        await self.scalers.close()
        await self.queue.close()
        await self.kube.close()

    # -- one pass ----------------------------------------------------------------------------------
    async def sync(self, key: Key) -> float | None:
        idx, body = self.idx, self.body(key)
        if body is None:
            return None
        now = datetime.now(UTC)
        try:
            isvc = InferenceService.model_validate(body)
        except ValidationError as exc:  # the same condition and Event as a TrainingJob's
            await self._report_invalid(body, describe(exc), now)
            return None
        st = self.scalers.state(key)
        job = None
        if src := isvc.spec.model.from_training_job:
            job = next(iter(idx.jobs.get((key[0], src), [])), None)
        if refused_path := self._host_path_refusal(isvc, job):
            await self._report_invalid(body, refused_path, now)
            return None
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
        await self._apply(key, body, decision, now)
        return self.succeeded(key, None)

    def _host_path_refusal(self, isvc: InferenceService, job: dict[str, Any] | None) -> str | None:
        """The model's hostPath (its own, or its TrainingJob's checkpoint folder) outside the allowed prefixes."""
        if isvc.spec.model.volume is not None:
            field, path = "spec.model.volume.hostPath", isvc.spec.model.volume.host_path
        else:
            field = "spec.model.fromTrainingJob (its spec.checkpoint.volume.hostPath)"
            path = hostpaths.checkpoint_host_path(job)
        return hostpaths.refusal(field, path, self.config.allowed_hostpath_prefixes)

    async def _report_invalid(self, body: dict[str, Any], errors: str, now: datetime) -> None:
        fields = {"ready": "False", "message": f"invalid spec: {errors}"[:4096]}
        await report_invalid(self.kube, INFERENCESERVICE_PLURAL, body, errors, now, fields)

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
            await self.write_status(key, body, p.status)
        await self.post_events(body, p.events, now)
