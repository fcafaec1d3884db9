"""Elastic policy of a TrainingJob: the world size within [minReplicas, maxReplicas] from free GPUs, kubectl
scale, and workers that cannot be placed; and when a free-GPU estimate is worth asking for at all."""

from __future__ import annotations

from ..api.trainingjob import TrainingJob
from ..timestamps import seconds_since
from .plan import Plan
from .status import TERMINAL, JobPass
from .views import PodView

GROW_RECHECK_SECONDS = 10.0  # how often an elastic job below its target looks for free GPUs


def fitting_size(job: TrainingJob, capacity: int | None) -> int:
    """The largest world size the free GPUs allow, within [min, target]; the target when unknown."""
    target = job.spec.target_size
    return target if capacity is None else max(job.spec.min_size, min(target, capacity))


def own_gpus_if_resizable(job: TrainingJob, pods: list[PodView]) -> dict[str, int] | None:
    """GPUs per node held by the job's live pods of its epoch, when the job may change size (then a free-GPU
    estimate is worth a LIST of the cluster's pods); None when its size cannot change."""
    spec, st = job.spec, job.status
    if spec.min_size >= spec.target_size or spec.gpus_per_replica == 0:
        return None
    current = [q for q in pods if q.epoch == (st.restart_epoch or 0)]
    if st.replicas is not None and st.replicas >= spec.target_size and current:
        return None
    own: dict[str, int] = {}
    for q in current:
        if q.node and q.phase not in TERMINAL:
            own[q.node] = own.get(q.node, 0) + spec.gpus_per_replica
    return own


def first_size(p: JobPass) -> int:
    """The world size; on the first pass, as large as the free GPUs allow."""
    if p.status.replicas is None:
        p.status.replicas = fitting_size(p.job, p.seen.capacity)
        p.status.epoch_start_time = p.stamp
    return p.status.replicas


def resize(p: JobPass, current: list[PodView], world: int) -> Plan | None:
    """A new epoch of another size (kubectl scale, growth into freed GPUs, shrinking when workers cannot be
    placed), or None to keep the size."""
    target = p.job.spec.target_size
    if current and (found := new_size(p, current, world)) is not None:
        size, why = found
        return p.new_epoch("Resized", f"world size {world} -> {size}: {why}", counts=False, world=size)
    if world < target and not p.cooling:
        p.plan.requeue(GROW_RECHECK_SECONDS)
    return None


def new_size(p: JobPass, current: list[PodView], world: int) -> tuple[int, str] | None:
    """A new world size for the running job and why, or None to keep it."""
    job, seen, now = p.job, p.seen, p.now
    target, low = job.spec.target_size, job.spec.min_size
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
    return _grow(p, current, world)


def _grow(p: JobPass, current: list[PodView], world: int) -> tuple[int, str] | None:
    """Grow when spec.replicas was raised, or into free GPUs after the scale-up cooldown."""
    job, free, target = p.job, p.seen.capacity, p.job.spec.target_size
    seen_gen = p.old.observed_generation
    user_scaled = seen_gen is not None and p.generation is not None and seen_gen != p.generation
    if not (world < target and ((free is not None and free > world) or (free is None and user_scaled))):
        return None
    cooldown = job.spec.elastic_policy.scale_up_cooldown_seconds
    age = seconds_since(p.status.epoch_start_time, p.now) if p.status.epoch_start_time else cooldown
    if user_scaled or (age >= cooldown and all(q.phase == "Running" for q in current)):
        why = "spec.replicas raised" if user_scaled else "more GPUs are free"
        return (target if free is None else max(world, min(target, free))), why
    p.plan.requeue(max(0.1, cooldown - age))
    p.cooling = True
    return None
