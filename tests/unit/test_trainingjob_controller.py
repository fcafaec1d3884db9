"""The TrainingJob controller's apply step against a fake API: what is written, in which order, what a failure does."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import aiohttp
from lepton_operator.api.trainingjob_status import TrainingJobStatus
from lepton_operator.handlers.trainingjob import TrainingJobController
from lepton_operator.kube.errors import ApiError, Refused
from lepton_operator.reconcile.plan import Event
from lepton_operator.reconcile.views import PodView, pod_view

from .fakekube import FakeKube, controller
from .jobs import job_body, make_job, pod, running

KEY = ("ml", "mnist")


async def test_events_are_best_effort_a_failed_post_neither_fails_nor_retries_the_pass() -> None:
    def fault(verb: str, obj: dict) -> Exception | None:
        if obj.get("kind") != "Event":
            return None
        return ApiError(500, "POST", "events", "etcd timeout") if obj["reason"] == "First" else aiohttp.ClientError()

    kube = FakeKube(fault)
    ctl = controller(kube, job_body(), running(make_job()))
    requeue = await ctl.reconcile(KEY)
    assert ("create Event", "AllWorkersRunning") in kube.calls  # tried, and lost
    assert kube.stored[KEY]["status"]["phase"] == "Running"
    assert KEY not in ctl._failures and requeue == 30.0  # the cost refresh, not a retry
    events = [Event("Warning", "First", "lost"), Event("Warning", "Second", "lost too")]
    await ctl.post_events(job_body(), events, datetime.now(UTC))  # raises nothing
    assert ("create Event", "Second") in kube.calls  # the next Event is still tried


STALE = {
    "phase": "Running",
    "restartEpoch": 0,
    "restarts": 1,
    "replicas": 2,
    "launched": True,
    "conditions": [{"type": "Running", "status": "True", "reason": "AllWorkersRunning"}],
    "lastFailure": {
        "pod": "mnist-0-1",
        "node": "gpu-9",
        "reason": "OOMKilled",
        "exitCode": 137,
        "message": "CUDA out of memory",
        "action": "RestartJob",
        "counted": True,
        "time": "2026-11-23T11:00:00Z",
    },
    "progress": {"summary": "10% step 10/100", "step": 10, "totalSteps": 100, "etaSeconds": 900, "source": "endpoint"},
    "cost": {"gpuHours": 1.0, "accruedUsd": 5.0, "projectedTotalUsd": "12.00", "lastAccrual": "2026-11-23T11:59:00Z"},
}


async def test_the_stored_status_is_exactly_the_plans_no_stale_nested_keys() -> None:
    kube = FakeKube()
    kube.progress = {"state": "Running", "step": 20, "totalSteps": 100}  # no ETA any more: no projection
    job = make_job(status=STALE)
    rank0 = pod(job, 0, 0, extra={"podIP": "10.0.0.1"})
    ctl = controller(kube, job_body(status=STALE), [rank0])  # rank 1 vanished: PodLost
    await ctl.reconcile(KEY)
    stored = kube.stored[KEY]["status"]
    assert stored["lastFailure"]["reason"] == "PodLost"
    assert {"node", "exitCode", "message"}.isdisjoint(stored["lastFailure"])
    assert "etaSeconds" not in stored["progress"] and "projectedTotalUsd" not in stored["cost"]
    assert TrainingJobStatus.model_validate(stored).to_wire() == stored  # nothing but what the model holds


async def test_a_status_computed_from_an_old_version_is_not_stored() -> None:
    kube = FakeKube()
    ctl = controller(kube, job_body(), running(make_job()))
    kube.stored[KEY]["metadata"]["resourceVersion"] = "8"  # someone changed the job after the index saw it
    requeue = await ctl.reconcile(KEY)
    assert kube.stored[KEY]["status"] == {} and requeue is not None and requeue < 2
    assert not [c for c in kube.calls if c[0] == "create Event"]  # nothing told about a write that did not happen


def sync_pods(ctl: TrainingJobController, kube: FakeKube, kept: dict[str, PodView]) -> None:
    """The pod informer catching up: what the fake API holds (created pods Pending), `kept` as they were."""
    for view in list(ctl.idx.pods.get(KEY, [])):
        ctl.idx.pods.remove(KEY, view.name)
    for name, obj in kube.pods.items():
        ctl.idx.pods.put(KEY, name, kept.get(name) or pod_view({**obj, "status": {"phase": "Pending"}}))


async def test_an_epoch_is_stored_before_it_is_acted_on_so_a_failed_create_is_retried_at_the_same_epoch() -> None:
    job = make_job(status={"restartEpoch": 0, "restarts": 0, "replicas": 2, "launched": True})
    before = {q.name: q for q in [pod(job, 0, 0), pod(job, 0, 1, "Failed", exit_code=137)]}
    failed_once: set[str] = set()

    def fault(verb: str, obj: dict) -> Exception | None:
        name = (obj.get("metadata") or {}).get("name", "")
        if verb == "create" and name == "mnist-1-1" and name not in failed_once:
            failed_once.add(name)
            return ApiError(500, "POST", "pods", "etcdserver: request timed out")
        return None

    kube = FakeKube(fault)
    kube.pods = {name: {"metadata": {"name": name}} for name in before}
    ctl = controller(kube, job_body(status=job.status), list(before.values()))
    for _ in range(4):
        await ctl.reconcile(KEY)
        sync_pods(ctl, kube, before)
    assert kube.stored[KEY]["status"]["restartEpoch"] == 1 and kube.stored[KEY]["status"]["restarts"] == 1
    assert sorted(kube.pods) == ["mnist-0-1", "mnist-1-0", "mnist-1-1"]  # the crashed pod kept for its logs
    deleted = [name for verb, name in kube.calls if verb == "delete pods"]
    assert deleted == ["mnist-0-0"]  # never a pod of the new epoch
    first_write = kube.calls.index(("patch status", "mnist"))
    assert first_write < kube.calls.index(("delete pods", "mnist-0-0"))  # stored first, then acted on


QUOTA = json.dumps(
    {
        "kind": "Status",
        "code": 403,
        "message": 'pods "mnist-0-0" is forbidden: exceeded quota: gpus, requested: nvidia.com/gpu=4, limited: 8',
    }
)


async def test_a_create_the_api_server_refuses_is_a_condition_and_an_event_with_its_message_and_backs_off() -> None:
    quota = True

    def fault(verb: str, obj: dict) -> Exception | None:
        if quota and verb == "create" and obj["kind"] == "Pod":
            return Refused(403, "POST", "pods", QUOTA)
        return None

    kube = FakeKube(fault)
    ctl = controller(kube, job_body())
    delays = [await ctl.reconcile(KEY), await ctl.reconcile(KEY)]
    status = kube.stored[KEY]["status"]
    cond = next(c for c in status["conditions"] if c["type"] == "ReplicaFailure")
    assert cond["status"] == "True" and cond["reason"] == "FailedCreate" and "exceeded quota" in cond["message"]
    assert status["message"].startswith('cannot create workers: Pod mnist-0-0: pods "mnist-0-0" is forbidden')
    assert [name for verb, name in kube.calls if verb == "create Event"] == ["FailedCreate"]  # once, not per pass
    assert delays[0] is not None and delays[1] is not None and 0 < delays[0] < delays[1]  # backing off

    quota = False  # the quota was raised
    await ctl.reconcile(KEY)
    sync_pods(ctl, kube, {})
    await ctl.reconcile(KEY)
    cond = next(c for c in kube.stored[KEY]["status"]["conditions"] if c["type"] == "ReplicaFailure")
    assert cond["status"] == "False" and KEY not in ctl._refused and KEY not in ctl._failures


async def test_a_job_another_controller_manages_is_left_alone_even_when_its_spec_is_invalid_here() -> None:
    """Found by tests/e2e/test_fuzz_api.py: a MultiKueue job with a hostPath this cluster does not allow got
    InvalidSpec, phase Failed and an Event from us; the manager cluster's controller owns its status."""
    for spec in ({"checkpoint": {"volume": {"hostPath": "/etc"}}}, {"prices": {"gpus": {"L4": {"onDemand": "x"}}}}):
        kube = FakeKube()
        ctl = controller(kube, job_body(managedBy="kueue.x-k8s.io/multikueue", **spec), service=False)
        assert await ctl.reconcile(KEY) is None
        assert kube.stored[KEY]["status"] == {} and kube.calls == []


def busy(ctl: TrainingJobController) -> None:
    """More jobs queued than reconcile workers: a burst."""
    for i in range(ctl.config.reconcile_workers):
        ctl.queue.add(("ml", f"other-{i}"))


def written(kube: FakeKube) -> list[tuple[str, str]]:
    return [c for c in kube.calls if c[0] in ("patch status", "create Event")]


async def test_in_a_burst_a_new_job_is_written_once_when_it_runs_with_one_event() -> None:
    kube = FakeKube()
    ctl = controller(kube, job_body(), [], service=False)
    busy(ctl)
    requeue = await ctl.reconcile(KEY)
    assert ("create Pod", "mnist-0-1") in kube.calls and ("create Service", "mnist") in kube.calls
    assert written(kube) == [] and not kube.stored[KEY].get("status")  # Pending progress held
    assert requeue is not None and 0 < requeue <= ctl.config.status_hold_seconds  # written by then at the latest
    scheduled = [pod(make_job(), 0, r, "Pending", node="gpu-0") for r in range(2)]
    for view in scheduled:
        ctl.idx.pods.put(KEY, view.name, view)
    await ctl.reconcile(KEY)
    assert written(kube) == []  # all scheduled: still progress, still held (the queue drained meanwhile)
    for view in running(make_job()):
        ctl.idx.pods.put(KEY, view.name, view)
    await ctl.reconcile(KEY)
    assert written(kube) == [("patch status", "mnist"), ("create Event", "AllWorkersRunning")]
    assert kube.stored[KEY]["status"]["phase"] == "Running" and KEY not in ctl._holding


async def test_without_a_burst_pending_is_written_at_once() -> None:
    kube = FakeKube()
    ctl = controller(kube, job_body(), [], service=False)
    await ctl.reconcile(KEY)
    assert written(kube) == [("patch status", "mnist")] and kube.stored[KEY]["status"]["phase"] == "Pending"


async def test_a_warning_ends_the_hold_at_once() -> None:
    kube = FakeKube()
    ctl = controller(kube, job_body(), [], service=False)
    busy(ctl)
    await ctl.reconcile(KEY)
    assert written(kube) == []
    why = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/8 nodes"}]
    for r in range(2):
        view = pod(make_job(), 0, r, "Pending", conditions=why)
        ctl.idx.pods.put(KEY, view.name, view)
    await ctl.reconcile(KEY)
    assert ("create Event", "Unschedulable") in written(kube)
    assert kube.stored[KEY]["status"]["conditions"] and KEY not in ctl._holding


async def test_a_held_status_is_written_when_the_hold_runs_out() -> None:
    kube = FakeKube()
    ctl = controller(kube, job_body(), [], service=False)
    busy(ctl)
    await ctl.reconcile(KEY)
    ctl._holding[KEY] -= ctl.config.status_hold_seconds  # as if the hold began that long ago
    await ctl.reconcile(KEY)
    assert written(kube) == [("patch status", "mnist")] and kube.stored[KEY]["status"]["phase"] == "Pending"


async def test_a_pod_event_that_changes_nothing_a_pass_reads_queues_no_pass() -> None:
    from lepton_operator.builders.trainingjob import worker_pod

    ctl = controller(FakeKube(), job_body(), [])
    raw = worker_pod(make_job(), 0, 0, 2)
    raw["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    ctl._on_pod("ADDED", raw)
    assert len(ctl.queue._timers) == 1  # a batched pass for the new pod
    ctl.queue.forget(KEY)
    raw["status"]["conditions"][0]["lastProbeTime"] = "2026-12-02T10:00:00Z"  # nothing PodView holds
    ctl._on_pod("MODIFIED", raw)
    assert len(ctl.queue._timers) == 0 and len(ctl.queue) == 0
    raw["spec"]["nodeName"] = "gpu-3"
    ctl._on_pod("MODIFIED", raw)
    assert len(ctl.queue._timers) == 1 and ctl.idx.pods.view(KEY, raw["metadata"]["name"]).node == "gpu-3"


async def test_the_workers_dns_slice_is_created_once_and_rewritten_only_when_an_address_changes() -> None:
    kube, job = FakeKube(), make_job()
    pods = [pod(job, 0, r, extra={"podIP": f"198.19.1.{r + 2}"}) for r in range(2)]
    ctl = controller(kube, job_body(), pods)
    await ctl.reconcile(KEY)
    created = kube.created[("EndpointSlice", "mnist-dns-0")]
    assert [e["addresses"] for e in created["endpoints"]] == [["198.19.1.2"], ["198.19.1.3"]]
    ctl._on_slice("ADDED", created)  # what the informer then sees
    kube.calls.clear()
    await ctl.reconcile(KEY)
    assert not [c for c in kube.calls if "EndpointSlice" in c[0] or "endpointslices" in c[0]], kube.calls
    moved = pod(job, 0, 1, extra={"podIP": "198.19.1.9"})
    ctl.idx.pods.put(KEY, moved.name, moved)
    await ctl.reconcile(KEY)
    [patch] = kube.patched[("endpointslices", "mnist-dns-0")]
    assert [e["addresses"] for e in patch["endpoints"]] == [["198.19.1.2"], ["198.19.1.9"]]
