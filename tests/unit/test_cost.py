"""Cost accrual (OpenCost's formula), budgets and costPolicy placement."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from lepton_operator.prices import DEFAULT_PRICES
from lepton_operator.reconcile.cost import accrue
from lepton_operator.reconcile.pricing import is_spot, placement, pod_rate, quantity
from lepton_operator.reconcile.trainingjob import Observed, rfc3339
from lepton_operator.reconcile.trainingjob import plan as decide
from lepton_operator.reconcile.views import node_view

from .jobs import NOW, make_job, pod, running, wire

H100 = "NVIDIA-H100-80GB-HBM3"


def gpu_node(name: str, product: str = H100, capacity: str = "on-demand") -> dict:
    return {
        name: node_view(
            {
                "metadata": {
                    "name": name,
                    "labels": {"nvidia.com/gpu.product": product, "lepton.ai/capacity-type": capacity},
                }
            }
        )
    }


@pytest.mark.parametrize(("text", "value"), [("8", 8), ("500m", 0.5), ("64Gi", 64 * 2**30), ("1.5", 1.5), (None, 0)])
def test_quantity(text: str | None, value: float) -> None:
    assert quantity(text) == value


@pytest.mark.parametrize(
    ("labels", "spot"),
    [
        ({"lepton.ai/capacity-type": "spot"}, True),
        ({"lepton.ai/capacity-type": "on-demand"}, False),
        ({"karpenter.sh/capacity-type": "spot"}, True),
        ({"karpenter.sh/capacity-type": "on-demand"}, False),
        ({"karpenter.sh/capacity-type": "reserved"}, False),
        ({"eks.amazonaws.com/capacityType": "SPOT"}, True),
        ({"eks.amazonaws.com/capacityType": "ON_DEMAND"}, False),
        ({"cloud.google.com/gke-spot": "true"}, True),
        ({"cloud.google.com/gke-spot": "false"}, False),
        ({"cloud.google.com/gke-preemptible": "true"}, True),
        ({}, False),
    ],
)
def test_spot_is_read_from_our_label_and_the_clouds_well_known_ones(labels: dict[str, str], spot: bool) -> None:
    node = node_view({"metadata": {"name": "n", "labels": {"nvidia.com/gpu.product": H100, **labels}}})
    assert is_spot(node) is spot
    rate = pod_rate(1, None, None, node, DEFAULT_PRICES)
    assert rate == (2.75 if spot else 6.88)


def test_no_node_is_on_demand() -> None:
    assert not is_spot(None)
    assert pod_rate(2, None, H100, None, DEFAULT_PRICES) == 2 * 6.88


def test_cost_of_two_workers_for_an_hour() -> None:
    job = make_job(gpusPerReplica=4, resources={"cpu": "8", "memory": "64Gi"})
    started = rfc3339(NOW - timedelta(hours=1))
    pods = [replace(q, started_at=started, node=f"n{q.rank}") for q in running(job)]
    cost = accrue(job, pods, {**gpu_node("n0"), **gpu_node("n1", capacity="spot")}, DEFAULT_PRICES, NOW)
    per_hour = (4 * 6.88 + 8 * 0.031611 + 64 * 0.004237) + (4 * 2.75 + 8 * 0.031611 + 64 * 0.004237)
    assert cost.gpu_hours == pytest.approx(8)
    assert cost.accrued_usd == pytest.approx(per_hour, rel=1e-6)
    assert cost.estimated_cost_usd == f"{per_hour:.2f}" and cost.rate_usd_per_hour == f"{per_hour:.2f}"


def test_accrual_adds_only_the_time_since_the_last_one_and_stops_at_finish() -> None:
    job = make_job(
        gpusPerReplica=1,
        status={"cost": {"gpuHours": 1.0, "accruedUsd": 6.88, "lastAccrual": rfc3339(NOW - timedelta(minutes=30))}},
    )
    started = rfc3339(NOW - timedelta(hours=2))
    finished = rfc3339(NOW - timedelta(minutes=15))
    a = replace(pod(job, 0, 0), started_at=started, node="n")
    b = replace(pod(job, 0, 1, "Succeeded"), started_at=started, finished_at=finished, node="n")
    cost = accrue(job, [a, b], gpu_node("n"), DEFAULT_PRICES, NOW)
    assert cost.gpu_hours == pytest.approx(1.0 + 0.5 + 0.25)
    assert cost.accrued_usd == pytest.approx(6.88 * 1.75)
    assert cost.rate_usd_per_hour == "6.88"


def test_budget_suspends_the_job_and_raising_it_resumes() -> None:
    spent = {"gpuHours": 10.0, "accruedUsd": 68.8, "lastAccrual": rfc3339(NOW)}
    job = make_job(status={"replicas": 2, "cost": spent}, budget={"maxUsd": 50})
    p = decide(job, Observed(running(job)), NOW)
    assert sorted(p.delete) == ["mnist-0-0", "mnist-0-1"]
    assert wire(p)["phase"] == "Suspended" and "budget of $50.00" in wire(p)["message"]
    assert any(e.reason == "BudgetExceeded" and e.type == "Warning" for e in p.events)
    raised = make_job(status=p.status, budget={"maxUsd": 100})
    q = decide(raised, Observed([]), NOW)
    assert len(q.create) == 2 and wire(q)["phase"] == "Pending"


def test_cost_only_changes_are_written_at_most_every_30_seconds() -> None:
    job = make_job()
    pods = [replace(q, started_at=rfc3339(NOW - timedelta(minutes=5)), node="n") for q in running(job)]
    first = decide(job, Observed(pods, nodes=gpu_node("n")), NOW)
    assert wire(first)["cost"]["rateUsdPerHour"] == "55.04"  # 2 workers x 4 H100 x $6.88
    soon = decide(make_job(status=first.status), Observed(pods, nodes=gpu_node("n")), NOW + timedelta(seconds=10))
    assert soon.status is None and soon.requeue_after == 30
    later = decide(make_job(status=first.status), Observed(pods, nodes=gpu_node("n")), NOW + timedelta(seconds=30))
    assert later.status is not None and wire(later)["cost"]["gpuHours"] > wire(first)["cost"]["gpuHours"]


@pytest.mark.parametrize(
    ("policy", "best", "spot_ok"),
    [("speed", (H100, False), False), ("cost", ("NVIDIA-L4", True), True), ("balanced", (H100, True), True)],
)
def test_cost_policy_ranks_gpu_types(policy: str, best: tuple[str, bool], spot_ok: bool) -> None:
    where = placement(make_job(costPolicy=policy), DEFAULT_PRICES)
    assert where.preferred[0][1:] == best and where.preferred[0][0] == 100
    assert where.tolerate_spot is spot_ok
    assert [w for w, _, _ in where.preferred] == sorted((w for w, _, _ in where.preferred), reverse=True)


def test_fixed_gpu_type_only_chooses_the_capacity_type() -> None:
    where = placement(make_job(costPolicy="cost", gpuType=H100), DEFAULT_PRICES)
    assert [(p, s) for _, p, s in where.preferred] == [(H100, True), (H100, False)]
