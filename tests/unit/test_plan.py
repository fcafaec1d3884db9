"""The TrainingJob decision, table-driven: given these pods -> this plan and status."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from lepton_operator.api.trainingjob import TrainingJob
from lepton_operator.reconcile.trainingjob import Observed, Plan, rfc3339
from lepton_operator.reconcile.trainingjob import plan as decide
from lepton_operator.reconcile.views import PodView

from .jobs import NOW, make_job, pod, running, stored, wire


def cond(status: dict, type_: str) -> dict | None:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), None)


def plan(job: TrainingJob, pods: list[PodView], service_exists: bool, now: datetime, **seen: Any) -> Plan:
    return decide(job, Observed(pods, service_exists, **seen), now)


def names(objs: list[dict]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def test_new_job_creates_service_and_pods() -> None:
    p = plan(make_job(), [], service_exists=False, now=NOW)
    assert names(p.create) == ["mnist", "mnist-0-0", "mnist-0-1"]
    assert p.status is not None
    assert wire(p)["phase"] == "Pending" and wire(p)["ready"] == "0/2" and wire(p)["replicas"] == 2
    assert wire(p)["selector"] == "lepton.ai/job-name=mnist,app.kubernetes.io/managed-by=lepton-operator"


def test_all_workers_running_makes_the_job_running() -> None:
    job = make_job()
    p = plan(job, running(job), True, NOW)
    assert p.create == [] and p.delete == []
    assert wire(p)["phase"] == "Running" and wire(p)["ready"] == "2/2"
    assert wire(p)["startTime"] == rfc3339(NOW)
    assert cond(wire(p), "Running")["status"] == "True"
    [event] = p.events  # both transitions seen in one pass: one Event, aggregated
    assert (event.type, event.reason) == ("Normal", "AllWorkersRunning")
    assert event.message == "all 2 workers are bound to nodes; all 2 workers of epoch 0 are running"


def test_a_second_identical_pass_writes_nothing() -> None:
    job = make_job()
    first = plan(job, running(job), True, NOW)
    again = plan(make_job(status=first.status), running(job), True, NOW + timedelta(seconds=5))
    assert again.status is None and again.events == [] and again.create == [] and again.delete == []


def test_gang_is_not_running_until_every_worker_runs() -> None:
    job = make_job()
    p = plan(job, [pod(job, 0, 0), pod(job, 0, 1, "Pending")], True, NOW)
    assert wire(p)["phase"] == "Pending" and wire(p)["ready"] == "1/2"


def test_a_worker_finishing_before_its_peers_leaves_the_job_running() -> None:
    """Seen in `make demo`: rank 1 exited 0 a second before rank 0, and the job showed Pending 1/2."""
    job = make_job()
    first = plan(job, running(job), True, NOW)
    later = plan(make_job(status=first.status), [pod(job, 0, 0), pod(job, 0, 1, "Succeeded")], True, NOW)
    assert later.status is not None and wire(later)["phase"] == "Running" and wire(later)["ready"] == "1/2"
    # the kubelet reports the trainer's exit (not ready, exit code) a moment before the pod's phase Succeeded
    exited = [replace(pod(job, 0, r), ready=False, exit_code=0) for r in range(2)]
    for pods in ([pod(job, 0, 0), exited[1]], [exited[0], pod(job, 0, 1, "Succeeded")], exited):
        still = plan(make_job(status=first.status), pods, True, NOW)
        assert still.status is None or wire(still)["phase"] == "Running", pods
    crashed = replace(pod(job, 0, 1), ready=False, exit_code=1)
    assert wire(plan(make_job(status=first.status), [pod(job, 0, 0), crashed], True, NOW))["phase"] != "Running"
    never_ran = plan(job, [pod(job, 0, 0, "Pending"), pod(job, 0, 1, "Succeeded")], True, NOW)
    assert wire(never_ran)["phase"] == "Pending"


def test_unschedulable_pod_is_reported_with_the_schedulers_message() -> None:
    job = make_job()
    msg = "0/8 nodes are available: 8 Insufficient nvidia.com/gpu."
    pending = pod(
        job,
        0,
        1,
        "Pending",
        conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}],
    )
    p = plan(job, [pod(job, 0, 0), pending], True, NOW)
    c = cond(wire(p), "PodsScheduled")
    assert c["status"] == "False" and c["reason"] == "Unschedulable" and msg in c["message"]
    assert msg in wire(p)["message"]
    assert any(e.type == "Warning" and e.reason == "Unschedulable" for e in p.events)


def test_all_workers_succeeded_makes_the_job_succeed() -> None:
    job = make_job()
    p = plan(job, [pod(job, 0, 0, "Succeeded"), pod(job, 0, 1, "Succeeded")], True, NOW)
    assert wire(p)["phase"] == "Succeeded" and wire(p)["completionTime"] == rfc3339(NOW)
    assert p.create == []


@pytest.mark.parametrize(
    ("failure", "restarts", "phase", "reason", "spent"),
    [
        ({"exit_code": 137}, 0, "Restarting", "WorkerCrashed", 1),
        ({"exit_code": 137, "reason": "OOMKilled"}, 0, "Restarting", "OOMKilled", 1),
        ({"exit_code": 1, "message": "ValueError: bad lr"}, 0, "Failed", "WorkerFailed", 0),
        ({"exit_code": 137}, 3, "Failed", "BackoffLimitExceeded", 3),
        (
            {
                "exit_code": 137,
                "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}],
            },
            3,
            "Restarting",
            "Preempted",
            3,
        ),
    ],
)
def test_failures_map_to_actions(failure: dict, restarts: int, phase: str, reason: str, spent: int) -> None:
    job = make_job(status={"restarts": restarts, "restartEpoch": 0, "replicas": 2})
    pods = [pod(job, 0, 0), pod(job, 0, 1, "Failed", **failure)]
    p = plan(job, pods, True, NOW)
    assert wire(p)["phase"] == phase
    assert wire(p)["restarts"] == spent
    assert any(e.reason == reason for e in p.events)
    if phase == "Restarting":
        assert wire(p)["restartEpoch"] == 1
        assert p.delete == [] and p.create == [] and p.requeue_after == 0  # the new epoch is stored first
        then = plan(stored(job, p), pods, True, NOW)  # and acted on in the next pass
        assert then.delete == ["mnist-0-0"]  # the failed pod stays for `kubectl logs` until the epoch after
        assert names(then.create) == ["mnist-1-0", "mnist-1-1"] and then.new_epoch_reason is None
    else:
        assert p.delete == ["mnist-0-0"]  # the running one; the failed pod stays for its logs
        assert p.create == []


def test_failed_job_message_names_pod_exit_code_and_container_message() -> None:
    job = make_job()
    p = plan(
        job,
        [pod(job, 0, 0), pod(job, 0, 1, "Failed", exit_code=2, message="bad config", node="gpu-3")],
        True,
        NOW,
    )
    assert wire(p)["message"] == "pod mnist-0-1, on node gpu-3, exit code 2: bad config"


def test_old_epoch_pods_are_deleted_but_the_previous_epochs_failed_pod_is_kept() -> None:
    job = make_job(status={"restartEpoch": 2, "restarts": 2, "replicas": 2})
    old = [pod(job, 0, 0, "Failed", exit_code=137), pod(job, 1, 1, "Failed", exit_code=137), pod(job, 1, 0)]
    p = plan(job, [*old, *running(job, 2)], True, NOW)
    assert sorted(p.delete) == ["mnist-0-0", "mnist-1-0"]
    assert wire(p)["phase"] == "Running"


def test_suspend_deletes_pods_and_keeps_status() -> None:
    job = make_job(status={"restarts": 2, "restartEpoch": 2, "replicas": 2}, suspend=True)
    p = plan(job, running(job, 2), True, NOW)
    assert sorted(p.delete) == ["mnist-2-0", "mnist-2-1"]
    assert p.create == []
    assert wire(p)["phase"] == "Suspended" and wire(p)["restarts"] == 2


def test_resume_recreates_pods() -> None:
    suspended = plan(make_job(suspend=True), [], True, NOW).status
    p = plan(make_job(status=suspended), [], True, NOW)
    assert names(p.create) == ["mnist-0-0", "mnist-0-1"]
    assert cond(wire(p), "Suspended")["status"] == "False"


def test_active_deadline_fails_the_job() -> None:
    job = make_job(status={"startTime": rfc3339(NOW - timedelta(seconds=61)), "replicas": 2}, activeDeadlineSeconds=60)
    p = plan(job, running(job), True, NOW)
    assert wire(p)["phase"] == "Failed" and cond(wire(p), "Failed")["reason"] == "DeadlineExceeded"
    assert sorted(p.delete) == ["mnist-0-0", "mnist-0-1"]


def test_active_deadline_requeues_until_due() -> None:
    job = make_job(status={"startTime": rfc3339(NOW - timedelta(seconds=35)), "replicas": 2}, activeDeadlineSeconds=60)
    assert plan(job, running(job), True, NOW).requeue_after == pytest.approx(25)


@pytest.mark.parametrize(("age", "deleted", "requeue"), [(5, False, 25), (30, True, None)])
def test_ttl_after_finished(age: int, deleted: bool, requeue: float | None) -> None:
    done = {
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}],
        "completionTime": rfc3339(NOW - timedelta(seconds=age)),
        "phase": "Succeeded",
    }
    p = plan(make_job(status=done, ttlSecondsAfterFinished=30), [], True, NOW)
    assert p.delete_job is deleted
    assert p.requeue_after == (pytest.approx(requeue) if requeue else None)


def test_scale_is_a_new_epoch_that_spends_no_restart() -> None:
    job = make_job(status={"restartEpoch": 0, "restarts": 0, "replicas": 2}, replicas=3, maxReplicas=4)
    p = plan(job, running(make_job()), True, NOW)
    assert wire(p)["restarts"] == 0 and wire(p)["replicas"] == 3 and wire(p)["restartEpoch"] == 1
    assert p.events[0].reason == "Resized"
    then = plan(stored(job, p), running(make_job()), True, NOW)
    assert names(then.create) == ["mnist-1-0", "mnist-1-1", "mnist-1-2"]
    assert sorted(then.delete) == ["mnist-0-0", "mnist-0-1"]


def test_job_managed_by_another_controller_is_left_alone() -> None:
    p = plan(make_job(managedBy="kueue.x-k8s.io/multikueue"), [], False, NOW)
    assert p.create == [] and p.status is None


def test_first_pods_complete_is_flagged_once_for_the_apply_latency_metric() -> None:
    first = plan(make_job(), [], False, NOW)
    assert first.first_pods_complete
    job = make_job(status=first.status)
    assert not plan(job, running(job), True, NOW).first_pods_complete


def test_final_result_from_the_termination_message_becomes_progress() -> None:
    job = make_job()
    result = '{"state":"Succeeded","testAccuracy":0.9722,"steps":560,"exportPath":"/ckpt/export"}'
    pods = [pod(job, 0, 0, "Succeeded", message=result), pod(job, 0, 1, "Succeeded")]
    st = wire(plan(job, pods, True, NOW))
    assert st["progress"]["summary"] == "done acc=0.972" and st["progress"]["testAccuracy"] == 0.9722
    assert st["progress"]["exportPath"] == "/ckpt/export" and st["progress"]["source"] == "termination-message"


def test_live_progress_gives_a_summary_and_feeds_the_projected_cost() -> None:
    job = make_job()
    live = {"state": "Running", "step": 120, "totalSteps": 266, "loss": 0.3124, "etaSeconds": 3600}
    st = wire(decide(job, Observed(running(job), live_progress=live), NOW))
    assert st["progress"]["summary"] == "45% step 120/266 loss 0.312"
    cost = st["cost"]
    expected = cost["accruedUsd"] + float(cost["rateUsdPerHour"]) * 1.0  # ETA one hour
    assert float(cost["projectedTotalUsd"]) == pytest.approx(expected, abs=0.01)


def test_a_json_error_in_the_termination_message_names_the_failure() -> None:
    job = make_job()
    failed = pod(job, 0, 1, "Failed", exit_code=1, message='{"state":"Failed","error":"ValueError: bad lr"}')
    st = wire(plan(job, [pod(job, 0, 0), failed], True, NOW))
    assert st["message"].endswith("exit code 1: ValueError: bad lr")


def test_resume_after_suspend_is_no_failure() -> None:
    running_status = {"restartEpoch": 0, "restarts": 0, "replicas": 2, "launched": True}
    suspended = plan(make_job(status=running_status, suspend=True), [], True, NOW).status
    p = plan(make_job(status=suspended), [], True, NOW)
    assert names(p.create) == ["mnist-0-0", "mnist-0-1"] and wire(p)["restartEpoch"] == 0


def test_a_pass_that_starts_an_epoch_only_stores_it_whatever_else_it_saw() -> None:
    """Two-phase epochs: no pod is deleted or created before the new epoch is stored (JobSet's order)."""
    job = make_job(status={"restartEpoch": 3, "restarts": 0, "replicas": 2, "launched": True})
    pods = [pod(job, 1, 0), pod(job, 3, 0, "Failed", exit_code=137), pod(job, 3, 1)]
    p = plan(job, pods, False, NOW)  # a leftover of epoch 1, a crash in epoch 3, even the Service missing
    assert wire(p)["restartEpoch"] == 4 and p.new_epoch_reason == "WorkerCrashed"
    assert (p.create, p.delete, p.force_delete) == ([], [], [])


def test_normal_events_of_one_pass_are_aggregated_and_warnings_kept() -> None:
    from lepton_operator.reconcile.plan import Event, aggregated

    a, b = Event("Normal", "AllScheduled", "bound"), Event("Normal", "AllWorkersRunning", "running")
    warn = Event("Warning", "FailedCreate", "quota")
    assert aggregated([a, warn, b]) == [warn, Event("Normal", "AllWorkersRunning", "bound; running")]
    assert aggregated([warn, a]) == [warn, a] and aggregated([]) == []
