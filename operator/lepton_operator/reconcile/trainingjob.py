"""The TrainingJob decision: given the job, its pods, node health, free GPUs and the time, what to do.

One pass runs the policies in order; the first that decides the pass ends it: lifecycle (finished and TTL,
suspension, deadline), budget, failover, elastic sizing, then running the epoch. Each acts on a JobPass
(status.py), which turns what they did into a Plan with the exact new status.
"""

from __future__ import annotations

from datetime import datetime

from ..api.trainingjob import TrainingJob
from ..builders.trainingjob import headless_service
from ..constants import COND_INVALID
from ..timestamps import rfc3339
from . import dns, elastic, epoch, kueue, lifecycle
from .budget import charge
from .failover import backoff_seconds, handle_failures
from .plan import Event, Observed, Plan
from .progress import report_progress
from .status import TERMINAL, JobPass, phase_of
from .views import PodView


def plan(job: TrainingJob, seen: Observed, now: datetime) -> Plan:
    """Decide one pass for a job. Level-based: the same inputs always give the same plan."""
    if not job.spec.managed_here():
        return Plan()
    p = JobPass(job, seen, now)
    st = p.status
    if not seen.service_exists:
        p.plan.create.append(headless_service(job))
    p.drop(COND_INVALID, "ValidSpec", "the spec is valid")
    at = st.restart_epoch = st.restart_epoch or 0
    st.restarts = st.restarts or 0
    current = [q for q in seen.pods if q.epoch == at]
    # Old epochs' pods go, except the finished pods of the previous epoch: they hold no GPUs, and
    # `kubectl logs` of the worker that failed is what a person looks at first.
    p.delete([q for q in seen.pods if q.epoch != at and (q.phase not in TERMINAL or q.epoch < at - 1)])
    result = _decide(p, current)
    if not result.delete_job:
        dns.publish(job, seen.pods, p.status.restart_epoch or 0, seen.published, result)
    if seen.kueue is not None:
        result.workload_status = kueue.workload_status(p, current, now)
        result.growth_status = kueue.growth_status(p, now)
        result.workload_active = kueue.active(p)
    return kueue.place(result, seen.kueue)


def _decide(p: JobPass, current: list[PodView]) -> Plan:
    if lifecycle.finished(p, current):
        return p.result()
    report_progress(p, current)
    if lifecycle.suspended(p, current, charge(p)) or lifecycle.deadline_passed(p, current):
        return p.result()
    waits, admitted = kueue.gate(p, current)
    if waits or _stopped_workers_going(p, current):
        return p.result()
    world = admitted or elastic.first_size(p)
    decided, ignored = handle_failures(p, current, world)
    if admitted is None:  # under Kueue the size is the admitted count: no growth or shrinking of our own
        decided = decided or elastic.resize(p, current, world)
    decided = decided or epoch.all_succeeded(p, current, world, ignored)
    return decided or epoch.run(p, current, world, ignored)


def _stopped_workers_going(p: JobPass, current: list[PodView]) -> bool:
    """Workers stopped on purpose (suspension, a Kueue eviction: the epoch is not `launched`) can still be
    terminating when the job may run again (resumed, re-admitted): they are no failures (exit 143 after their
    checkpoint), and their names are the ones to create next. Wait until they are gone."""
    going = [q for q in current if q.deleting] if not p.status.launched else []
    if going:
        p.status.message = f"waiting for {len(going)} stopped workers to exit before starting them again"
        p.plan.requeue(1.0)
    return bool(going)


__all__ = ["Event", "Observed", "Plan", "backoff_seconds", "phase_of", "plan", "rfc3339"]
