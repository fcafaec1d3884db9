"""Lifecycle policy of a TrainingJob: a finished job's TTL, suspension (by the user or the budget), the
active deadline. Each returns whether the pass ends here."""

from __future__ import annotations

from ..constants import COND_FAILED, COND_SUCCEEDED, COND_SUSPENDED
from ..timestamps import seconds_since
from .conditions import is_true
from .status import TERMINAL, JobPass
from .views import PodView


def finished(p: JobPass, current: list[PodView]) -> bool:
    """A finished job keeps no live pod, and is deleted `ttlSecondsAfterFinished` after its completion."""
    if not (is_true(p.conditions, COND_SUCCEEDED) or is_true(p.conditions, COND_FAILED)):
        return False
    p.delete([q for q in current if q.phase not in TERMINAL])
    ttl, done = p.job.spec.ttl_seconds_after_finished, p.status.completion_time
    if ttl is not None and done:
        left = ttl - seconds_since(done, p.now)
        if left <= 0:
            p.plan.delete_job = True
        else:
            p.plan.requeue(left)
    return True


def suspended(p: JobPass, current: list[PodView], budget_stop: str | None) -> bool:
    """spec.suspend or a spent budget: every pod of the epoch goes; resuming creates them again."""
    if not (p.job.spec.suspend or budget_stop):
        p.drop(COND_SUSPENDED, "Resumed", "spec.suspend is false and the cost is within budget")
        return False
    p.delete(current)
    why = budget_stop or "spec.suspend is true"
    p.cond(COND_SUSPENDED, True, "BudgetExceeded" if budget_stop else "Suspended", f"{why}: pods deleted")
    p.stop_workers("Suspended", "job is suspended", [])
    st = p.status
    st.launched = False  # the pods are gone on purpose: resuming creates them, it is no failure
    st.start_time = None
    st.message = f"suspended: {why}"
    return True


def deadline_passed(p: JobPass, current: list[PodView]) -> bool:
    """A job running longer than activeDeadlineSeconds fails; before that, look again when it would."""
    deadline, started = p.job.spec.active_deadline_seconds, p.status.start_time
    if deadline is None or not started:
        return False
    left = deadline - seconds_since(started, p.now)
    if left <= 0:
        p.finish(False, "DeadlineExceeded", f"job ran longer than activeDeadlineSeconds={deadline}", current)
        return True
    p.plan.requeue(left)
    return False
