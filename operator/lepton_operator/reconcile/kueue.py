"""Kueue policy of a queued TrainingJob (one with the `kueue.x-k8s.io/queue-name` label): the operator is the
job's Kueue integration, in the roles Kueue's job framework gives a job reconciler (pkg/controller/jobframework,
reconciler.go ReconcileGenericJob, v0.17.0; docs/kueue.md lists what is followed and where it differs):

1. ensure one Workload owned by the job (builders/workload.py);
2. Finished: when the job ends, the Workload gets Finished=True (reason Succeeded or Failed);
3. reclaimablePods: the workers that succeeded hold no quota any more;
4. PodsReady: True when every worker of the admitted size runs and is ready (generatePodsReadyCondition);
5. eviction (Evicted=True: preemption, PodsReady timeout, deactivation): stop the job (delete its pods: the
   kubelet sends SIGTERM, the trainer saves a checkpoint), and once no pod is left clear the Workload's
   admission (QuotaReserved=False reason Pending, Requeued=True when preempted; UnsetQuotaReservationWithCondition);
6. not admitted: no pod exists (the job stays "suspended"; there is no suspend field to flip: the operator simply
   creates no worker), and the job says why in an `Admitted=False` condition with Kueue's message;
7. admitted: the world size is the admitted count (partial admission of an elastic job gives >= minReplicas),
   and the workers get the admitted flavor's node labels and tolerations (RunWithPodSetsInfo);
8. growth of an elastic job admitted below its target: a Workload slice (ElasticJobsViaWorkloadSlices,
   pkg/workloadslicing) asking for the target, created once every worker runs and the scale-up cooldown is
   over; the job keeps running on the old slice meanwhile; when Kueue admits the new slice (and finishes the old
   one, reason WorkloadSliceReplaced) the job starts a Resized epoch at the new size, not counted as a restart;
9. suspension (spec.suspend, a spent budget): the Workload is deactivated (spec.active=false) so the quota goes
   back; resumed, it is activated and queues again.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..builders.workload import POD_SET, admit, workload
from ..constants import COND_SUSPENDED
from ..timestamps import rfc3339, seconds_since
from .plan import Plan
from .status import TERMINAL, JobPass
from .views import PodView

COND_ADMITTED = "Admitted"  # on the TrainingJob
#: Kueue's scheduler finishes the replaced slice, then admits its replacement (scheduler.go): for this long after
#: the first, a running job waits for the second instead of stopping its workers.
SLICE_HANDOVER_SECONDS = 10.0
PREEMPTED_REASONS = ("Preempted", "NodeFailures")  # Requeued=True after these evictions (reconciler.go)


@dataclass(frozen=True)
class WorkloadView:
    """The job's Workload as seen, with its admitted flavors' node labels and tolerations resolved."""

    name: str
    resource_version: str
    status: dict[str, Any]
    generation: int | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    slice_index: int = 0
    active: bool = True  # spec.active: False while the job is suspended (Kueue evicts it, reason Deactivated)


@dataclass(frozen=True)
class KueueSeen:
    """What a pass of a queued job knows of Kueue: its Workload (None: not created yet) and the value of its
    WorkloadPriorityClass (None: no class, or not readable)."""

    workload: WorkloadView | None
    priority: int | None = None
    growth: WorkloadView | None = None  # a newer slice, not admitted yet, asking for the target size
    replaced_at: str | None = None  # when Kueue last finished a slice of the job as replaced (WorkloadSliceReplaced)
    slices: bool = False  # grow with Workload slices (Kueue's ElasticJobsViaWorkloadSlices gate is on)


@dataclass
class WorkloadWrite:
    """A Workload status to store: exactly `status`, conditional on `resource_version`."""

    name: str
    resource_version: str
    old: dict[str, Any]
    status: dict[str, Any]


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def is_true(status: dict[str, Any], type_: str) -> bool:
    c = condition(status, type_)
    return c is not None and c.get("status") == "True"


def admitted_count(view: WorkloadView, default: int) -> int:
    """The admitted count of the workers' pod set (the whole pod set when Kueue leaves count out)."""
    for psa in (view.status.get("admission") or {}).get("podSetAssignments") or []:
        if psa.get("name") == POD_SET:
            return int(psa.get("count") or default)
    return default


def pending_reason(view: WorkloadView | None) -> tuple[str, str]:
    """Why the Workload is not admitted, in Kueue's words: its QuotaReserved (else Admitted) condition."""
    if view is None:
        return "WorkloadCreated", "waiting for Kueue: the Workload is being created"
    for type_ in ("QuotaReserved", "Admitted"):
        c = condition(view.status, type_)
        if c is not None and c.get("status") == "False" and c.get("message"):
            return str(c.get("reason") or "Pending"), f"waiting for Kueue: {c['message']}"
    return "Pending", f"waiting for Kueue to admit Workload {view.name}"


def gate(p: JobPass, current: list[PodView]) -> tuple[bool, int | None]:
    """(pass ends here, the admitted world size). A job without the queue label passes (False, None)."""
    seen = p.seen.kueue
    if seen is None:
        p.drop(COND_ADMITTED, "NotQueued", "the job has no kueue.x-k8s.io/queue-name label")
        return False, None
    view, live = seen.workload, [q for q in current if q.phase not in TERMINAL]
    if view is None:
        p.plan.workload_create = workload(p.job, seen.priority)
        return _wait(p, live, *pending_reason(None))
    if is_true(view.status, "Evicted") and (view.status.get("admission") or live):
        # until the admission is handed back (then Kueue's Evicted stays True while the Workload queues again)
        c = condition(view.status, "Evicted") or {}
        reason, message = str(c.get("reason") or "Evicted"), str(c.get("message") or "evicted by Kueue")
        p.cond(COND_ADMITTED, False, f"Evicted{reason}", f"evicted by Kueue ({reason}): {message}", warning=True)
        _stop(p, live, f"evicted by Kueue ({reason}): {message}")
        return True, None
    if not is_true(view.status, "Admitted"):
        if view.slice_index > 0 and live and seen.replaced_at:
            left = SLICE_HANDOVER_SECONDS - seconds_since(seen.replaced_at, p.now)
            if left > 0:  # Kueue finishes the running slice first, then admits this one: the workers stay
                p.plan.requeue(left)
                return True, None
        return _wait(p, live, *pending_reason(view))
    target = p.job.spec.target_size
    world = admitted_count(view, target)
    queue = (view.status.get("admission") or {}).get("clusterQueue", "")
    text = f"admitted by ClusterQueue {queue}: {world} workers"
    if seen.growth is not None:
        text += f"; growth to {target}: {pending_reason(seen.growth)[1]}"
    p.cond(COND_ADMITTED, True, "Admitted", text)
    st = p.status
    if st.replicas is None or (st.replicas != world and not live):
        st.replicas = world  # (re-)admitted at another size: the next workers start at it, no new epoch needed
        st.epoch_start_time = p.stamp
    elif st.replicas != world:  # a slice of another size replaced the one the workers run under
        p.new_epoch(
            "Resized", f"world size {st.replicas} -> {world}: Kueue admitted a new slice", counts=False, world=world
        )
        return True, None
    _grow(p, view, live, world)
    return False, world


def _grow(p: JobPass, view: WorkloadView, live: list[PodView], world: int) -> None:
    """Ask Kueue for the target size with a new slice, once every worker runs and the cooldown is over."""
    seen, target = p.seen.kueue, p.job.spec.target_size
    if seen is None or not seen.slices or seen.growth is not None or world >= target or p.job.spec.min_size >= target:
        return
    if len(live) < world or not all(q.phase == "Running" for q in live):
        return
    cooldown = p.job.spec.elastic_policy.scale_up_cooldown_seconds
    age = seconds_since(p.status.epoch_start_time, p.now) if p.status.epoch_start_time else cooldown
    if age < cooldown:
        p.plan.requeue(max(0.1, cooldown - age))
        return
    p.plan.workload_create = workload(p.job, seen.priority, replaces=(view.name, view.slice_index))


def _wait(p: JobPass, live: list[PodView], reason: str, message: str) -> tuple[bool, int | None]:
    p.cond(COND_ADMITTED, False, reason, message)
    _stop(p, live, message)
    return True, None


def _stop(p: JobPass, live: list[PodView], why: str) -> None:
    """No worker runs without an admission: delete the live ones (SIGTERM, then a checkpoint) and wait."""
    p.stop_workers("NotAdmitted", why, live)
    st = p.status
    st.launched = False  # the workers go on purpose: admitted again, they start at the same epoch, no restart
    st.start_time = None
    st.message = why + (f"; stopping {len(live)} workers" if live else "; no worker runs")


def _set(conds: list[dict[str, Any]], type_: str, status: bool, reason: str, message: str, stamp: str) -> None:
    """metav1.Condition semantics: lastTransitionTime moves only when the status flips."""
    value = "True" if status else "False"
    old = next((c for c in conds if c.get("type") == type_), None)
    new = {"type": type_, "status": value, "reason": reason, "message": message[:32768]}
    new["lastTransitionTime"] = old["lastTransitionTime"] if old and old.get("status") == value else stamp
    if old is None:
        conds.append(new)
    elif {k: old.get(k) for k in new} != new:
        conds[conds.index(old)] = {**old, **new}


def workload_status(p: JobPass, current: list[PodView], now: datetime) -> WorkloadWrite | None:
    """The Workload's status after this pass (Finished, reclaimablePods, PodsReady, admission cleared after an
    eviction once no worker is left), or None when unchanged."""
    seen = p.seen.kueue
    view = seen.workload if seen else None
    if view is None:
        return None
    old, stamp = view.status, rfc3339(now)
    new = copy.deepcopy(old)
    conds: list[dict[str, Any]] = new.setdefault("conditions", [])
    st = p.status
    finished = next((c for c in st.conditions or [] if c.type in ("Succeeded", "Failed") and c.status == "True"), None)
    live = [q for q in current if q.phase not in TERMINAL]
    if finished is not None and not is_true(old, "Finished"):
        _set(conds, "Finished", True, finished.type, finished.message or finished.type, stamp)
    succeeded = sum(1 for q in current if q.phase == "Succeeded")
    if succeeded and finished is None:
        new["reclaimablePods"] = [{"name": POD_SET, "count": succeeded}]
    admitted = is_true(old, "Admitted")
    if is_true(old, "Evicted") and old.get("admission") and not live:
        ev = condition(old, "Evicted") or {}
        reason, message = str(ev.get("reason") or "Evicted"), str(ev.get("message") or "evicted")
        _set(conds, "Requeued", reason in PREEMPTED_REASONS, reason, message, stamp)
        _set(conds, "QuotaReserved", False, "Pending", message, stamp)
        _set(conds, "Admitted", False, "NoReservation", "The workload has no reservation", stamp)
        new.pop("admission", None)
        admitted = False
    world = st.replicas or 0
    ready = admitted and world > 0 and (st.ready_replicas or 0) >= world
    _pods_ready(conds, admitted, ready, stamp)
    if new == old:
        return None
    return WorkloadWrite(view.name, view.resource_version, old, new)


def active(p: JobPass) -> tuple[str, bool] | None:
    """A suspended job (spec.suspend or a spent budget) deactivates its Workload, so Kueue evicts it and the quota
    goes to others (reason Deactivated, the eviction path above); resumed, the Workload is active and queues again."""
    seen = p.seen.kueue
    view = seen.workload if seen else None
    if view is None:
        return None
    want = not any(c.type == COND_SUSPENDED and c.status == "True" for c in p.status.conditions or [])
    return (view.name, want) if want != view.active else None


def growth_status(p: JobPass, now: datetime) -> WorkloadWrite | None:
    """A growth slice still pending when its job ends gets Finished too: admitted later, it would hold quota for
    a job that no longer runs."""
    seen = p.seen.kueue
    growth = seen.growth if seen else None
    finished = next(
        (c for c in p.status.conditions or [] if c.type in ("Succeeded", "Failed") and c.status == "True"), None
    )
    if growth is None or finished is None or is_true(growth.status, "Finished"):
        return None
    new = copy.deepcopy(growth.status)
    message = f"the job ended ({finished.type}) before this growth slice was admitted"
    _set(new.setdefault("conditions", []), "Finished", True, finished.type, message, rfc3339(now))
    return WorkloadWrite(growth.name, growth.resource_version, growth.status, new)


def _pods_ready(conds: list[dict[str, Any]], admitted: bool, ready: bool, stamp: str) -> None:
    """generatePodsReadyCondition (reconciler.go): Started/Recovered, WaitForStart, WaitForRecovery."""
    was = next((c for c in conds if c.get("type") == "PodsReady"), None)
    if ready:
        recovering = was is not None and was.get("reason") in ("WaitForRecovery", "Recovered")
        reason = "Recovered" if recovering else "Started"
        _set(conds, "PodsReady", True, reason, "All pods reached readiness and the workload is running", stamp)
    elif admitted and was is not None and (was.get("status") == "True" or was.get("reason") == "WaitForRecovery"):
        _set(conds, "PodsReady", False, "WaitForRecovery", "At least one pod has failed, waiting for recovery", stamp)
    else:
        _set(conds, "PodsReady", False, "WaitForStart", "Not all pods are ready or succeeded", stamp)


def place(result: Plan, seen: KueueSeen | None) -> Plan:
    """The admitted flavor's node labels and tolerations on every worker this pass creates."""
    view = seen.workload if seen else None
    if view is not None and (view.node_selector or view.tolerations):
        result.create = [admit(o, view.node_selector, view.tolerations) for o in result.create]
    return result
