"""Running an epoch of a TrainingJob: create its missing workers (after the restart backoff), and report them:
ready count, PodsScheduled, Running, ReplicaFailure when the API server refused a create, success."""

from __future__ import annotations

from ..builders.gang import join, pod_group, pod_group_name
from ..builders.trainingjob import worker_pod
from ..constants import COND_GANG, COND_REPLICA_FAILURE, COND_RESTARTING, COND_RUNNING, COND_SCHEDULED
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
    _regroup(p, current, world)
    _gang(p, world)
    ready = sum(1 for q in current if q.phase == "Running" and q.ready and not q.deleting and q.rank < world)
    st.ready_replicas, st.ready = ready, ready_summary(ready, world)
    waiting = _scheduled(p, current, world)
    # a worker that finished first (exit 0) while its peers still run keeps a running job Running, also in the
    # second before its kubelet reports the pod Succeeded (phase still Running, not ready, exit code 0)
    done = sum(1 for q in current if _exited_zero(q) and not q.deleting and q.rank < world)
    if ready + len(ignored) >= world or (is_true(p.conditions, COND_RUNNING) and ready + done + len(ignored) >= world):
        _running(p, world)
    else:
        p.drop(COND_RUNNING, "WaitingForWorkers", f"{ready}/{world} workers running")
        if refused:
            st.message = f"cannot create workers: {refused}"
        elif not waiting and due <= 0:
            st.message = f"starting: {ready}/{world} workers running"
    return p.result()


def _exited_zero(q: PodView) -> bool:
    """The worker ended well: Succeeded, or its trainer terminated with exit code 0 before the pod's phase says so."""
    return q.phase == "Succeeded" or (q.phase == "Running" and q.exit_code == 0)


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
        shun = [last.peer_node] if last is not None and last.peer_node and last.peer_node not in avoid else []
        pods = [worker_pod(job, epoch, r, world, avoid, where, shun) for r in missing]
        if p.seen.gang == "podgroup":  # the group first; a pod may also come before its group (it then waits)
            group = pod_group(job, epoch, world)
            pods = [group, *(join(pod, group["metadata"]["name"]) for pod in pods)]
        p.plan.create += pods
        p.plan.first_pods_complete = epoch == 0 and not st.launched
        refused = p.seen.create_refused
    if refused:
        p.cond(COND_REPLICA_FAILURE, True, "FailedCreate", refused, warning=True)
    return due, refused


def _regroup(p: JobPass, current: list[PodView], world: int) -> None:
    """The epoch's PodGroup again while one of its workers waits unbound: a pass that created the pods but not
    the group (the API server failed that one request) left workers that wait for their group forever. A create of
    a group that exists is a 409, which is fine."""
    creates = p.plan.create
    if p.seen.gang != "podgroup" or any(o["kind"] == "PodGroup" for o in creates):
        return
    if any(q.phase == "Pending" and q.node is None and not q.deleting and q.rank < world for q in current):
        creates.insert(0, pod_group(p.job, p.status.restart_epoch or 0, world))


def _gang(p: JobPass, world: int) -> None:
    """GangScheduling: True with the epoch's PodGroup; False, once, where the cluster does not serve PodGroups."""
    job, epoch = p.job, p.status.restart_epoch or 0
    topology = job.spec.topology_key
    if p.seen.gang == "podgroup":
        name = pod_group_name(job.metadata["name"], epoch)
        where = f", all in one {topology} domain" if topology else ""
        text = f"epoch {epoch}: PodGroup {name}, minCount {world}{where}: all workers are bound at once or none is"
        p.cond(COND_GANG, True, "PodGroup", text)
    elif p.seen.gang == "unserved":
        text = (
            "the cluster does not serve scheduling.k8s.io/v1beta1 PodGroups (Kubernetes >= 1.37 with GenericWorkload): "
            "workers are scheduled one by one, and a job may hold some GPUs while the rest wait"
        )
        p.cond(COND_GANG, False, "APINotServed", text + ("; spec.topologyKey is not applied" if topology else ""))
    elif topology:
        p.cond(COND_GANG, False, "Disabled", "gang scheduling is off in the operator: spec.topologyKey is not applied")
    else:
        p.drop(COND_GANG, "Disabled", "gang scheduling is off in the operator")


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
