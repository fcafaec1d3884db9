"""Each TrainingJob policy on its own, table-driven: given this job and these pods at this time -> this decision."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from lepton_operator.api.trainingjob import TrainingJob
from lepton_operator.api.trainingjob_status import CostStatus
from lepton_operator.reconcile import elastic, epoch, lifecycle
from lepton_operator.reconcile.budget import charge
from lepton_operator.reconcile.failover import handle_failures
from lepton_operator.reconcile.plan import Observed
from lepton_operator.reconcile.status import JobPass, phase_of
from lepton_operator.reconcile.views import PodView
from lepton_operator.timestamps import rfc3339

from .jobs import NOW, make_job, pod, running

AGO = rfc3339(NOW - timedelta(seconds=100))
SUCCEEDED = [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}]


def jobpass(job: TrainingJob, pods: list[PodView] = (), **seen: Any) -> JobPass:  # type: ignore[assignment]
    return JobPass(job, Observed(list(pods), **seen), NOW)


def reasons(p: JobPass) -> list[str]:
    return [e.reason for e in p.plan.events]


@pytest.mark.parametrize(
    ("status", "spec", "ends", "delete_job", "requeue"),
    [
        ({}, {}, False, False, None),  # not finished
        ({"conditions": SUCCEEDED, "completionTime": AGO}, {}, True, False, None),  # no TTL: kept
        ({"conditions": SUCCEEDED, "completionTime": AGO}, {"ttlSecondsAfterFinished": 60}, True, True, None),
        ({"conditions": SUCCEEDED, "completionTime": AGO}, {"ttlSecondsAfterFinished": 160}, True, False, 60.0),
    ],
)
def test_lifecycle_finished_and_ttl(
    status: dict, spec: dict, ends: bool, delete_job: bool, requeue: float | None
) -> None:
    p = jobpass(make_job(status, **spec))
    assert lifecycle.finished(p, []) is ends
    assert (p.plan.delete_job, p.plan.requeue_after) == (delete_job, requeue)


@pytest.mark.parametrize(
    ("suspend", "budget_stop", "ends", "reason", "message"),
    [
        (False, None, False, None, None),
        (True, None, True, "Suspended", "suspended: spec.suspend is true"),
        (False, "cost $5.00 reached the budget", True, "BudgetExceeded", "suspended: cost $5.00 reached the budget"),
    ],
)
def test_lifecycle_suspended(
    suspend: bool, budget_stop: str | None, ends: bool, reason: str | None, message: str | None
) -> None:
    job = make_job({"startTime": AGO, "replicas": 2}, suspend=suspend)
    p = jobpass(job, running(job))
    assert lifecycle.suspended(p, running(job), budget_stop) is ends
    assert p.status.message == message and reasons(p) == ([reason] if reason else [])
    assert p.plan.delete == (["mnist-0-0", "mnist-0-1"] if ends else [])
    assert p.status.start_time == (None if ends else AGO) and (p.status.ready == "0/2") is ends


@pytest.mark.parametrize(
    ("deadline", "ends", "requeue"),
    [(None, False, None), (60, True, None), (160, False, 60.0)],
)
def test_lifecycle_deadline(deadline: int | None, ends: bool, requeue: float | None) -> None:
    p = jobpass(make_job({"startTime": AGO}, activeDeadlineSeconds=deadline))
    assert lifecycle.deadline_passed(p, []) is ends
    assert p.plan.requeue_after == requeue
    assert reasons(p) == (["DeadlineExceeded"] if ends else [])


@pytest.mark.parametrize(
    ("accrued", "budget", "stop", "requeue"),
    [
        (1.0, None, None, None),
        (1.0, {"maxUsd": 10.0}, None, True),  # looks again when the budget would run out
        (12.0, {"maxUsd": 10.0}, "cost $12.00 reached the budget of $10.00", None),
    ],
)
def test_budget_charge(accrued: float, budget: dict | None, stop: str | None, requeue: bool | None) -> None:
    status = {"cost": {"gpuHours": 1.0, "accruedUsd": accrued, "lastAccrual": rfc3339(NOW)}}
    job = make_job(status, budget=budget)
    p = jobpass(job, running(job))
    assert charge(p) == stop
    assert (p.plan.requeue_after is not None) is bool(requeue)
    assert reasons(p) == (["BudgetExceeded"] if stop else [])


def failed(job: TrainingJob, **kw: Any) -> list[PodView]:
    return [pod(job, 0, 0), pod(job, 0, 1, "Failed", **kw)]


@pytest.mark.parametrize(
    ("restarts", "pods_kw", "outcome", "reason"),
    [
        (0, None, None, None),  # nothing failed
        (0, {"exit_code": 137, "reason": "OOMKilled"}, "new epoch", "OOMKilled"),
        (0, {"exit_code": 1}, "Failed", "WorkerFailed"),  # a program that gave up by itself
        (3, {"exit_code": 137}, "Failed", "BackoffLimitExceeded"),  # maxRestarts 3 used
    ],
)
def test_failover(restarts: int, pods_kw: dict | None, outcome: str | None, reason: str | None) -> None:
    job = make_job({"restarts": restarts, "replicas": 2}, failurePolicy={"maxRestarts": 3})
    pods = failed(job, **pods_kw) if pods_kw is not None else running(job)
    p = jobpass(job, pods)
    p.status.restarts = restarts
    decided, ignored = handle_failures(p, pods, 2)
    assert ignored == set()
    if outcome is None:
        assert decided is None and p.status.last_failure is None
        return
    assert decided is not None and p.status.last_failure is not None and p.status.last_failure.pod == "mnist-0-1"
    if outcome == "new epoch":
        assert decided.new_epoch_reason == reason and p.status.restart_epoch == 1 and decided.requeue_after == 0.0
    else:
        assert phase_of(p.conditions) == "Failed" and reason in reasons(p)


@pytest.mark.parametrize(
    ("spec", "status", "capacity", "size"),
    [
        ({"replicas": 4, "minReplicas": 2}, {}, 3, (3, None)),  # first pass: as large as free GPUs allow
        ({"replicas": 4, "minReplicas": 2}, {}, None, (4, None)),  # unknown: the target
        ({"replicas": 2}, {"replicas": 4}, None, (4, (2, "spec.replicas lowered"))),
        ({"replicas": 4, "minReplicas": 4}, {"replicas": 2}, 8, (2, (4, "spec.minReplicas raised"))),
        ({"replicas": 4, "minReplicas": 2}, {"replicas": 2, "epochStartTime": AGO}, 4, (2, (4, "more GPUs are free"))),
    ],
)
def test_elastic_sizes(spec: dict, status: dict, capacity: int | None, size: tuple) -> None:
    job = make_job(status, **spec)
    pods = [pod(job, 0, r) for r in range(status.get("replicas", 0))]
    p = jobpass(job, pods, capacity=capacity)
    world = elastic.first_size(p)
    assert (world, elastic.new_size(p, pods, world) if pods else None) == size


@pytest.mark.parametrize(
    ("spec", "status", "own"),
    [
        ({"replicas": 2}, {}, None),  # not elastic: no free-GPU estimate needed
        ({"replicas": 4, "minReplicas": 2, "gpusPerReplica": 0}, {}, None),  # no GPUs asked
        ({"replicas": 4, "minReplicas": 2}, {"replicas": 4}, None),  # at its target with pods
        ({"replicas": 4, "minReplicas": 2}, {"replicas": 2}, {"gpu-0": 8}),  # may grow: its own GPUs
    ],
)
def test_elastic_capacity_is_asked_only_when_the_size_may_change(spec: dict, status: dict, own: Any) -> None:
    job = make_job(status, **spec)
    assert elastic.own_gpus_if_resizable(job, [pod(job, 0, r) for r in range(2)]) == own


@pytest.mark.parametrize(
    ("phases", "status", "creates", "ready", "phase_after"),
    [
        ([], {"replicas": 2}, ["mnist-0-0", "mnist-0-1"], "0/2", "Pending"),
        (["Running", "Pending"], {"replicas": 2}, [], "1/2", "Pending"),
        (["Running", "Running"], {"replicas": 2}, [], "2/2", "Running"),
        (["Running"], {"replicas": 2}, ["mnist-0-1"], "1/2", "Pending"),
    ],
)
def test_epoch_run(phases: list[str], status: dict, creates: list[str], ready: str, phase_after: str) -> None:
    job = make_job(status)
    pods = [pod(job, 0, r, ph) for r, ph in enumerate(phases)]
    p = jobpass(job, pods)
    out = epoch.run(p, pods, 2, set())
    assert [o["metadata"]["name"] for o in out.create] == creates
    assert p.status.ready == ready and p.status.phase == phase_after


@pytest.mark.parametrize(
    ("phases", "ignored", "done"),
    [(["Succeeded", "Succeeded"], set(), True), (["Succeeded", "Running"], set(), False), (["Succeeded"], {1}, True)],
)
def test_epoch_all_succeeded(phases: list[str], ignored: set[int], done: bool) -> None:
    job = make_job({"replicas": 2})
    pods = [pod(job, 0, r, ph) for r, ph in enumerate(phases)]
    p = jobpass(job, pods)
    assert (epoch.all_succeeded(p, pods, 2, ignored) is not None) is done


@pytest.mark.parametrize(
    ("true", "phase"),
    [
        ([], "Pending"),
        (["Running"], "Running"),
        (["Running", "Restarting"], "Restarting"),
        (["Suspended", "Running"], "Suspended"),
        (["Succeeded", "Suspended"], "Succeeded"),
        (["Failed", "Succeeded"], "Failed"),
    ],
)
def test_status_phase_from_conditions(true: list[str], phase: str) -> None:
    job = make_job({"conditions": [{"type": t, "status": "True", "reason": t} for t in true]})
    assert phase_of(job.status.conditions or []) == phase


@pytest.mark.parametrize(
    ("change", "written"),
    [
        ({}, False),  # nothing changed
        ({"message": "other"}, True),
        ({"cost_only": 10}, False),  # cost alone: not before COST_WRITE_INTERVAL
        ({"cost_only": 40}, True),
    ],
)
def test_status_is_written_when_it_changed(change: dict, written: bool) -> None:
    job = make_job()
    first = jobpass(job).result().status
    assert first is not None
    old = first.model_copy(deep=True)
    seconds = change.get("cost_only")
    if seconds is not None:
        old.cost = CostStatus(accrued_usd=1.0, last_accrual=rfc3339(NOW - timedelta(seconds=seconds)))
    p = jobpass(make_job(old))
    if "message" in change:
        p.status.message = change["message"]
    if seconds is not None:
        p.status.cost = CostStatus(accrued_usd=2.0, last_accrual=rfc3339(NOW))
    assert (p.result().status is not None) is written
