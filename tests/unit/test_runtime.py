"""The work queue of reconciles and the cache of our own writes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from lepton_operator.handlers.runtime import WorkQueue, WriteCache
from lepton_operator.kube.client import merge_patch, resource_of

from .fakekube import apply_merge_patch


def body(rv: str, epoch: int) -> dict:
    return {"metadata": {"resourceVersion": rv}, "status": {"restartEpoch": epoch}}


def test_our_writes_win_until_the_index_catches_up_even_several_writes_behind() -> None:
    cache = WriteCache()
    cache.wrote("k", body("1", 0), body("2", 1))
    assert cache.current("k", body("1", 0))["status"]["restartEpoch"] == 1
    cache.wrote("k", body("2", 1), body("3", 2))
    assert cache.current("k", body("1", 0))["status"]["restartEpoch"] == 2  # index two writes behind
    assert cache.current("k", body("2", 1))["status"]["restartEpoch"] == 2
    assert cache.current("k", body("3", 2))["metadata"]["resourceVersion"] == "3"  # caught up: index again
    assert cache.current("k", body("1", 0))["metadata"]["resourceVersion"] == "1"  # entry gone


def test_only_our_last_write_coming_back_is_an_echo() -> None:
    cache = WriteCache()
    cache.wrote("k", body("1", 0), body("2", 1))
    assert cache.is_echo("k", body("2", 1))
    assert not cache.is_echo("k", body("3", 1)) and not cache.is_echo("other", body("2", 1))


def test_someone_elses_newer_edit_replaces_our_cached_write() -> None:
    cache = WriteCache()
    cache.wrote("k", body("1", 0), body("2", 1))
    assert cache.current("k", body("9", 1))["metadata"]["resourceVersion"] == "9"


async def test_queue_runs_a_key_once_at_a_time_and_folds_adds_into_one_rerun() -> None:
    running, passes = 0, 0
    gate = asyncio.Event()

    async def reconcile(key: str) -> None:
        nonlocal running, passes
        running += 1
        assert running == 1
        passes += 1
        await gate.wait()
        running -= 1

    q = WorkQueue[str](reconcile, workers=4)
    q.start()
    q.add("k")
    await wait_for(lambda: passes == 1)
    for _ in range(5):
        q.add("k")  # while it runs: one more pass afterwards, not five
    gate.set()
    await wait_for(lambda: passes == 2 and running == 0)
    await asyncio.sleep(0.05)
    assert passes == 2
    await q.close()


async def test_urgent_keys_go_before_waiting_ones() -> None:
    order: list[str] = []

    async def reconcile(key: str) -> None:
        order.append(key)

    q = WorkQueue[str](reconcile, workers=1)
    for key in ("a", "b", "c"):
        q.add(key)
    q.add("new", urgent=True)
    q.add("b", urgent=True)  # a waiting key whose spec changed moves up
    q.start()
    await wait_for(lambda: len(order) == 4)
    assert order == ["new", "b", "a", "c"]
    await q.close()


async def test_delayed_adds_keep_the_earliest_time_and_requeues_come_from_the_result() -> None:
    passes: list[float] = []
    loop = asyncio.get_running_loop()

    async def reconcile(key: str) -> float | None:
        passes.append(loop.time())
        return 0.05 if len(passes) == 1 else None  # the first pass asks to run again in 50 ms

    q = WorkQueue[str](reconcile, workers=2)
    q.start()
    t0 = loop.time()
    q.add("k", 5.0)
    q.add("k", 0.02)  # earlier: wins
    q.add("k", 3.0)  # later than the pending one: ignored
    await wait_for(lambda: len(passes) == 2)
    assert passes[0] - t0 < 1.0 and passes[1] - passes[0] >= 0.04
    await asyncio.sleep(0.1)
    assert len(passes) == 2
    await q.close()


async def test_a_failing_pass_is_logged_and_retried_not_lost(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def reconcile(key: str) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    q = WorkQueue[str](reconcile, workers=1)
    q.start()
    q.add("k")
    await wait_for(lambda: calls == 1)
    await wait_for(lambda: "reconcile of k failed" in caplog.text)
    assert len(q._timers) == 1  # retried later
    await q.close()


async def wait_for(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not predicate():  # noqa: ASYNC110  (the wait-for-condition helper itself)
            await asyncio.sleep(0.005)


def test_status_patch_sends_changed_keys_and_nulls_removed_ones() -> None:
    old = {"phase": "Pending", "ready": "0/4", "message": "starting", "replicas": 4}
    new = {"phase": "Running", "ready": "4/4", "replicas": 4}
    assert merge_patch(old, new) == {"phase": "Running", "ready": "4/4", "message": None}
    assert merge_patch(new, new) == {}


async def test_an_urgent_add_while_running_stays_urgent_for_the_rerun() -> None:
    order: list[str] = []
    gate = asyncio.Event()

    async def reconcile(key: str) -> None:
        order.append(key)
        if len(order) == 1:
            await gate.wait()

    q = WorkQueue[str](reconcile, workers=1)
    q.start()
    q.add("job")
    await wait_for(lambda: order == ["job"])
    q.add("other")
    q.add("job", urgent=True)  # e.g. a worker failed while the pass ran
    gate.set()
    await wait_for(lambda: len(order) == 3)
    assert order == ["job", "job", "other"]
    await q.close()


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        (  # a PodLost failure after a crash: the crash's node, exit code and message must go
            {"lastFailure": {"pod": "j-0-1", "node": "n1", "exitCode": 137, "message": "oom", "reason": "Error"}},
            {"lastFailure": {"pod": "j-1-0", "reason": "PodLost"}},
            {"lastFailure": {"pod": "j-1-0", "node": None, "exitCode": None, "message": None, "reason": "PodLost"}},
        ),
        (
            {"cost": {"accruedUsd": 1.0, "projectedTotalUsd": "9.00"}, "phase": "Running"},
            {"cost": {"accruedUsd": 1.5}, "phase": "Running"},
            {"cost": {"accruedUsd": 1.5, "projectedTotalUsd": None}},
        ),
        (
            {"conditions": [{"type": "A"}, {"type": "B"}]},
            {"conditions": [{"type": "A"}]},
            {"conditions": [{"type": "A"}]},
        ),
        ({"progress": {"step": 1}}, {}, {"progress": None}),
        ({}, {"progress": {"step": 1}}, {"progress": {"step": 1}}),
    ],
)
def test_status_patch_nulls_what_is_gone_at_any_depth(old: dict, new: dict, patch: dict) -> None:
    assert merge_patch(old, new) == patch
    assert apply_merge_patch(old, merge_patch(old, new)) == new


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ("/api/v1/namespaces/ns/pods", "pods"),
        ("/api/v1/namespaces/ns/pods/w-0", "pods"),
        ("/api/v1/namespaces/ns/pods/w-0/status?x=1", "pods/status"),
        ("/apis/lepton.ai/v1alpha1/namespaces/ns/trainingjobs/j/status", "trainingjobs/status"),
        ("/apis/coordination.k8s.io/v1/namespaces/s/leases/lepton", "leases"),
        ("/api/v1/nodes", "nodes"),
        ("/api/v1/namespaces/ns", "namespaces"),
        ("/apis/scheduling.k8s.io/v1beta1", "discovery"),
    ],
)
def test_request_metric_labels_name_the_resource_never_an_object(path: str, resource: str) -> None:
    assert resource_of(path) == resource
