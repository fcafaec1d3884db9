"""Failover (node loss, lost pods, rules, backoff) and elastic sizing, table-driven on the pure plan."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from lepton_operator.api.trainingjob import TrainingJob
from lepton_operator.reconcile.capacity import tolerates, workers_that_fit
from lepton_operator.reconcile.failover import backoff_seconds
from lepton_operator.reconcile.trainingjob import Observed, Plan, rfc3339
from lepton_operator.reconcile.trainingjob import plan as decide
from lepton_operator.reconcile.views import NodeView, PodView, node_view

from .jobs import NOW, make_job, pod, running, stored, wire


def plan(job: TrainingJob, pods: list[PodView], now: datetime = NOW, **seen: Any) -> Plan:
    return decide(job, Observed(pods, True, **seen), now)


def names(objs: list[dict[str, Any]]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


RUNNING = {
    "restartEpoch": 0,
    "restarts": 0,
    "replicas": 2,
    "launched": True,
    "conditions": [{"type": "Running", "status": "True", "reason": "AllWorkersRunning"}],
}


def test_pods_on_a_lost_node_restart_for_free_avoiding_that_node() -> None:
    job = make_job(status=RUNNING)
    pods = [pod(job, 0, 0, node="gpu-1"), pod(job, 0, 1, node="gpu-2")]
    lost = frozenset({"gpu-2"})
    p = plan(job, pods, lost_nodes=lost)
    assert wire(p)["restarts"] == 0 and wire(p)["restartEpoch"] == 1
    assert wire(p)["lastFailure"]["reason"] == "NodeLost" and wire(p)["lastFailure"]["node"] == "gpu-2"
    p = plan(stored(job, p), pods, lost_nodes=lost)
    assert p.force_delete == ["mnist-0-1"] and p.delete == ["mnist-0-0"]
    affinity = p.create[0]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["gpu-2"]} in affinity["nodeSelectorTerms"][
        0
    ]["matchExpressions"]


def test_a_pod_vanishing_from_a_running_epoch_is_a_free_restart() -> None:
    job = make_job(status=RUNNING)
    p = plan(job, [pod(job, 0, 0)])
    assert wire(p)["restartEpoch"] == 1 and wire(p)["restarts"] == 0
    assert wire(p)["lastFailure"]["reason"] == "PodLost"


def test_a_pod_deleted_from_under_the_job_restarts_it_at_once() -> None:
    job = make_job(status=RUNNING)
    p = plan(job, [pod(job, 0, 0), replace(pod(job, 0, 1), deleting=True)])
    assert wire(p)["restartEpoch"] == 1 and wire(p)["lastFailure"]["reason"] == "PodLost"


def test_missing_pods_of_a_starting_epoch_are_just_created() -> None:
    job = make_job(status={"restartEpoch": 0, "restarts": 0, "replicas": 2})
    p = plan(job, [pod(job, 0, 0)])
    assert names(p.create) == ["mnist-0-1"] and wire(p)["restartEpoch"] == 0


def test_custom_rules_come_before_the_defaults() -> None:
    policy = {
        "rules": [
            {"action": "FailJob", "onReasons": ["OOMKilled"]},
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
        ]
    }
    job = make_job(status=RUNNING, failurePolicy=policy)
    oom = plan(job, [pod(job, 0, 0), pod(job, 0, 1, "Failed", exit_code=137, reason="OOMKilled")])
    assert wire(oom)["phase"] == "Failed" and wire(oom)["lastFailure"]["reason"] == "OOMKilled"
    ignored = plan(job, [pod(job, 0, 0), pod(job, 0, 1, "Failed", exit_code=3)])
    assert ignored.create == [] and ignored.delete == []
    assert wire(ignored).get("phase", "Running") == "Running"
    done = plan(job, [pod(job, 0, 0, "Succeeded"), pod(job, 0, 1, "Failed", exit_code=3)])
    assert wire(done)["phase"] == "Succeeded"


def test_disruptions_can_be_made_to_count() -> None:
    job = make_job(status=RUNNING, failurePolicy={"countDisruptions": True})
    p = plan(job, [pod(job, 0, 0), pod(job, 0, 1)], lost_nodes=frozenset({"gpu-0"}))
    assert wire(p)["restarts"] == 1


@pytest.mark.parametrize(("restarts", "delay"), [(0, 0), (1, 0), (2, 5), (3, 10), (4, 20), (10, 30)])
def test_backoff_is_exponential_and_capped(restarts: int, delay: float) -> None:
    job = make_job(failurePolicy={"backoff": {"initialSeconds": 5, "maxSeconds": 30}})
    assert backoff_seconds(job, restarts) == delay


def test_second_counted_restart_waits_for_its_backoff() -> None:
    job = make_job(status={**RUNNING, "restarts": 1}, failurePolicy={"backoff": {"initialSeconds": 4}})
    p = plan(job, [pod(job, 0, 0), pod(job, 0, 1, "Failed", exit_code=139)])
    assert wire(p)["restarts"] == 2 and p.create == []
    later = make_job(status=p.status, failurePolicy={"backoff": {"initialSeconds": 4}})
    waiting = plan(later, [], now=NOW)
    assert waiting.create == [] and waiting.requeue_after == pytest.approx(4)
    assert plan(later, [], now=NOW + timedelta(seconds=2)).create == []
    assert names(plan(later, [], now=NOW + timedelta(seconds=4)).create) == ["mnist-1-0", "mnist-1-1"]


# -- elastic ---------------------------------------------------------------------------------------
ELASTIC = {"replicas": 8, "minReplicas": 2, "maxReplicas": 8, "gpusPerReplica": 1}


def test_elastic_job_starts_at_what_fits() -> None:
    p = plan(make_job(**ELASTIC), [], capacity=3)
    assert wire(p)["replicas"] == 3 and len(p.create) == 3
    assert wire(plan(make_job(**ELASTIC), [], capacity=0))["replicas"] == 2  # waits at min


def test_elastic_job_grows_after_the_cooldown_when_gpus_free_up() -> None:
    st = {**RUNNING, "replicas": 2, "epochStartTime": rfc3339(NOW - timedelta(seconds=30))}
    job = make_job(status=st, **ELASTIC, elasticPolicy={"scaleUpCooldownSeconds": 60})
    early = plan(job, running(make_job()), capacity=8)
    assert early.create == [] and early.requeue_after == pytest.approx(30)
    grown = plan(job, running(make_job()), now=NOW + timedelta(seconds=31), capacity=8)
    assert wire(grown)["replicas"] == 8 and wire(grown)["restarts"] == 0
    then = plan(stored(job, grown), running(make_job()), now=NOW + timedelta(seconds=31), capacity=8)
    assert names(then.create) == [f"mnist-1-{r}" for r in range(8)]


def test_elastic_job_shrinks_when_workers_stay_unschedulable() -> None:
    job = make_job(status={"restartEpoch": 0, "restarts": 0, "replicas": 4}, **ELASTIC)
    created = rfc3339(NOW - timedelta(seconds=31))
    unsched = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no GPUs"}]
    pods = [pod(job, 0, 0), pod(job, 0, 1)] + [pod(job, 0, r, "Pending", conditions=unsched, extra={}) for r in (2, 3)]
    pods = [replace(q, created=created) for q in pods]
    p = plan(job, pods)
    assert wire(p)["replicas"] == 2 and wire(p)["restartEpoch"] == 1 and wire(p)["restarts"] == 0


def test_kubectl_scale_down_is_a_new_epoch() -> None:
    job = make_job(status={**RUNNING, "replicas": 4}, replicas=2, maxReplicas=4)
    four = make_job(replicas=4)
    p = plan(job, running(four))
    assert wire(p)["replicas"] == 2 and p.create == []
    assert names(plan(stored(job, p), running(four)).create) == ["mnist-1-0", "mnist-1-1"]


# -- capacity --------------------------------------------------------------------------------------
def node(
    name: str,
    gpus: int = 8,
    product: str = "A100",
    taints: list[dict[str, str]] | None = None,
    ready: str = "True",
    **spec: Any,
) -> NodeView:
    return node_view(
        {
            "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product}},
            "spec": {
                "taints": taints or [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
                **spec,
            },
            "status": {
                "allocatable": {"nvidia.com/gpu": str(gpus)},
                "conditions": [{"type": "Ready", "status": ready}],
            },
        }
    )


def test_workers_that_fit_respects_type_taints_cordon_and_readiness() -> None:
    job = make_job(gpusPerReplica=2, gpuType="A100")
    nodes = [
        node("a"),
        node("b", product="H100"),
        node("c", taints=[{"key": "lepton.ai/spot", "value": "true", "effect": "NoSchedule"}]),
        node("d", unschedulable=True),
        node("e", ready="Unknown"),
        node("f"),
    ]
    assert workers_that_fit(job, nodes, used={"a": 3, "f": 8}, own={"f": 2}) == 2 + 1


def test_tolerations() -> None:
    assert tolerates([{"operator": "Exists"}], ("x", "y", "NoSchedule"))
    assert tolerates([{"key": "x", "value": "y", "effect": "NoSchedule"}], ("x", "y", "NoSchedule"))
    assert not tolerates([{"key": "x", "value": "z"}], ("x", "y", "NoSchedule"))
    assert not tolerates([{"key": "x", "operator": "Exists", "effect": "NoExecute"}], ("x", "", "NoSchedule"))


def test_a_worker_failing_because_its_peer_vanished_restarts_the_epoch_counted() -> None:
    """Exit 1 with the trainer's `peerLost` (a node lost under its peer): RestartJob, not FailJob; counted, so a
    peer's own bug that is never seen first still ends the job after maxRestarts."""
    from lepton_operator.reconcile.failover import classify
    from lepton_operator.reconcile.views import PodView

    def worker(message: str) -> PodView:
        return PodView(name="j-0-0", epoch=0, rank=0, phase="Failed", exit_code=1, message=message)

    lost = classify(worker('{"state":"Failed","error":"RuntimeError: Connection reset by peer","peerLost":true}'))
    assert (lost.action.value, lost.counts, lost.reason) == ("RestartJob", True, "PeerLost")
    own = classify(worker('{"state":"Failed","error":"ValueError: bad batch","peerLost":false}'))
    assert (own.action.value, own.reason) == ("FailJob", "WorkerFailed")
    assert classify(worker("peerLost true, as plain text")).action.value == "FailJob"


def test_a_peer_lost_to_a_silent_node_steers_the_next_epoch_away_from_it() -> None:
    """A real node lost: its worker still looks Running (the node goes NotReady only after ~40 s), while the
    survivor exits 1 naming the peer's address. The new epoch starts at once and prefers other nodes, so no
    worker is put back on the silent node to wait for that timeout; a preference never blocks scheduling."""
    job = make_job()
    first = plan(job, running(job))
    error = "RuntimeError: [pair.cc:545] Read error [198.19.17.6]:41234: Connection reset by peer"
    message = json.dumps({"state": "Failed", "error": error, "peerLost": True})
    survivor = pod(job, 0, 0, "Failed", node="node-a", exit_code=1, message=message, extra={"podIP": "198.19.18.4"})
    silent = pod(job, 0, 1, node="node-b", extra={"podIP": "198.19.17.6"})
    p = plan(make_job(status=first.status), [survivor, silent])
    last = wire(p)["lastFailure"]
    assert (last["reason"], last["action"], last["peerNode"]) == ("PeerLost", "RestartJob", "node-b"), last
    assert wire(p)["restartEpoch"] == 1
    nxt = plan(make_job(status=p.status), [survivor, silent])  # the next pass creates epoch 1 (and deletes epoch 0)
    created = [o for o in nxt.create if o["kind"] == "Pod"]
    assert sorted(o["metadata"]["name"] for o in created) == ["mnist-1-0", "mnist-1-1"]
    for new in created:
        terms = new["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        away = {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["node-b"]}
        assert {"weight": 100, "preference": {"matchExpressions": [away]}} in terms
        assert "requiredDuringSchedulingIgnoredDuringExecution" not in new["spec"]["affinity"]["nodeAffinity"]
