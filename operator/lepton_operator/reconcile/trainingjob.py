"""The TrainingJob decision: given the job, its pods, node health, free GPUs and the time, what to do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..api.base import Condition
from ..api.trainingjob import LastFailure, TrainingJob, TrainingJobStatus
from ..builders.names import pod_name, selector
from ..builders.trainingjob import headless_service, worker_pod
from ..constants import (
    COND_BAD_PROGRESS,
    COND_BUDGET,
    COND_FAILED,
    COND_INVALID,
    COND_REPLICA_FAILURE,
    COND_RESTARTING,
    COND_RUNNING,
    COND_SCHEDULED,
    COND_SUCCEEDED,
    COND_SUSPENDED,
)
from ..prices import DEFAULT_PRICES, PriceTable
from ..timestamps import rfc3339, seconds_since
from .conditions import is_true, ready_summary, set_condition
from .cost import COST_WRITE_INTERVAL, accrue, over_budget
from .failover import Action, Verdict, classify, worst
from .pricing import placement
from .progress import progress
from .views import NodeView, PodView

TERMINAL = ("Succeeded", "Failed")
GROW_RECHECK_SECONDS = 10.0  # how often an elastic job below its target looks for free GPUs


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Plan:
    """What one reconcile pass wants done. Applying it twice is harmless."""

    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)  # pod names
    force_delete: list[str] = field(default_factory=list)  # pods on lost nodes: no kubelet will confirm
    status: TrainingJobStatus | None = None  # the whole new status, stored exactly; None when unchanged
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None  # seconds until time alone changes the decision
    delete_job: bool = False
    new_epoch_reason: str | None = None  # a new epoch starts in this pass, and why
    first_pods_complete: bool = False  # this pass creates the last missing pod of the job's first epoch
    failover_seconds: float | None = None  # a restarted epoch became fully running: time since the failure

    def requeue(self, seconds: float) -> None:
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)


@dataclass(frozen=True)
class Observed:
    """What the operator saw besides the job itself."""

    pods: list[PodView]
    service_exists: bool = True
    lost_nodes: frozenset[str] = frozenset()  # NotReady, unreachable or deleted nodes
    capacity: int | None = None  # workers of this job's shape that fit if its own pods were gone; None = unknown
    nodes: Mapping[str, NodeView] = field(default_factory=dict)  # for prices: GPU product, spot or on-demand
    prices: PriceTable = field(default_factory=lambda: DEFAULT_PRICES)
    live_progress: dict[str, Any] | None = None  # rank 0's latest /progress document, when fetched
    live_progress_error: str | None = None  # why rank 0's last /progress reply was refused (too large, not JSON)
    create_refused: str | None = None  # the API server's answer when it last refused to create a child


def phase_of(conditions: list[Condition]) -> str:
    """Phase is derived from conditions, in order of precedence."""
    for cond, phase in (
        (COND_FAILED, "Failed"),
        (COND_SUCCEEDED, "Succeeded"),
        (COND_SUSPENDED, "Suspended"),
        (COND_RESTARTING, "Restarting"),
        (COND_RUNNING, "Running"),
    ):
        if is_true(conditions, cond):
            return phase
    return "Pending"


def backoff_seconds(job: TrainingJob, restarts: int) -> float:
    """Delay before the pods of the epoch started by the n-th counted restart: none for the first."""
    b = job.spec.failure_policy.backoff
    return 0.0 if restarts <= 1 else float(min(b.max_seconds, b.initial_seconds * (1 << min(restarts - 2, 20))))


def target_size(job: TrainingJob) -> int:
    """spec.replicas clamped to the elastic range."""
    return max(job.spec.min_size, min(job.spec.replicas, job.spec.max_size))


def fitting_size(job: TrainingJob, capacity: int | None) -> int:
    """The largest world size the free GPUs allow, within [min, target]; the target when unknown."""
    target = target_size(job)
    return target if capacity is None else max(job.spec.min_size, min(target, capacity))


class _Pass:
    """Working state of one decision; `plan()` below is the entry point."""

    def __init__(self, job: TrainingJob, seen: Observed, now: datetime) -> None:
        self.job, self.seen, self.now, self.stamp = job, seen, now, rfc3339(now)
        self.old = job.status
        self.status = job.status.model_copy(deep=True)
        self.conditions: list[Condition] = list(self.status.conditions or [])
        self.plan = Plan()
        self.generation = job.metadata.get("generation")
        self.cooling = False  # growth is waiting for the scale-up cooldown

    def cond(self, type_: str, status: bool, reason: str, message: str, warning: bool = False) -> None:
        t = set_condition(self.conditions, type_, status, reason, message, self.stamp, self.generation)
        if t is not None and (t.status == "True" or warning):
            self.plan.events.append(Event("Warning" if warning else "Normal", reason, message))

    def drop(self, type_: str, reason: str, message: str) -> None:
        """Set a condition False only if it is present (keeps fresh jobs' conditions short)."""
        if any(c.type == type_ for c in self.conditions):
            self.cond(type_, False, reason, message)

    def delete(self, pods: list[PodView]) -> None:
        for q in pods:
            if q.node and q.node in self.seen.lost_nodes:
                self.plan.force_delete.append(q.name)
            elif not q.deleting:
                self.plan.delete.append(q.name)

    def finish(self, succeeded: bool, reason: str, message: str, pods: list[PodView]) -> None:
        self.cond(COND_SUCCEEDED if succeeded else COND_FAILED, True, reason, message, warning=not succeeded)
        self.drop(COND_RUNNING, reason, message)
        self.drop(COND_RESTARTING, reason, message)
        self.drop(COND_REPLICA_FAILURE, reason, message)
        self.status.completion_time = self.stamp
        self.status.message = message
        self.status.ready_replicas = 0
        self.status.ready = ready_summary(0, self.status.replicas or target_size(self.job))
        self.delete([p for p in pods if p.phase not in TERMINAL])

    def record(self, v: Verdict) -> None:
        self.status.last_failure = LastFailure(
            pod=v.pod.name,
            node=v.pod.node,
            reason=v.reason,
            exit_code=v.pod.exit_code,
            message=(v.pod.message or "")[:1024] or None,
            action=v.action.value,
            counted=v.counts,
            time=self.stamp,
        )

    def create_epoch_pods(self, have: set[int]) -> None:
        st = self.status
        epoch, world = st.restart_epoch or 0, st.replicas or target_size(self.job)
        avoid = sorted(self.seen.lost_nodes)[:32]
        where = placement(self.job, self.seen.prices)
        missing = [r for r in range(world) if r not in have]
        self.plan.create += [worker_pod(self.job, epoch, r, world, avoid, where) for r in missing]
        self.plan.first_pods_complete = bool(missing) and epoch == 0 and not self.status.launched

    def new_epoch(self, reason: str, message: str, *, counts: bool, world: int) -> Plan:
        """Start the next epoch: this pass only stores it (two-phase, as JobSet persists restarts first).

        Deleting the old epoch's pods and creating the new one's happen in the passes after, which read the
        stored epoch: a failure half-way is retried at the same epoch, never undone or skipped ahead.
        """
        st = self.status
        st.restart_epoch = (st.restart_epoch or 0) + 1
        st.restarts = (st.restarts or 0) + (1 if counts else 0)
        st.replicas, st.ready_replicas, st.ready = world, 0, ready_summary(0, world)
        st.epoch_start_time = self.stamp
        st.launched = False
        st.message = f"restarting ({reason}): {message}"
        resized = reason == "Resized"
        self.plan.new_epoch_reason = reason
        self.plan.events.append(
            Event("Normal" if resized else "Warning", reason, f"epoch {st.restart_epoch}: {message}")
        )
        set_condition(self.conditions, COND_RESTARTING, True, reason, message, self.stamp, self.generation)
        self.drop(COND_RUNNING, reason, message)
        self.plan.delete, self.plan.force_delete, self.plan.create = [], [], []
        self.plan.requeue(0.0)  # act on the stored epoch at once
        return self.result()

    def result(self) -> Plan:
        self.status.conditions = self.conditions
        self.status.phase = phase_of(self.conditions)  # type: ignore[assignment]
        self.status.observed_generation = self.generation
        self.status.selector = selector(self.job.metadata["name"])
        new, old = self.status.to_wire(), self.old.to_wire()
        changed = new != old
        if changed and _stable(new) == _stable(old):
            # Only cost or progress moved: refresh them every COST_WRITE_INTERVAL, not on every pass.
            last = self.old.cost.last_accrual if self.old.cost else None
            changed = not (last and seconds_since(last, self.now) < COST_WRITE_INTERVAL)
        if changed:
            self.plan.status = self.status
        if self.status.cost and self.status.cost.rate_usd_per_hour != "0.00":
            self.plan.requeue(COST_WRITE_INTERVAL)
        return self.plan


VOLATILE = ("cost", "progress")  # change on every pass while a job runs: written at most every 30 s


def _stable(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k not in VOLATILE}


def plan(job: TrainingJob, seen: Observed, now: datetime) -> Plan:
    """Decide one pass for a job. Level-based: the same inputs always give the same plan."""
    p = _Pass(job, seen, now)
    spec, st = job.spec, p.status
    if not spec.managed_here():
        return Plan()
    if not seen.service_exists:
        p.plan.create.append(headless_service(job))

    p.drop(COND_INVALID, "ValidSpec", "the spec is valid")
    epoch = st.restart_epoch = st.restart_epoch or 0
    st.restarts = st.restarts or 0
    current = [q for q in seen.pods if q.epoch == epoch]
    # Old epochs' pods go, except the finished pods of the previous epoch: they hold no GPUs, and
    # `kubectl logs` of the worker that failed is what a person looks at first.
    p.delete([q for q in seen.pods if q.epoch != epoch and (q.phase not in TERMINAL or q.epoch < epoch - 1)])

    if is_true(p.conditions, COND_SUCCEEDED) or is_true(p.conditions, COND_FAILED):
        p.delete([q for q in current if q.phase not in TERMINAL])
        ttl = spec.ttl_seconds_after_finished
        if ttl is not None and st.completion_time:
            left = ttl - seconds_since(st.completion_time, now)
            if left <= 0:
                p.plan.delete_job = True
            else:
                p.plan.requeue(left)
        return p.result()

    report = progress(current, seen.live_progress)
    if report.progress is not None:
        st.progress = report.progress
    _report_problems(p, [*report.problems, *filter(None, [seen.live_progress_error])])
    eta = st.progress.eta_seconds if st.progress and st.progress.source == "endpoint" else None
    st.cost = accrue(job, seen.pods, seen.nodes, seen.prices, now, eta)
    budget_stop = over_budget(job, st.cost)
    rate = float(st.cost.rate_usd_per_hour)
    if spec.budget and rate > 0 and not budget_stop:  # look again when the budget would run out
        p.plan.requeue(max(1.0, (spec.budget.max_usd - st.cost.accrued_usd) / rate * 3600))
    if budget_stop:
        p.cond(COND_BUDGET, True, "BudgetExceeded", budget_stop, warning=True)
    else:
        p.drop(COND_BUDGET, "WithinBudget", "cost is within spec.budget")
    if spec.suspend or budget_stop:
        p.delete(current)
        st.launched = False  # the pods are gone on purpose: resuming creates them, it is no failure
        why = budget_stop or "spec.suspend is true"
        p.cond(COND_SUSPENDED, True, "BudgetExceeded" if budget_stop else "Suspended", f"{why}: pods deleted")
        p.drop(COND_RUNNING, "Suspended", "job is suspended")
        p.drop(COND_RESTARTING, "Suspended", "job is suspended")
        p.drop(COND_REPLICA_FAILURE, "Suspended", "job is suspended")
        st.start_time = None
        st.ready_replicas = 0
        st.ready = ready_summary(0, st.replicas or target_size(job))
        st.message = f"suspended: {why}"
        return p.result()
    p.drop(COND_SUSPENDED, "Resumed", "spec.suspend is false and the cost is within budget")

    deadline = spec.active_deadline_seconds
    if deadline is not None and st.start_time:
        left = deadline - seconds_since(st.start_time, now)
        if left <= 0:
            p.finish(False, "DeadlineExceeded", f"job ran longer than activeDeadlineSeconds={deadline}", current)
            return p.result()
        p.plan.requeue(left)

    if st.replicas is None:  # first pass: start as large as the free GPUs allow
        st.replicas = fitting_size(job, seen.capacity)
        st.epoch_start_time = p.stamp
    world = st.replicas

    # Failures: failed pods, live pods on lost nodes, and pods that vanished from a running epoch.
    # Failures: failed pods, live pods on lost nodes, and pods deleted or vanished from under a launched epoch
    # (the operator itself deletes pods only when it leaves the epoch, or ranks beyond the world size).
    suspects = [q for q in current if q.phase == "Failed" or (q.node in seen.lost_nodes and q.phase not in TERMINAL)]
    suspects += [
        replace(q, phase="Failed", reason=q.reason or "PodLost")
        for q in current
        if q.deleting and q.rank < world and q.phase not in TERMINAL and q.node not in seen.lost_nodes
    ]
    if st.launched:
        have = {q.rank for q in current}
        suspects += [
            PodView(
                name=pod_name(job.metadata["name"], epoch, r), epoch=epoch, rank=r, phase="Failed", reason="PodLost"
            )
            for r in range(world)
            if r not in have
        ]
    verdicts = [classify(q, spec.failure_policy, seen.lost_nodes) for q in suspects]
    ignored = {v.pod.rank for v in verdicts if v.action is Action.IGNORE}
    decisive = worst([v for v in verdicts if v.action is not Action.IGNORE])
    if decisive is not None:
        p.record(decisive)
        if decisive.action is Action.FAIL:
            p.finish(False, decisive.reason, decisive.message, current)
            return p.result()
        budget = spec.failure_policy.max_restarts
        if decisive.counts and st.restarts >= budget:
            p.finish(
                False, "BackoffLimitExceeded", f"{budget} restarts used; last failure: {decisive.message}", current
            )
            return p.result()
        size = fitting_size(job, seen.capacity)
        return p.new_epoch(decisive.reason, decisive.message, counts=decisive.counts, world=size)

    # Resizing: kubectl scale, growth into freed GPUs, shrinking when workers cannot be placed.
    target, low = target_size(job), spec.min_size
    if current:
        resize = _resize(p, current, world, target, low)
        if resize is not None:
            size, why = resize
            return p.new_epoch("Resized", f"world size {world} -> {size}: {why}", counts=False, world=size)
    if world < target and not p.cooling:
        p.plan.requeue(GROW_RECHECK_SECONDS)

    done = {q.rank for q in current if q.phase == "Succeeded"} | ignored
    if done >= set(range(world)) and any(q.phase == "Succeeded" for q in current):
        p.finish(True, "Succeeded", f"all {world} workers succeeded", current)
        return p.result()

    have = {q.rank for q in current}
    st.launched = st.launched or set(range(world)) <= have
    p.delete([q for q in current if q.rank >= world])
    last = st.last_failure
    due = 0.0 if last is None or not last.counted else backoff_seconds(job, st.restarts) - seconds_since(last.time, now)
    refused = None
    if len(have & set(range(world))) < world:
        if due > 0:
            p.plan.requeue(due)
            st.message = f"backing off {due:.0f}s before epoch {epoch} (restart {st.restarts})"
        else:
            p.create_epoch_pods(have)
            refused = seen.create_refused
    else:
        p.drop(COND_REPLICA_FAILURE, "AllCreated", f"all {world} workers of epoch {epoch} exist")
    if refused:
        p.cond(COND_REPLICA_FAILURE, True, "FailedCreate", refused, warning=True)

    ready = sum(1 for q in current if q.phase == "Running" and q.ready and not q.deleting and q.rank < world)
    st.ready_replicas, st.ready = ready, ready_summary(ready, world)
    unschedulable = next((q for q in current if q.unschedulable), None)
    if unschedulable:
        at_min = " (at minReplicas: waiting)" if world == low and low < target else ""
        text = f"{unschedulable.name}: {unschedulable.unschedulable}{at_min}"
        p.cond(COND_SCHEDULED, False, "Unschedulable", text, warning=True)
        st.message = f"waiting for GPUs: {unschedulable.unschedulable}{at_min}"
    elif len(current) >= world and all(q.node for q in current if q.rank < world):
        p.cond(COND_SCHEDULED, True, "AllScheduled", f"all {world} workers are bound to nodes")
    if ready + len(ignored) >= world:
        if not is_true(p.conditions, COND_RUNNING) and last is not None and last.action == "RestartJob" and epoch > 0:
            p.plan.failover_seconds = seconds_since(last.time, now)
        p.cond(COND_RUNNING, True, "AllWorkersRunning", f"all {world} workers of epoch {epoch} are running")
        p.drop(COND_RESTARTING, "AllWorkersRunning", f"epoch {epoch} is running")
        st.start_time = st.start_time or p.stamp
        st.message = f"running {world} workers" + (f" (target {target})" if world < target else "")
    else:
        p.drop(COND_RUNNING, "WaitingForWorkers", f"{ready}/{world} workers running")
        if refused:
            st.message = f"cannot create workers: {refused}"
        elif not unschedulable and due <= 0:
            st.message = f"starting: {ready}/{world} workers running"
    return p.result()


def _report_problems(p: _Pass, problems: list[str]) -> None:
    """Bad data from the trainer: a condition and a Warning Event (once), the rest of the pass goes on."""
    if problems:
        text = "; ".join(problems)[:1024]
        p.cond(COND_BAD_PROGRESS, True, "InvalidProgress", f"progress fields left out: {text}", warning=True)
    else:
        p.drop(COND_BAD_PROGRESS, "ValidProgress", "the trainer's progress reports are valid")


def _resize(p: _Pass, current: list[PodView], world: int, target: int, low: int) -> tuple[int, str] | None:
    """A new world size for the running job, or None to keep it."""
    job, seen, now = p.job, p.seen, p.now
    if world > target:
        return target, "spec.replicas lowered"
    if world < low:
        return fitting_size(job, seen.capacity), "spec.minReplicas raised"
    timeout = job.spec.elastic_policy.unschedulable_timeout_seconds
    waiting = {q.rank: seconds_since(q.created, now) for q in current if q.unschedulable and q.created}
    stuck = [r for r, age in waiting.items() if age >= timeout]
    if stuck and world > low:
        placed = sum(1 for q in current if q.node)
        return max(low, min(placed, world - len(stuck))), f"{len(stuck)} workers unschedulable for {timeout}s"
    if waiting and world > low:
        p.plan.requeue(max(0.1, timeout - max(waiting.values())))
    seen_gen = p.old.observed_generation
    user_scaled = seen_gen is not None and p.generation is not None and seen_gen != p.generation
    free = seen.capacity
    if world < target and ((free is not None and free > world) or (free is None and user_scaled)):
        cooldown = job.spec.elastic_policy.scale_up_cooldown_seconds
        age = seconds_since(p.status.epoch_start_time, now) if p.status.epoch_start_time else cooldown
        if user_scaled or (age >= cooldown and all(q.phase == "Running" for q in current)):
            why = "spec.replicas raised" if user_scaled else "more GPUs are free"
            return (target if free is None else max(world, min(target, free))), why
        p.plan.requeue(max(0.1, cooldown - age))
        p.cooling = True
    return None


__all__ = ["Event", "Observed", "Plan", "phase_of", "plan", "rfc3339"]
