"""TrainingJob controller on the shared runtime (controller.py): informers of jobs, their pods, Services and
EndpointSlices, and nodes; a pass observes them (plus free GPUs and rank 0's /progress), plans (reconcile/), and
applies."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from lepton_trainer import contract
from pydantic import ValidationError

from .. import metrics
from ..api.trainingjob import TrainingJob
from ..api.trainingjob_status import TrainingJobStatus
from ..builders.common import TRAININGJOB_APP, managed_labels, selector
from ..builders.trainingjob import slice_endpoints
from ..builders.workload import JOB_UID_LABEL, POD_SET, SLICE_ANNOTATION, WORKLOADS, priority_class, queue_name
from ..config import OperatorConfig
from ..constants import (
    API_VERSION,
    CONTROLLER_NAME,
    KUEUE_API,
    LABEL_JOB,
    TRAININGJOB_PLURAL,
)
from ..kube.client import BadReply, Kube, merge_patch
from ..kube.discovery import GangDiscovery
from ..kube.errors import Refused
from ..kube.informer import Index, Informer
from ..kube.kueue import KueueObjects
from ..kube.usage import GpuUsage
from ..prices import DEFAULT_PRICES, PriceTable
from ..reconcile import dns, hostpaths
from ..reconcile.capacity import workers_that_fit
from ..reconcile.elastic import own_gpus_if_resizable
from ..reconcile.kueue import KueueSeen, WorkloadView
from ..reconcile.status import progress_only
from ..reconcile.trainingjob import Observed, Plan, plan
from ..reconcile.views import NodeView, PodView, node_view, pod_view
from ..timestamps import epoch_seconds
from .controller import CREATE_MEMORY, Controller, Key, key_of, owner_of
from .invalid import describe, report_invalid

log = logging.getLogger("lepton_operator.trainingjob")
CHILD_SELECTOR = selector(managed_labels(TRAININGJOB_APP))
DELETED_NODE_MEMORY = 600.0  # seconds a deleted node counts as lost
PROGRESS_POLL = 10.0  # seconds between fetches of a running job's /progress
SLICES_API = "discovery.k8s.io/v1"
V = TypeVar("V")


@dataclass
class Indexes:
    """What the informers saw: jobs and their children by job key, nodes by name."""

    jobs: Index[Key, dict[str, Any]] = field(default_factory=Index)
    pods: Index[Key, PodView] = field(default_factory=Index)
    services: Index[Key, str] = field(default_factory=Index)
    slices: Index[Key, tuple[str, int]] = field(default_factory=Index)  # name, hash of endpoints (reconcile/dns.py)
    nodes: Index[str, NodeView] = field(default_factory=Index)
    workloads: Index[Key, dict[str, Any]] = field(default_factory=Index)  # Kueue's, with LEPTON_KUEUE_INTEGRATION


class TrainingJobController(Controller):
    """Observe (from the informers' indexes) -> plan (pure) -> apply (kube/); one status write per pass."""

    kind, plural = "trainingjob", TRAININGJOB_PLURAL

    def __init__(self, kube: Kube, config: OperatorConfig | None = None) -> None:
        self.config = config or OperatorConfig()
        self.idx = Indexes()
        super().__init__(kube, self.idx.jobs, self.config.reconcile_workers, self.config.requeue_backoff_max)
        self.usage = GpuUsage(kube)
        self.gang = GangDiscovery(kube, enabled=self.config.gang_scheduling == "auto")
        self._holding: dict[Key, float] = {}  # jobs whose Pending progress is not written yet, since when
        self._refused: dict[Key, str] = {}  # the API server's answer to the last refused create, until one succeeds
        self._progress: dict[Key, tuple[float, dict[str, Any] | None, str | None]] = {}  # time, doc, error
        self._deleted_nodes: dict[str, float] = {}
        self._unhealthy_nodes: set[str] = set()  # NotReady or tainted unreachable/not-ready, as last seen
        self.prices: PriceTable = DEFAULT_PRICES
        self.kueue = KueueObjects(kube)

    # -- watching --------------------------------------------------------------------------------
    def informers(self) -> list[Informer]:
        """Jobs and our labelled children in the watched namespaces (or cluster-wide), and all nodes."""
        namespaces: list[str | None] = list(self.config.exact_namespaces) or [None]
        found: list[Informer] = [Informer(self.kube, "v1", "nodes", self._on_node)]
        for ns in namespaces:
            found += [
                Informer(self.kube, API_VERSION, TRAININGJOB_PLURAL, self._on_job, namespace=ns),
                Informer(self.kube, "v1", "pods", self._on_pod, namespace=ns, label_selector=CHILD_SELECTOR),
                Informer(self.kube, "v1", "services", self._on_service, namespace=ns, label_selector=CHILD_SELECTOR),
                Informer(
                    self.kube, SLICES_API, "endpointslices", self._on_slice, namespace=ns, label_selector=CHILD_SELECTOR
                ),
            ]
            if self.config.kueue_integration:
                found.append(
                    Informer(
                        self.kube, KUEUE_API, WORKLOADS, self._on_workload, namespace=ns, label_selector=CHILD_SELECTOR
                    )
                )
        return found

    def _on_job(self, kind: str, obj: dict[str, Any]) -> None:
        if self.config.watches(key_of(obj)[0]):
            self.on_object(kind, obj, self.config.status_batch_seconds)

    def _on_pod(self, kind: str, obj: dict[str, Any]) -> None:
        key, name = owner_of(obj, LABEL_JOB), obj["metadata"]["name"]
        if not self.config.watches(key[0]):
            return
        if kind == "DELETED":
            self.idx.pods.remove(key, name)
            self.queue.add(key, urgent=True)
            return
        view = pod_view(obj)
        if view == self.idx.pods.view(key, name):
            return  # nothing a pass reads changed (a condition's timestamp, a status field we do not use)
        self.idx.pods.put(key, name, view)
        if view.phase == "Failed" or view.deleting:
            self.queue.add(key, urgent=True)  # failover acts at once
        else:
            self.queue.add(key, self.config.status_batch_seconds)  # progress: one pass for a gang's events

    def _on_service(self, kind: str, obj: dict[str, Any]) -> None:
        self._on_child(self.idx.services, kind, obj, lambda o: str(o["metadata"]["name"]))

    def _on_slice(self, kind: str, obj: dict[str, Any]) -> None:
        """Our EndpointSlices, as their endpoints' fingerprint (the next pass rewrites one that differs from what
        it wants)."""
        self._on_child(self.idx.slices, kind, obj, lambda o: (str(o["metadata"]["name"]), dns.fingerprint(o)))

    def _on_child(
        self, index: Index[Key, V], kind: str, obj: dict[str, Any], view: Callable[[dict[str, Any]], V]
    ) -> None:
        """A child a pass reads but whose changes it need not act on (the job's Service, its EndpointSlices):
        indexed as `view(obj)`; a deletion queues the job's pass, which makes it again."""
        key, name = owner_of(obj, LABEL_JOB), obj["metadata"]["name"]
        if not self.config.watches(key[0]):
            return
        if kind == "DELETED":
            index.remove(key, name)
            self.queue.add(key)
        else:
            index.put(key, name, view(obj))

    def _on_workload(self, kind: str, obj: dict[str, Any]) -> None:
        """A Workload of ours changed (Kueue admitted or evicted it): the job's pass acts at once."""
        key, name = owner_of(obj, LABEL_JOB), obj["metadata"]["name"]
        if not self.config.watches(key[0]):
            return
        if kind == "DELETED":
            self.idx.workloads.remove(key, name)
        else:
            self.idx.workloads.put(key, name, obj)
        self.queue.add(key, urgent=True)

    async def _kueue_seen(self, key: Key, job: TrainingJob) -> KueueSeen | None:
        """The queued job's Workload (and a growth slice not admitted yet) with the admitted flavors resolved; None
        when Kueue does not manage the job."""
        if not self.config.kueue_integration or queue_name(job) is None:
            return None
        pc = priority_class(job)
        priority = await self.kueue.priority(pc) if pc else None
        uid = str(job.metadata.get("uid", ""))
        ours = [
            w for w in self.idx.workloads.get(key, []) if (w["metadata"].get("labels") or {}).get(JOB_UID_LABEL) == uid
        ]
        replaced_at = max((t for w in ours if (t := _replaced_at(w))), default=None)
        views = sorted([await self._workload_view(w) for w in ours if not _replaced_at(w)], key=lambda v: v.slice_index)
        slices = self.config.kueue_workload_slices
        if not views:
            return KueueSeen(None, priority, replaced_at=replaced_at, slices=slices)
        # a newer slice: pending, or admitted while Kueue has not finished the one it replaces yet
        return KueueSeen(views[0], priority, views[1] if len(views) > 1 else None, replaced_at, slices)

    async def _workload_view(self, obj: dict[str, Any]) -> WorkloadView:
        status = obj.get("status") or {}
        selector: dict[str, str] = {}
        tolerations: list[dict[str, Any]] = []
        for psa in (status.get("admission") or {}).get("podSetAssignments") or []:
            if psa.get("name") == POD_SET:
                for flavor in sorted(set((psa.get("flavors") or {}).values())):
                    labels, tols = await self.kueue.flavor(flavor)
                    selector.update(labels)
                    tolerations += [t for t in tols if t not in tolerations]
        meta = obj["metadata"]
        index = (meta.get("annotations") or {}).get(SLICE_ANNOTATION, "0")
        return WorkloadView(
            meta["name"],
            meta.get("resourceVersion", ""),
            status,
            meta.get("generation"),
            selector,
            tolerations,
            int(index) if index.isdigit() else 0,
            (obj.get("spec") or {}).get("active", True) is not False,
        )

    def _on_node(self, kind: str, obj: dict[str, Any]) -> None:
        """Fast node-loss reaction: NotReady, an unreachable/not-ready taint, or deletion restarts affected jobs now."""
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.idx.nodes.remove(name, name)
            self._unhealthy_nodes.discard(name)
            self.node_deleted(name)
        else:
            view = node_view(obj)
            self.idx.nodes.put(name, name, view)
            if not view.lost:
                self._unhealthy_nodes.discard(name)
                self.node_back(name)
                return
            self._unhealthy_nodes.add(name)
        self.trigger_jobs_on(name)

    def forget(self, key: Key) -> None:
        super().forget(key)
        metrics.JOBS.jobs.pop(key, None)
        self._progress.pop(key, None)
        self._refused.pop(key, None)
        self._holding.pop(key, None)

    # -- nodes -------------------------------------------------------------------------------------
    def node_deleted(self, name: str) -> None:
        self._deleted_nodes[name] = time.monotonic()

    def node_back(self, name: str) -> None:
        self._deleted_nodes.pop(name, None)

    def lost_nodes(self) -> frozenset[str]:
        now = time.monotonic()
        for name, since in list(self._deleted_nodes.items()):
            if now - since > DELETED_NODE_MEMORY:
                del self._deleted_nodes[name]
        return frozenset(self._unhealthy_nodes | self._deleted_nodes.keys())

    def trigger_jobs_on(self, node: str) -> None:
        """A node was lost: reconcile every job with a pod on it, before anything else."""
        keys = [key for key, store in self.idx.pods.items() if any(pv.node == node for pv in store)]
        if keys:
            log.info("node %s lost: reconciling %d job(s) with pods on it", node, len(keys))
        for key in keys:
            self.queue.add(key, urgent=True)

    # -- one pass ----------------------------------------------------------------------------------
    async def _capacity(self, job: TrainingJob, pods: list[PodView], lost: frozenset[str]) -> int | None:
        """Free-GPU estimate, only for elastic jobs that may change size (one cached LIST for all)."""
        own = own_gpus_if_resizable(job, pods)
        if own is None:
            return None
        nodes = [n for store in self.idx.nodes.values() for n in store if n.name not in lost]
        used = await self.usage.used()
        return None if used is None else workers_that_fit(job, nodes, used, own)

    async def _live_progress(
        self, key: Key, job: TrainingJob, pods: list[PodView]
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Rank 0's /progress document (or why its reply was refused), fetched at most every PROGRESS_POLL
        seconds while the job runs."""
        if job.status.phase != "Running":
            self._progress.pop(key, None)
            return None, None
        fetched, doc, error = self._progress.get(key, (-1e9, None, None))
        if time.monotonic() - fetched < PROGRESS_POLL:
            return doc, error
        epoch = job.status.restart_epoch or 0
        rank0 = next((q for q in pods if q.epoch == epoch and q.rank == 0 and q.ip and q.phase == "Running"), None)
        if rank0 is not None:
            url = f"http://{rank0.ip}:{contract.PROGRESS_PORT}/progress"
            try:
                doc, error = await self.kube.fetch_json(url, seconds=1.0), None
            except BadReply as exc:
                doc, error = None, f"{rank0.name}'s /progress: {exc}"[:512]
        self._progress[key] = (time.monotonic(), doc, error)
        return doc, error

    async def reconcile(self, key: Key) -> float | None:
        with metrics.RECONCILE.time():
            return await super().reconcile(key)

    async def sync(self, key: Key) -> float | None:
        idx, body = self.idx, self.body(key)
        if body is None:
            return None
        if (body.get("spec") or {}).get("managedBy", CONTROLLER_NAME) != CONTROLLER_NAME:
            return None  # another controller's (MultiKueue): not even its spec is ours to judge or report on
        now = datetime.now(UTC)
        try:
            job = TrainingJob.model_validate(body)
        except ValidationError as exc:
            await self._report_invalid(key, body, describe(exc), now)
            return None
        ckpt = job.spec.checkpoint
        field, path = "spec.checkpoint.volume.hostPath", ckpt.volume.host_path if ckpt else None
        allowed = self.config.allowed_hostpath_prefixes
        if refused_path := hostpaths.refusal(field, path, allowed) or hostpaths.template_refusal(
            job.spec.template, allowed
        ):
            await self._report_invalid(key, body, refused_path, now)
            return None
        pods = list(idx.pods.get(key, []))
        lost = self.lost_nodes()
        nodes = {q.node: n for q in pods if q.node for n in idx.nodes.get(q.node, [])}
        try:
            prices = self.prices.merged(
                job.spec.prices.to_wire() if job.spec.prices else None, f"spec.prices over {self.prices.source}"
            )
        except ValidationError as exc:  # e.g. relativeSpeed 0, which an older CRD let through
            await self._report_invalid(key, body, describe(exc, "spec.prices."), now)
            return None
        capacity = await self._capacity(job, pods, lost)
        live, live_error = await self._live_progress(key, job, pods)
        seen = Observed(
            pods,
            key in idx.services,
            dict(idx.slices.get(key, [])),
            lost,
            capacity,
            nodes,
            prices,
            live,
            live_error,
            self._refused.get(key),
            gang=await self.gang.mode(),
            kueue=await self._kueue_seen(key, job),
        )
        decision = plan(job, seen, now)
        refused = await self._apply(
            key, body, job.status, decision, now, lambda why: plan(job, replace(seen, create_refused=why), now)
        )
        self._observe(key, body, job.status, decision)
        if refused:  # reported in status and an Event; the same request would be refused again at once
            return self.retry_after(key, f"the API server refused a create: {refused}")
        return self.succeeded(key, decision.requeue_after)

    def _observe(self, key: Key, body: dict[str, Any], before: TrainingJobStatus, p: Plan) -> None:
        """Metrics from one applied pass."""
        st = p.status or before
        gpu_hours, usd = (st.cost.gpu_hours, st.cost.accrued_usd) if st.cost else (0.0, 0.0)
        metrics.JOBS.jobs[key] = metrics.JobFacts(key[0], st.phase or "Pending", gpu_hours, usd)
        if p.new_epoch_reason and p.new_epoch_reason != "Resized":
            metrics.RESTARTS.labels(key[0], p.new_epoch_reason).inc()
        if p.failover_seconds is not None:
            metrics.FAILOVER.observe(p.failover_seconds)
        if p.first_pods_complete and (created := body["metadata"].get("creationTimestamp")):
            metrics.APPLY_TO_PODS.observe(max(0.0, time.time() - epoch_seconds(created)))

    async def _apply(
        self,
        key: Key,
        body: dict[str, Any],
        before: TrainingJobStatus,
        p: Plan,
        now: datetime,
        knowing: Callable[[str | None], Plan],
    ) -> str | None:
        """Act on the children, then store the status and post the Events (unless the status is held, see
        `_hold`). When the API server refused a create (or accepts them again), the status and Events come from
        `knowing(refusal)`: the plan that knows it. Returns the refusal, if any."""
        self._log(key, body, p)
        if p.delete_job:
            await self.kube.delete(API_VERSION, TRAININGJOB_PLURAL, *key, propagationPolicy="Background")
            return None
        known = self._refused.get(key)  # what the plan was told
        refused = await self._apply_children(key, p)  # forgets the last refusal once a create succeeds
        await self._apply_workload(key, p)
        if refused:
            self._refused[key] = refused
        if (now_known := self._refused.get(key)) != known:
            told = knowing(now_known)
            p.status, p.events = told.status, told.events
        if p.status is not None and self._hold(key, before, p):
            return refused  # neither the status nor its Events: the pass that writes plans them again
        if p.status is not None:
            await self.write_status(key, body, p.status)
        await self.post_events(body, p.events, now)
        return refused

    def _hold(self, key: Key, before: TrainingJobStatus, p: Plan) -> bool:
        """Whether to leave this pass's status unwritten: in a burst (more jobs queued than workers) a new job's
        Pending progress waits, up to `status_hold_seconds`, to be written together with its Running status, so
        the job costs one status write and one Event instead of three each (bench/scale.py). Anything else
        (warnings, failures, other phases, a spec change) ends the hold and is written at once."""
        hold, since = self.config.status_hold_seconds, self._holding.get(key)
        busy = len(self.queue) >= self.config.reconcile_workers
        if hold <= 0 or not progress_only(before, p) or (since is None and not busy):
            self._holding.pop(key, None)
            return False
        now = time.monotonic()
        left = self._holding.setdefault(key, now) + hold - now
        if left <= 0:
            del self._holding[key]
            return False
        p.requeue(left)
        return True

    async def _apply_workload(self, key: Key, p: Plan) -> None:
        """Create the job's Kueue Workload, or store its new status (conditional: Kueue writes it too)."""
        if p.workload_create is not None:
            await self.kube.create(p.workload_create)
        if p.workload_active is not None:
            name, active = p.workload_active
            await self.kube.patch(KUEUE_API, WORKLOADS, key[0], name, {"spec": {"active": active}})
        for w in (p.workload_status, p.growth_status):
            if w is not None and (patch := merge_patch(w.old, w.status)):
                await self.kube.patch_status(KUEUE_API, WORKLOADS, key[0], w.name, patch, w.resource_version)

    def _log(self, key: Key, body: dict[str, Any], p: Plan) -> None:
        if p.create or p.delete or p.force_delete or p.status is not None or p.delete_job:
            st = p.status or TrainingJobStatus.model_validate(body.get("status") or {})
            log.info(
                "trainingjob %s/%s: epoch %s %s: create %d, delete %d (+%d forced)%s%s",
                *key,
                st.restart_epoch,
                st.phase,
                len(p.create),
                len(p.delete),
                len(p.force_delete),
                f", new epoch ({p.new_epoch_reason})" if p.new_epoch_reason else "",
                ", deleting the finished job (TTL)" if p.delete_job else "",
            )

    async def _apply_children(self, key: Key, p: Plan) -> str | None:
        """Deletes, then creates; the API server's message when it refused a create (Refused: the same request
        would fail again), raising any other error."""
        ns = key[0]
        await asyncio.gather(
            *(self.kube.delete("v1", "pods", ns, pod) for pod in p.delete),
            *(self.kube.delete("v1", "pods", ns, pod, gracePeriodSeconds=0) for pod in p.force_delete),
        )
        if p.delete or p.force_delete:
            self.usage.invalidate()
            self.deleted(key, [*p.delete, *p.force_delete])
        await asyncio.gather(
            *(
                self.kube.patch(SLICES_API, "endpointslices", ns, name, {"endpoints": slice_endpoints(ns, endpoints)})
                for name, endpoints in p.endpoints.items()
            )
        )
        todo = self.not_in_flight(key, p.create)
        if len(todo) < len(p.create):  # look again once the index must show them, or they are really gone
            p.requeue(CREATE_MEMORY)
        results = await asyncio.gather(*(self.kube.create(obj) for obj in todo), return_exceptions=True)
        self.remember(key, [o for o, r in zip(todo, results, strict=True) if not isinstance(r, BaseException)])
        refusals = [
            f"{o['kind']} {o['metadata']['name']}: {r.message}"
            for o, r in zip(todo, results, strict=True)
            if isinstance(r, Refused) and not r.namespace_gone
        ]
        for r in results:
            if isinstance(r, BaseException) and not (isinstance(r, Refused) and not r.namespace_gone):
                raise r
        if todo and not refusals:
            self._refused.pop(key, None)
        return refusals[0] if refusals else None

    async def _report_invalid(self, key: Key, body: dict[str, Any], errors: str, now: datetime) -> None:
        """Runtime invalid state (e.g. a CRD older than the operator, a hostPath not allowed): a condition and an
        Event, no crash."""
        fields = {"phase": "Failed", "message": f"invalid spec: {errors}"[:4096]}
        await report_invalid(self.kube, TRAININGJOB_PLURAL, body, errors, now, fields)


def _replaced_at(workload: dict[str, Any]) -> str | None:
    """When Kueue finished this slice because a newer one replaced it (pkg/workloadslicing IsReplaced), or None."""
    for c in (workload.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Finished" and c.get("status") == "True" and c.get("reason") == "WorkloadSliceReplaced":
            return str(c.get("lastTransitionTime") or "") or None
    return None
