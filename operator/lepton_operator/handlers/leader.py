"""Leader election on a coordination.k8s.io/v1 Lease (client-go's algorithm): of several replicas, one leads
and runs the reconcile passes; the others keep their informers warm and write nothing.

The leader renews every `retry_period`; when it has not renewed for `renew_deadline` it stops acting (its
workers are cancelled) before the Lease can expire (`renew_deadline < lease_duration`), so two leaders never
act at once. A standby takes over once the Lease record has not changed for `lease_duration` as measured on
its own clock from when it saw that record - never trusting another replica's clock - so after the leader
dies the standby acts between `lease_duration` and `lease_duration + 2 x retry_period` after the last renewal.
On a clean shutdown the leader releases the Lease (empty holder): the standby takes over at its next poll.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from datetime import UTC, datetime

import aiohttp

from ..kube.errors import ApiError
from ..kube.lease import LeaseRecord, Leases, micro_time

log = logging.getLogger("lepton_operator.leader")


class Leadership:
    """Whether this replica may act: `leading` while it holds the Lease, `standby` otherwise."""

    def __init__(self, leading: bool = False) -> None:
        self.leading, self.standby = asyncio.Event(), asyncio.Event()
        self.set(leading)

    def set(self, leading: bool) -> None:
        (self.leading if leading else self.standby).set()
        (self.standby if leading else self.leading).clear()


def identity() -> str:
    """Unique per process: the pod name (hostname) and a random suffix."""
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


class LeaderElector:
    """Acquires and renews one Lease; tells `leadership`."""

    def __init__(
        self,
        leases: Leases,
        leadership: Leadership,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        me: str | None = None,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("leader election needs retry_period < renew_deadline < lease_duration")
        self.leases, self.leadership, self.me = leases, leadership, me or identity()
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self._seen: LeaseRecord | None = None  # the record last read, and when it changed on our clock
        self._seen_at = 0.0
        self._acquired = ""

    async def run(self) -> None:
        """Acquire, then renew until the deadline passes; again, forever. Stops acting on any way out."""
        try:
            while True:
                await self._acquire()
                log.info("leader election: %s leads (lease %s/%s)", self.me, self.leases.namespace, self.leases.name)
                self.leadership.set(True)
                await self._renew_until_lost()
                self.leadership.set(False)
                log.warning("leader election: %s lost the lease; standing by", self.me)
        finally:
            was_leading = self.leadership.leading.is_set()
            self.leadership.set(False)
            if was_leading:
                await asyncio.shield(self._release())

    async def _acquire(self) -> None:
        while True:
            if await self._attempt(self.retry_period):
                return
            await asyncio.sleep(self.retry_period)

    async def _renew_until_lost(self) -> None:
        renewed = time.monotonic()  # when the last successful renewal was *sent*
        while True:
            await asyncio.sleep(self.retry_period)
            sent = time.monotonic()
            left = self.renew_deadline - (sent - renewed)
            if left > 0 and await self._attempt(left):
                renewed = sent
            elif time.monotonic() - renewed >= self.renew_deadline:
                return

    async def _attempt(self, seconds: float) -> bool:
        """One try to acquire or renew, within `seconds`; False on any failure (logged)."""
        try:
            async with asyncio.timeout(seconds):
                return await self._acquire_or_renew()
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("leader election: %s: %s", self.me, str(exc) or type(exc).__name__)  # a timeout says nothing
            return False

    async def _acquire_or_renew(self) -> bool:
        now = datetime.now(UTC)
        record = await self.leases.get()
        seconds = max(1, round(self.lease_duration))
        if record is None:
            self._acquired = micro_time(now)
            return await self.leases.create(self.me, seconds, now)
        if record != self._seen:
            self._seen, self._seen_at = record, time.monotonic()
        if record.holder and record.holder != self.me:
            if time.monotonic() - self._seen_at < self.lease_duration:
                return False  # held, and renewed within a lease duration as far as we have seen
            log.info("leader election: the lease of %s expired; taking over", record.holder)
        if record.holder != self.me:
            self._acquired = micro_time(now)
        return await self.leases.replace(record, self.me, seconds, self._acquired or micro_time(now), micro_time(now))

    async def _release(self) -> None:
        """Give the Lease up (empty holder) so that a standby need not wait for it to expire."""
        try:
            async with asyncio.timeout(2.0):
                record = await self.leases.get()
                if record is not None and record.holder == self.me:
                    await self.leases.replace(record, "", 1, record.acquire_time, record.renew_time)
                    log.info("leader election: %s released the lease", self.me)
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("leader election: cannot release the lease: %s", exc)
