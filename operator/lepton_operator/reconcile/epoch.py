"""Running an epoch of a TrainingJob: create its missing workers (after the restart backoff), and report them:
ready count, PodsScheduled, Running, ReplicaFailure when the API server refused a create, success."""

from __future__ import annotations

from ..builders.trainingjob import worker_pod
from ..constants import COND_REPLICA_FAILURE, COND_RESTARTING, COND_RUNNING, COND_SCHEDULED
from ..timestamps import seconds_since
from .conditions import is_true, ready_summary
from .failover import backoff_seconds
from .plan import Plan
from .pricing import placement
from .status import JobPass
from .views import PodView


def all_succeeded(p: JobPass, current: list[PodView], world: int, ignored: set[int]) -> Plan | None:
    """Every rank succeeded (or its failure is ignored), at least one really: the job succeeded."""
    done = {q.rank for q in current if q.phase == "Succeeded"} | ignored
    if done >= set(range(world)) and any(q.phase == "Succeeded" for q in current):
        return p.finish(True, "Succeeded", f"all {world} workers succeeded", current)
    return None


def run(p: JobPass, current: list[PodView], world: int, ignored: set[int]) -> Plan:
    """Create what is missing, report what runs."""
    st = p.status
    have = {q.rank for q in current}
    st.launched = st.launched or set(range(world)) <= have
    p.delete([q for q in current if q.rank >= world])
    due, refused = _create_missing(p, have, world)
    ready = sum(1 for q in current if q.phase == "Running" and q.ready and not q.deleting and q.rank < world)
    st.ready_replicas, st.ready = ready, ready_summary(ready, world)
    waiting = _scheduled(p, current, world)
    if ready + len(ignored) >= world:
        _running(p, world)
    else:
        p.drop(COND_RUNNING, "WaitingForWorkers", f"{ready}/{world} workers running")
        if refused:
            st.message = f"cannot create workers: {refused}"
        elif not waiting and due <= 0:
            st.message = f"starting: {ready}/{world} workers running"
    return p.result()


def _create_missing(p: JobPass, have: set[int], world: int) -> tuple[float, str | None]:
    """Create the epoch's missing workers once the restart backoff is over. Returns the seconds of backoff
    left and the API server's refusal of the last create, if any."""
    st, job, epoch = p.status, p.job, p.status.restart_epoch or 0
    last = st.last_failure
    due = 0.0
    if last is not None and last.counted:
        due = backoff_seconds(job, st.restarts or 0) - seconds_since(last.time, p.now)
    refused = None
    missing = [r for r in range(world) if r not in have]
    if not missing:
        p.drop(COND_REPLICA_FAILURE, "AllCreated", f"all {world} workers of epoch {epoch} exist")
    elif due > 0:
        p.plan.requeue(due)
        st.message = f"backing off {due:.0f}s before epoch {epoch} (restart {st.restarts})"
    else:
        avoid, where = sorted(p.seen.lost_nodes)[:32], placement(job, p.seen.prices)
        p.plan.create += [worker_pod(job, epoch, r, world, avoid, where) for r in missing]
        p.plan.first_pods_complete = epoch == 0 and not st.launched
        refused = p.seen.create_refused
    if refused:
        p.cond(COND_REPLICA_FAILURE, True, "FailedCreate", refused, warning=True)
    return due, refused


def _scheduled(p: JobPass, current: list[PodView], world: int) -> bool:
    """PodsScheduled from the workers; True while one waits for GPUs."""
    spec = p.job.spec
    unschedulable = next((q for q in current if q.unschedulable), None)
    if unschedulable:
        low, target = spec.min_size, spec.target_size
        at_min = " (at minReplicas: waiting)" if world == low and low < target else ""
        text = f"{unschedulable.name}: {unschedulable.unschedulable}{at_min}"
        p.cond(COND_SCHEDULED, False, "Unschedulable", text, warning=True)
        p.status.message = f"waiting for GPUs: {unschedulable.unschedulable}{at_min}"
        return True
    if len(current) >= world and all(q.node for q in current if q.rank < world):
        p.cond(COND_SCHEDULED, True, "AllScheduled", f"all {world} workers are bound to nodes")
    return False


def _running(p: JobPass, world: int) -> None:
    """Every worker runs: Running, and the failover time when a restarted epoch just got there."""
    st, epoch, target, last = p.status, p.status.restart_epoch or 0, p.job.spec.target_size, p.status.last_failure
    if not is_true(p.conditions, COND_RUNNING) and last is not None and last.action == "RestartJob" and epoch > 0:
        p.plan.failover_seconds = seconds_since(last.time, p.now)
    p.cond(COND_RUNNING, True, "AllWorkersRunning", f"all {world} workers of epoch {epoch} are running")
    p.drop(COND_RESTARTING, "AllWorkersRunning", f"epoch {epoch} is running")
    st.start_time = st.start_time or p.stamp
    st.message = f"running {world} workers" + (f" (target {target})" if world < target else "")
