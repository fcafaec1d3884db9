"""Leader election on a Lease: one leader at a time, the leader stops acting before its Lease can expire, a
standby takes over after it expired (or at once when released), and only the leader's workers run passes."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import aiohttp
import pytest
from lepton_operator.handlers.leader import LeaderElector, Leadership
from lepton_operator.kube.lease import LeaseRecord, micro_time

from .test_runtime import wait_for
from .test_supervisor import StubController

TIMES = {"lease_duration": 0.6, "renew_deadline": 0.3, "retry_period": 0.05}


class Store:
    """One Lease in memory, versioned like the API server's."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.version = 0

    def write(self, holder: str, seconds: int, acquired: str, renewed: str, transitions: int) -> None:
        self.version += 1
        self.record = LeaseRecord(holder, seconds, renewed, acquired, transitions, str(self.version))


class FakeLeases:
    """A replica's view of the Store; `down` makes every call fail, as a partition or a dead process."""

    namespace, name = "ops", "lepton-operator"

    def __init__(self, store: Store) -> None:
        self.store, self.down = store, False

    def _check(self) -> None:
        if self.down:
            raise aiohttp.ClientConnectionError("partitioned")

    async def get(self) -> LeaseRecord | None:
        self._check()
        return self.store.record

    async def create(self, holder: str, seconds: int, now: datetime) -> bool:
        self._check()
        if self.store.record is not None:
            return False
        self.store.write(holder, seconds, micro_time(now), micro_time(now), 0)
        return True

    async def replace(self, old: LeaseRecord, holder: str, seconds: int, acquired: str, renewed: str) -> bool:
        self._check()
        current = self.store.record
        if current is None or current.resource_version != old.resource_version:
            return False
        self.store.write(holder, seconds, acquired, renewed, old.transitions + (holder != old.holder))
        return True


def replica(store: Store, me: str, **times: float) -> tuple[LeaderElector, Leadership, FakeLeases]:
    leases, leadership = FakeLeases(store), Leadership()
    elector = LeaderElector(leases, leadership, me=me, **(TIMES | times))  # type: ignore[arg-type]
    return elector, leadership, leases


class Overlap:
    """Records whether two replicas ever led at once, checked at every event-loop turn."""

    def __init__(self, *leaderships: Leadership) -> None:
        self.leaderships, self.seen = leaderships, False
        self.task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            self.seen |= sum(x.leading.is_set() for x in self.leaderships) > 1
            await asyncio.sleep(0)


async def test_one_leader_and_a_dead_leader_is_replaced_after_its_lease_without_overlap() -> None:
    store = Store()
    a, la, leases_a = replica(store, "a")
    b, lb, _ = replica(store, "b")
    overlap = Overlap(la, lb)
    ta = asyncio.create_task(a.run())
    await wait_for(la.leading.is_set)
    tb = asyncio.create_task(b.run())
    await wait_for(lambda: store.version >= 4)  # a renews while b watches
    assert not lb.leading.is_set() and lb.standby.is_set()
    leases_a.down, cut = True, time.monotonic()  # a is cut off: it must stop before b can start
    await wait_for(la.standby.is_set)
    stopped = time.monotonic() - cut
    await wait_for(lb.leading.is_set)
    took_over = time.monotonic() - cut
    # a stopped before b started (no overlap, checked at every loop turn), and b waited out the lease: a slow
    # machine only delays both (no upper bound asserted: timings are for bench/leader_takeover.py)
    assert stopped < took_over
    assert took_over > TIMES["lease_duration"] - 2 * TIMES["retry_period"]
    assert store.record is not None and store.record.holder == "b" and store.record.transitions == 1
    assert not overlap.seen
    for t in (ta, tb, overlap.task):
        t.cancel()
    await asyncio.gather(ta, tb, overlap.task, return_exceptions=True)


async def test_a_leader_that_stops_releases_the_lease_and_the_standby_takes_over_at_once() -> None:
    store = Store()
    # a lease far longer than the test: only a release lets b take over before the wait times out
    long_lease = {"lease_duration": 60.0, "renew_deadline": 30.0}
    a, la, _ = replica(store, "a", **long_lease)
    b, lb, _ = replica(store, "b", **long_lease)
    ta = asyncio.create_task(a.run())
    await wait_for(la.leading.is_set)
    tb = asyncio.create_task(b.run())
    await wait_for(lambda: store.version >= 3)
    ta.cancel()
    await asyncio.gather(ta, return_exceptions=True)
    assert store.record is not None and store.record.holder == "" and la.standby.is_set()
    released = time.monotonic()
    await wait_for(lb.leading.is_set)
    assert time.monotonic() - released < long_lease["lease_duration"]
    tb.cancel()
    await asyncio.gather(tb, return_exceptions=True)


def test_the_deadline_must_come_before_the_lease_expires() -> None:
    with pytest.raises(ValueError, match="renew_deadline < lease_duration"):
        LeaderElector(FakeLeases(Store()), Leadership(), lease_duration=10, renew_deadline=10)  # type: ignore[arg-type]


async def test_only_the_leader_runs_passes_and_a_lost_lease_stops_its_workers() -> None:
    c = StubController()
    c.leadership = Leadership(leading=False)
    run = asyncio.create_task(c.run())
    await wait_for(lambda: c.stub.synced.is_set())
    assert c.queue.workers == [] and c.passes == []  # warm informers, no pass
    c.leadership.set(True)
    await wait_for(lambda: c.passes == [("ns", "a")])
    c.leadership.set(False)
    await wait_for(lambda: c.queue.workers == [])
    c.queue.add(("ns", "a"))  # an event while standing by: queued, not run
    c.leadership.set(True)
    await wait_for(lambda: len(c.passes) == 2)
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
