"""Coalescing of reconciles and the cache of our own writes."""

from __future__ import annotations

import asyncio

from lepton_operator.handlers.runtime import Coalescer, WriteCache


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


def test_someone_elses_newer_edit_replaces_our_cached_write() -> None:
    cache = WriteCache()
    cache.wrote("k", body("1", 0), body("2", 1))
    assert cache.current("k", body("9", 1))["metadata"]["resourceVersion"] == "9"


async def test_coalescer_runs_one_pass_at_a_time_and_folds_triggers_into_one_rerun() -> None:
    running, passes = 0, 0
    gate = asyncio.Event()

    async def reconcile() -> None:
        nonlocal running, passes
        running += 1
        assert running == 1
        passes += 1
        await gate.wait()
        running -= 1

    c = Coalescer()
    first = asyncio.create_task(c.trigger("k", reconcile))
    await asyncio.sleep(0)
    await asyncio.gather(*(c.trigger("k", reconcile) for _ in range(5)))  # return at once: folded
    gate.set()
    await first
    assert passes == 2
