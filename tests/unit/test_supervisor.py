"""Background tasks are supervised: a controller whose informer or worker ends raises (instead of going quiet),
the supervisor starts it again with backoff, and health fails while a task keeps failing."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import kopf
import pytest
from lepton_operator import settings
from lepton_operator.handlers.controller import Controller
from lepton_operator.handlers.supervisor import Supervisor
from lepton_operator.kube.informer import Index

from .test_runtime import wait_for


class StubInformer:
    """Lists at once, then watches until told to fail."""

    def __init__(self) -> None:
        self.synced = asyncio.Event()
        self.fail = asyncio.Event()
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        self.synced.set()
        await self.fail.wait()
        self.fail.clear()
        raise KeyError("a bug")


class StubController(Controller):
    kind = "stub"

    def __init__(self) -> None:
        super().__init__(None, Index(), workers=2, backoff_max=1.0)  # type: ignore[arg-type]
        self.stub = StubInformer()
        self.passes: list[Any] = []
        self.objects.put(("ns", "a"), "a", {"metadata": {"name": "a"}})

    def informers(self) -> Any:
        return [self.stub]

    async def sync(self, key: Any) -> float | None:
        self.passes.append(key)
        return None


async def test_a_dead_worker_ends_the_controller_run() -> None:
    c = StubController()
    run = asyncio.create_task(c.run())
    await wait_for(lambda: len(c.queue.workers) == 2 and c.passes == [("ns", "a")])
    c.queue.workers[0].cancel()  # a worker gone: before, run() went on watching with one worker less, silently
    with pytest.raises(RuntimeError, match="a task ended"):
        await asyncio.wait_for(run, 5)
    assert c.queue.workers == []


async def test_a_crashed_informer_is_restarted_with_its_memory_and_every_key_queued_again() -> None:
    c = StubController()
    sup = Supervisor(backoff=0.001, unhealthy_after=3)
    sup.start("stub", c.run)
    await wait_for(lambda: c.passes == [("ns", "a")])
    c.stub.fail.set()
    await wait_for(lambda: c.stub.runs == 2 and len(c.passes) == 2)  # same informer object; the key passed again
    assert sup.health()["stub"].startswith("ok (restarted after: KeyError")
    assert sup.healthy()
    await sup.close()


async def test_health_fails_while_a_task_keeps_failing_and_recovers_after_a_stable_run() -> None:
    crashes, now = 0, [0.0]
    release = asyncio.Event()

    async def flaky() -> None:
        nonlocal crashes
        if crashes < 3:
            crashes += 1
            raise ValueError(f"crash {crashes}")
        await release.wait()
        release.clear()

    sup = Supervisor(backoff=0.001, unhealthy_after=3, stable_seconds=60.0, clock=lambda: now[0])
    sup.start("flaky", flaky)
    await wait_for(lambda: crashes == 3 and sup.tasks["flaky"].started is not None)
    assert not sup.healthy()
    assert "3 failures in a row, last: ValueError: crash 3" in sup.health()["flaky"]
    with pytest.raises(kopf.PermanentError, match="flaky"):
        settings.tasks_alive(memo=kopf.Memo(supervisor=sup))
    now[0] = 61.0  # up for a minute since: healthy again
    assert settings.tasks_alive(memo=kopf.Memo(supervisor=sup))["flaky"].startswith("ok (restarted after")
    release.set()  # a run that returns is a failure too; after a stable run the count starts again
    await wait_for(lambda: sup.tasks["flaky"].failures == 1)
    assert sup.health()["flaky"] == "ok (restarted after: returned)"
    await sup.close()
    assert sup.health() == {"flaky": "stopped"}
    assert not sup.healthy()


async def test_backoff_doubles_to_its_cap() -> None:
    sup = Supervisor(backoff=0.001, backoff_max=0.004, unhealthy_after=99)
    ends: list[float] = []

    async def crash() -> None:
        ends.append(asyncio.get_running_loop().time())
        raise ValueError

    sup.start("crash", crash)
    await wait_for(lambda: len(ends) >= 6)
    await sup.close()
    gaps = [b - a for a, b in itertools.pairwise(ends)]
    assert gaps[0] >= 0.001 and gaps[1] >= 0.002 and all(g >= 0.004 for g in gaps[2:5])
