"""The Kueue policy of a queued TrainingJob (reconcile/kueue.py) and its Workload (builders/workload.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lepton_operator.api.trainingjob import TrainingJob
from lepton_operator.builders.workload import QUEUE_LABEL, workload, workload_name
from lepton_operator.reconcile.kueue import KueueSeen, WorkloadView
from lepton_operator.reconcile.trainingjob import Observed, Plan
from lepton_operator.reconcile.trainingjob import plan as decide
from lepton_operator.reconcile.views import PodView
from lepton_trainer import contract

from .jobs import NOW, job_body, pod, running, wire

ADMITTED_AT = "2026-11-23T11:59:00Z"


def queued(status: dict[str, Any] | None = None, labels: dict[str, str] | None = None, **spec: Any) -> TrainingJob:
    body = job_body(status, **spec)
    body["metadata"]["labels"] = {QUEUE_LABEL: "team-a", **(labels or {})}
    return TrainingJob.model_validate(body)


def cond(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), None)


def wl_status(*conds: tuple[str, str, str, str], count: int | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {
        "conditions": [
            {"type": t, "status": s, "reason": r, "message": m, "lastTransitionTime": ADMITTED_AT}
            for t, s, r, m in conds
        ]
    }
    if any(t == "QuotaReserved" and s == "True" for t, s, _, _ in conds):
        psa: dict[str, Any] = {"name": "workers", "flavors": {"nvidia.com/gpu": "h100"}}
        if count is not None:
            psa["count"] = count
        status["admission"] = {"clusterQueue": "gpus", "podSetAssignments": [psa]}
    return status


ADMITTED = (("QuotaReserved", "True", "QuotaReserved", "quota reserved"), ("Admitted", "True", "Admitted", "ok"))
PENDING = (
    "QuotaReserved",
    "False",
    "Pending",
    "couldn't assign flavors to pod set workers: insufficient unused quota for nvidia.com/gpu in flavor h100, "
    "8 more needed",
)


def view(job: TrainingJob, status: dict[str, Any], **kw: Any) -> KueueSeen:
    return KueueSeen(WorkloadView(workload_name(job), "5", status, 1, **kw), slices=True)


def plan(job: TrainingJob, pods: list[PodView], seen: KueueSeen | None) -> Plan:
    return decide(job, Observed(pods, True, kueue=seen), NOW)


def test_the_workload_follows_the_job() -> None:
    job = queued(replicas=4, minReplicas=2, maxReplicas=4, labels={"kueue.x-k8s.io/priority-class": "high"})
    wl = workload(job, 1000)
    ps = wl["spec"]["podSets"][0]
    assert wl["spec"]["queueName"] == "team-a" and wl["spec"]["priority"] == 1000
    assert wl["spec"]["priorityClassRef"] == {
        "group": "kueue.x-k8s.io",
        "kind": "WorkloadPriorityClass",
        "name": "high",
    }
    assert (ps["name"], ps["count"], ps["minCount"]) == ("workers", 4, 2)
    trainer = ps["template"]["spec"]["containers"][0]
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == "4"
    owner = wl["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "TrainingJob" and owner["controller"] is True
    assert wl["metadata"]["labels"]["kueue.x-k8s.io/job-uid"] == "uid-1"
    assert "minCount" not in workload(queued(), None)["spec"]["podSets"][0]
    assert len(workload_name(queued())) <= 63


def test_a_queued_job_without_workload_creates_it_and_no_pod() -> None:
    job = queued()
    p = plan(job, [], KueueSeen(None))
    assert p.workload_create is not None and p.workload_create["metadata"]["name"] == workload_name(job)
    assert [o["kind"] for o in p.create] == []
    assert cond(wire(p), "Admitted")["status"] == "False"


def test_a_pending_workload_says_why_in_the_jobs_status() -> None:
    job = queued()
    p = plan(job, [], view(job, wl_status(PENDING)))
    admitted = cond(wire(p), "Admitted")
    assert admitted["status"] == "False" and admitted["reason"] == "Pending"
    assert "insufficient unused quota for nvidia.com/gpu" in admitted["message"]
    assert p.create == [] and wire(p)["phase"] == "Pending" and "waiting for Kueue" in wire(p)["message"]


def test_an_admitted_job_starts_with_the_flavors_node_labels_and_tolerations() -> None:
    job = queued()
    tol = {"key": "pool", "operator": "Equal", "value": "h100", "effect": "NoSchedule"}
    p = plan(job, [], view(job, wl_status(*ADMITTED), node_selector={"pool": "h100"}, tolerations=[tol]))
    pods = [o for o in p.create if o["kind"] == "Pod"]
    assert len(pods) == 2
    assert all(q["spec"]["nodeSelector"]["pool"] == "h100" and tol in q["spec"]["tolerations"] for q in pods)
    assert cond(wire(p), "Admitted")["status"] == "True"


def test_partial_admission_sets_the_world_size() -> None:
    job = queued(replicas=4, minReplicas=2, maxReplicas=4)
    p = plan(job, [], view(job, wl_status(*ADMITTED, count=3)))
    assert wire(p)["replicas"] == 3
    assert sorted(o["metadata"]["name"] for o in p.create if o["kind"] == "Pod") == [f"mnist-0-{r}" for r in range(3)]
    env = {e["name"]: e.get("value") for e in p.create[0]["spec"]["containers"][0]["env"]}
    assert env[contract.NNODES] == "3:3" and env[contract.REPLICAS] == "3"


def test_eviction_stops_the_workers_then_releases_the_quota() -> None:
    job = queued(status={"replicas": 2, "restartEpoch": 0, "restarts": 0, "launched": True})
    evicted = ("Evicted", "True", "Preempted", "Preempted to accommodate a workload with higher priority")
    st = wl_status(*ADMITTED, evicted)
    p = plan(job, running(job), view(job, st))
    assert sorted(p.delete) == ["mnist-0-0", "mnist-0-1"]
    assert cond(wire(p), "Admitted")["reason"] == "EvictedPreempted"
    assert p.workload_status is None or "admission" in p.workload_status.status  # pods still there: kept
    after = queued(status=p.status.to_wire() if p.status else None)
    done = plan(after, [], view(after, st))
    assert done.create == [] and done.workload_status is not None
    new = done.workload_status.status
    assert "admission" not in new
    assert cond(new, "QuotaReserved")["status"] == "False" and cond(new, "QuotaReserved")["reason"] == "Pending"
    assert cond(new, "Requeued")["status"] == "True" and cond(new, "Admitted")["status"] == "False"
    assert (wire(done) or p.status.to_wire())["restarts"] == 0


def test_readmitted_job_restarts_at_the_same_epoch_without_counting_a_restart() -> None:
    job = queued(status={"replicas": 2, "restartEpoch": 0, "restarts": 0, "launched": False})
    p = plan(job, [], view(job, wl_status(*ADMITTED)))
    assert sorted(o["metadata"]["name"] for o in p.create if o["kind"] == "Pod") == ["mnist-0-0", "mnist-0-1"]
    assert wire(p).get("restarts", 0) == 0


def test_readmitted_while_the_evicted_workers_still_terminate_waits_for_them_without_a_restart() -> None:
    """On real nodes an evicted worker exits 143 after its checkpoint and lingers (Failed, or still running out its
    grace period) until the kubelet removes it: no failure, no new epoch; its name is the one to create next."""
    job = queued(status={"replicas": 2, "restartEpoch": 0, "restarts": 0, "launched": False})
    for phase, extra in (("Failed", {"exit_code": 143}), ("Running", {})):
        going = [replace(pod(job, 0, r, phase, **extra), deleting=True) for r in range(2)]
        p = plan(job, going, view(job, wl_status(*ADMITTED)))
        st = wire(p)
        assert p.create == [] and p.requeue_after is not None, phase
        assert st.get("restarts", 0) == 0 and st.get("restartEpoch", 0) == 0 and "lastFailure" not in st, st
        assert "stopped workers to exit" in st["message"] and not st.get("launched"), st
    p = plan(job, [], view(job, wl_status(*ADMITTED)))
    assert sorted(o["metadata"]["name"] for o in p.create if o["kind"] == "Pod") == ["mnist-0-0", "mnist-0-1"]


def test_pods_ready_and_finished_reach_the_workload() -> None:
    job = queued()
    first = plan(job, running(job), view(job, wl_status(*ADMITTED)))
    assert first.workload_status is not None
    assert cond(first.workload_status.status, "PodsReady")["status"] == "True"
    done = queued(status={"replicas": 2, "conditions": [], "launched": True})
    p = plan(done, [pod(done, 0, r, "Succeeded") for r in range(2)], view(done, wl_status(*ADMITTED)))
    assert p.workload_status is not None
    finished = cond(p.workload_status.status, "Finished")
    assert finished is not None and finished["status"] == "True" and finished["reason"] == "Succeeded"


def test_a_job_without_the_queue_label_is_not_gated() -> None:
    p = plan(queued(labels={QUEUE_LABEL: ""}), [], None)
    assert len([o for o in p.create if o["kind"] == "Pod"]) == 2 and p.workload_create is None


def elastic(**status: Any) -> TrainingJob:
    st = {"replicas": 3, "restartEpoch": 0, "restarts": 0, "launched": True, **status}
    return queued(st, replicas=4, minReplicas=2, maxReplicas=4, gpusPerReplica=2)


def test_an_elastic_job_admitted_below_target_asks_for_a_growth_slice_after_the_cooldown() -> None:
    job = elastic(epochStartTime="2026-11-23T11:00:00Z")
    pods = [pod(job, 0, r) for r in range(3)]
    p = plan(job, pods, view(job, wl_status(*ADMITTED, count=3)))
    assert p.create == [] and p.delete == [] and p.new_epoch_reason is None
    grow = p.workload_create
    assert grow is not None and grow["metadata"]["name"] == workload_name(job, 1)
    assert (
        grow["metadata"]["annotations"]["kueue.x-k8s.io/workload-slice-replacement-for"] == f"ml/{workload_name(job)}"
    )
    assert grow["spec"]["podSets"][0]["count"] == 4 and "minCount" not in grow["spec"]["podSets"][0]
    cooling = plan(elastic(epochStartTime="2026-11-23T11:59:50Z"), pods, view(job, wl_status(*ADMITTED, count=3)))
    assert cooling.workload_create is None and cooling.requeue_after is not None
    no_gate = KueueSeen(view(job, wl_status(*ADMITTED, count=3)).workload, slices=False)
    assert plan(job, pods, no_gate).workload_create is None  # without Kueue's slices gate: never a second Workload


def test_a_pending_growth_slice_is_reported_and_not_asked_for_twice() -> None:
    job = elastic(epochStartTime="2026-11-23T11:00:00Z")
    growth = WorkloadView(workload_name(job, 1), "9", wl_status(PENDING), slice_index=1)
    seen = KueueSeen(view(job, wl_status(*ADMITTED, count=3)).workload, None, growth)
    p = plan(job, [pod(job, 0, r) for r in range(3)], seen)
    assert p.workload_create is None
    assert "growth to 4: waiting for Kueue: couldn't assign flavors" in cond(wire(p), "Admitted")["message"]


def test_an_admitted_growth_slice_resizes_the_job_without_a_restart() -> None:
    job = elastic(epochStartTime="2026-11-23T11:00:00Z")
    grown = KueueSeen(WorkloadView(workload_name(job, 1), "9", wl_status(*ADMITTED, count=4), slice_index=1))
    p = plan(job, [pod(job, 0, r) for r in range(3)], grown)
    assert p.new_epoch_reason == "Resized"
    assert wire(p)["replicas"] == 4 and wire(p)["restartEpoch"] == 1 and wire(p)["restarts"] == 0


def test_the_workers_stay_while_kueue_hands_over_to_the_growth_slice() -> None:
    job = elastic(epochStartTime="2026-11-23T11:00:00Z")
    pods = [pod(job, 0, r) for r in range(3)]
    handing = WorkloadView(workload_name(job, 1), "9", wl_status(PENDING), slice_index=1)
    held = plan(job, pods, KueueSeen(handing, None, None, "2026-11-23T11:59:58Z"))
    assert held.delete == [] and held.create == [] and held.requeue_after is not None
    late = plan(job, pods, KueueSeen(handing, None, None, "2026-11-23T11:59:00Z"))
    assert sorted(late.delete) == ["mnist-0-0", "mnist-0-1", "mnist-0-2"]


def test_a_pending_growth_slice_finishes_with_its_job() -> None:
    job = elastic(epochStartTime="2026-11-23T11:00:00Z")
    growth = WorkloadView(workload_name(job, 1), "9", wl_status(PENDING), slice_index=1)
    seen = KueueSeen(view(job, wl_status(*ADMITTED, count=3)).workload, None, growth)
    p = plan(job, [pod(job, 0, r, "Succeeded") for r in range(3)], seen)
    assert p.growth_status is not None and p.growth_status.name == workload_name(job, 1)
    assert cond(p.growth_status.status, "Finished")["status"] == "True"
    assert plan(job, running(job)[:3], seen).growth_status is None


def test_a_suspended_job_deactivates_its_workload_and_a_resumed_one_activates_it() -> None:
    job = queued(status={"replicas": 2, "launched": True}, suspend=True)
    p = plan(job, running(job), view(job, wl_status(*ADMITTED)))
    assert p.workload_active == (workload_name(job), False) and sorted(p.delete) == ["mnist-0-0", "mnist-0-1"]
    resumed = queued(status=p.status.to_wire() if p.status else None)
    inactive = KueueSeen(WorkloadView(workload_name(job), "6", wl_status(PENDING), 1, active=False))
    assert plan(resumed, [], inactive).workload_active == (workload_name(job), True)
    assert plan(queued(), [], view(job, wl_status(PENDING))).workload_active is None
