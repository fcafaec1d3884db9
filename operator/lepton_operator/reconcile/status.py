"""A TrainingJob pass's working state: the new status, its conditions (with their Events), the phase derived
from them, and whether the result is worth a status write. Every policy module acts on a JobPass."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..api.base import Condition
from ..api.trainingjob import TrainingJob
from ..api.trainingjob_status import TrainingJobStatus
from ..builders.names import selector
from ..constants import (
    COND_FAILED,
    COND_REPLICA_FAILURE,
    COND_RESTARTING,
    COND_RUNNING,
    COND_SUCCEEDED,
    COND_SUSPENDED,
)
from ..timestamps import rfc3339, seconds_since
from .conditions import is_true, ready_summary, set_condition
from .cost import COST_WRITE_INTERVAL
from .plan import Event, Observed, Plan, aggregated
from .views import PodView

TERMINAL = ("Succeeded", "Failed")
VOLATILE = ("cost", "progress")  # change on every pass while a job runs: written at most every 30 s


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


class JobPass:
    """The job, what was seen, the time, and the status and plan being made."""

    def __init__(self, job: TrainingJob, seen: Observed, now: datetime) -> None:
        self.job, self.seen, self.now, self.stamp = job, seen, now, rfc3339(now)
        self.old = job.status
        self.status = job.status.model_copy(deep=True)
        self.conditions: list[Condition] = list(self.status.conditions or [])
        self.plan = Plan()
        self.generation = job.metadata.get("generation")
        self.cooling = False  # growth is waiting for the scale-up cooldown

    def cond(self, type_: str, status: bool, reason: str, message: str, warning: bool = False) -> None:
        """Set a condition; a transition to True (or any, for a warning) gets an Event."""
        t = set_condition(self.conditions, type_, status, reason, message, self.stamp, self.generation)
        if t is not None and (t.status == "True" or warning):
            self.plan.events.append(Event("Warning" if warning else "Normal", reason, message))

    def drop(self, type_: str, reason: str, message: str) -> None:
        """Set a condition False only if it is present (keeps fresh jobs' conditions short)."""
        if any(c.type == type_ for c in self.conditions):
            self.cond(type_, False, reason, message)

    def delete(self, pods: list[PodView]) -> None:
        """Delete pods; those on lost nodes forcibly (no kubelet will confirm)."""
        for q in pods:
            if q.node and q.node in self.seen.lost_nodes:
                self.plan.force_delete.append(q.name)
            elif not q.deleting:
                self.plan.delete.append(q.name)

    def stop_workers(self, reason: str, message: str, pods: list[PodView]) -> None:
        """No worker runs any more (finished or suspended): drop the running conditions, delete the live pods."""
        for type_ in (COND_RUNNING, COND_RESTARTING, COND_REPLICA_FAILURE):
            self.drop(type_, reason, message)
        self.status.ready_replicas = 0
        self.status.ready = ready_summary(0, self.status.replicas or self.job.spec.target_size)
        self.delete([p for p in pods if p.phase not in TERMINAL])

    def finish(self, succeeded: bool, reason: str, message: str, pods: list[PodView]) -> Plan:
        """The job ends: Succeeded or Failed, its live pods deleted."""
        self.cond(COND_SUCCEEDED if succeeded else COND_FAILED, True, reason, message, warning=not succeeded)
        self.stop_workers(reason, message, pods)
        self.status.completion_time = self.stamp
        self.status.message = message
        return self.result()

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
        """The plan, with the status when it changed (cost and progress alone: every COST_WRITE_INTERVAL)."""
        self.status.conditions = self.conditions
        self.status.phase = phase_of(self.conditions)  # type: ignore[assignment]
        self.status.observed_generation = self.generation
        self.status.selector = selector(self.job.metadata["name"])
        new, old = self.status.to_wire(), self.old.to_wire()
        changed = new != old
        if changed and _stable(new) == _stable(old):
            last = self.old.cost.last_accrual if self.old.cost else None
            changed = not (last and seconds_since(last, self.now) < COST_WRITE_INTERVAL)
        if changed:
            self.plan.status = self.status
        self.plan.events = aggregated(self.plan.events)
        if self.status.cost and self.status.cost.rate_usd_per_hour != "0.00":
            self.plan.requeue(COST_WRITE_INTERVAL)
        return self.plan


def _stable(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k not in VOLATILE}


def progress_only(before: TrainingJobStatus, p: Plan) -> bool:
    """The plan's status write only reports a new job's Pending progress (workers created, scheduled, ready
    counts): no warning, no new epoch, no spec change to acknowledge, still Pending. Such a write may wait for the
    next one (controller's status hold); the status is level-based, so the pass that writes recomputes it all."""
    st = p.status
    return (
        st is not None
        and st.phase == "Pending"
        and before.phase in (None, "Pending")
        and before.observed_generation in (None, st.observed_generation)
        and p.new_epoch_reason is None
        and not p.delete_job
        and all(e.type == "Normal" for e in p.events)
    )
