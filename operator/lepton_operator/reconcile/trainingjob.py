"""The TrainingJob decision: given the job, its pods and the time, what to create, delete and report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..api.base import Condition
from ..api.trainingjob import TrainingJob, TrainingJobStatus
from ..builders.names import selector
from ..builders.trainingjob import headless_service, worker_pod
from ..constants import (
    COND_FAILED,
    COND_RESTARTING,
    COND_RUNNING,
    COND_SCHEDULED,
    COND_SUCCEEDED,
    COND_SUSPENDED,
)
from .conditions import Transition, is_true, set_condition
from .failover import Action, classify
from .observe import PodView

TERMINAL = ("Succeeded", "Failed")


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
    status: dict[str, Any] | None = None  # the whole new status, or None when unchanged
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None  # seconds until time alone changes the decision
    delete_job: bool = False


def rfc3339(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds_since(ts: str, now: datetime) -> float:
    return (now - datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=now.tzinfo)).total_seconds()


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


class _Pass:
    """Working state of one decision; `plan()` below is the entry point."""

    def __init__(self, job: TrainingJob, now: datetime) -> None:
        self.job, self.now, self.stamp = job, now, rfc3339(now)
        self.old = job.status
        self.status = job.status.model_copy(deep=True)
        self.conditions: list[Condition] = list(self.status.conditions or [])
        self.plan = Plan()
        self.generation = job.metadata.get("generation")

    def cond(self, type_: str, status: bool, reason: str, message: str, warning: bool = False) -> None:
        t: Transition | None = set_condition(
            self.conditions, type_, status, reason, message, self.stamp, self.generation
        )
        if t is not None and (t.status == "True" or warning):
            self.plan.events.append(Event("Warning" if warning else "Normal", reason, message))

    def drop(self, type_: str, reason: str, message: str) -> None:
        """Set a condition False only if it is present (keeps fresh jobs' conditions short)."""
        if any(c.type == type_ for c in self.conditions):
            self.cond(type_, False, reason, message)

    def delete(self, pods: list[PodView]) -> None:
        self.plan.delete += [p.name for p in pods if not p.deleting]

    def finish(self, succeeded: bool, reason: str, message: str, pods: list[PodView]) -> None:
        self.cond(COND_SUCCEEDED if succeeded else COND_FAILED, True, reason, message, warning=not succeeded)
        self.drop(COND_RUNNING, reason, message)
        self.drop(COND_RESTARTING, reason, message)
        self.status.completion_time = self.stamp
        self.status.message = message
        self.delete([p for p in pods if p.phase not in TERMINAL])

    def result(self) -> Plan:
        self.status.conditions = self.conditions
        self.status.phase = phase_of(self.conditions)  # type: ignore[assignment]
        self.status.observed_generation = self.generation
        self.status.selector = selector(self.job.metadata["name"])
        new = self.status.to_wire()
        if new != self.old.to_wire():
            self.plan.status = new
        return self.plan


def _world_size(job: TrainingJob) -> int:
    """Workers wanted for the next epoch (clamped to the elastic range)."""
    return max(job.spec.min_size, min(job.spec.replicas, job.spec.max_size))


def plan(job: TrainingJob, pods: list[PodView], service_exists: bool, now: datetime) -> Plan:
    """Decide one pass for a job. Level-based: the same inputs always give the same plan."""
    p = _Pass(job, now)
    spec, status = job.spec, p.status
    if not spec.managed_here():
        return Plan()
    if not service_exists:
        p.plan.create.append(headless_service(job))

    epoch = status.restart_epoch or 0
    status.restart_epoch = epoch
    status.restarts = status.restarts or 0
    current = [q for q in pods if q.epoch == epoch]
    p.delete([q for q in pods if q.epoch != epoch])

    if is_true(p.conditions, COND_SUCCEEDED) or is_true(p.conditions, COND_FAILED):
        p.delete([q for q in current if q.phase not in TERMINAL])
        ttl = spec.ttl_seconds_after_finished
        if ttl is not None and status.completion_time:
            left = ttl - _seconds_since(status.completion_time, now)
            if left <= 0:
                p.plan.delete_job = True
            else:
                p.plan.requeue_after = left
        return p.result()

    if spec.suspend:
        p.delete(current)
        p.cond(COND_SUSPENDED, True, "Suspended", "spec.suspend is true: pods deleted, status kept")
        p.drop(COND_RUNNING, "Suspended", "job is suspended")
        p.drop(COND_RESTARTING, "Suspended", "job is suspended")
        status.start_time = None
        status.ready_replicas = 0
        status.ready = f"0/{status.replicas or _world_size(job)}"
        status.message = "suspended"
        return p.result()
    p.drop(COND_SUSPENDED, "Resumed", "spec.suspend is false")

    deadline = spec.active_deadline_seconds
    if deadline is not None and status.start_time:
        left = deadline - _seconds_since(status.start_time, now)
        if left <= 0:
            p.finish(False, "DeadlineExceeded", f"job ran longer than activeDeadlineSeconds={deadline}", current)
            return p.result()
        p.plan.requeue_after = left

    world = status.replicas or _world_size(job)
    failed = sorted((q for q in current if q.phase == "Failed"), key=lambda q: q.rank)
    if failed:
        verdict = classify(failed[0])
        if verdict.action is Action.FAIL:
            p.finish(False, verdict.reason, verdict.message, current)
            return p.result()
        if verdict.action is Action.RESTART:
            budget = spec.failure_policy.max_restarts
            if verdict.counts and status.restarts >= budget:
                p.finish(
                    False,
                    "BackoffLimitExceeded",
                    f"{budget} restarts used; last failure: {verdict.message}",
                    current,
                )
                return p.result()
            return _new_epoch(p, current, verdict.reason, verdict.message, counts=verdict.counts)

    wanted = _world_size(job)
    if current and wanted != world:
        return _new_epoch(p, current, "Resized", f"world size {world} -> {wanted}", counts=False, world=wanted)
    world = wanted if not current else world
    status.replicas = world

    if {q.rank for q in current if q.phase == "Succeeded"} >= set(range(world)):
        p.finish(True, "Succeeded", f"all {world} workers succeeded", current)
        status.ready_replicas = 0
        status.ready = f"0/{world}"
        return p.result()

    have = {q.rank for q in current}
    p.plan.create += [worker_pod(job, epoch, r, world) for r in range(world) if r not in have]
    p.delete([q for q in current if q.rank >= world])

    ready = sum(1 for q in current if q.phase == "Running" and q.ready and not q.deleting and q.rank < world)
    status.ready_replicas = ready
    status.ready = f"{ready}/{world}"
    unschedulable = next((q for q in current if q.unschedulable), None)
    if unschedulable:
        p.cond(
            COND_SCHEDULED,
            False,
            "Unschedulable",
            f"{unschedulable.name}: {unschedulable.unschedulable}",
            warning=True,
        )
        status.message = f"waiting for GPUs: {unschedulable.unschedulable}"
    elif len(current) >= world and all(q.node for q in current):
        p.cond(COND_SCHEDULED, True, "AllScheduled", f"all {world} workers are bound to nodes")
    if ready == world:
        p.cond(COND_RUNNING, True, "AllWorkersRunning", f"all {world} workers of epoch {epoch} are running")
        p.drop(COND_RESTARTING, "AllWorkersRunning", f"epoch {epoch} is running")
        status.start_time = status.start_time or p.stamp
        status.message = f"running {world} workers"
    else:
        p.drop(COND_RUNNING, "WaitingForWorkers", f"{ready}/{world} workers running")
        if not unschedulable:
            status.message = f"starting: {ready}/{world} workers running"
    return p.result()


def _new_epoch(
    p: _Pass, current: list[PodView], reason: str, message: str, *, counts: bool, world: int | None = None
) -> Plan:
    """Replace every pod of the current epoch with the next epoch's (same pass: no extra round trip)."""
    status = p.status
    status.restart_epoch = (status.restart_epoch or 0) + 1
    if counts:
        status.restarts = (status.restarts or 0) + 1
    status.replicas = world or status.replicas or _world_size(p.job)
    status.ready_replicas = 0
    status.ready = f"0/{status.replicas}"
    status.message = f"restarting ({reason}): {message}"
    p.delete(current)
    p.plan.events.append(Event("Normal" if reason == "Resized" else "Warning", reason, f"new epoch: {message}"))
    set_condition(p.conditions, COND_RESTARTING, True, reason, message, p.stamp, p.generation)
    p.drop(COND_RUNNING, reason, message)
    epoch = status.restart_epoch
    p.plan.create += [worker_pod(p.job, epoch, r, status.replicas) for r in range(status.replicas)]
    return p.result()


__all__ = ["Event", "Plan", "TrainingJobStatus", "phase_of", "plan", "rfc3339"]
