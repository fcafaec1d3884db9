"""The controller runtime both kinds share: informers feed in-memory indexes; their events queue the owner's key;
a fixed set of workers runs one pass per key at a time (observe -> plan -> apply), retried with exponential
backoff. Pods just created count as existing until the index shows them (create expectations); status is
stored exactly as planned, conditional on the resourceVersion it was planned from; Events are best-effort.

kopf runs the process (start-up, clean-up, liveness); no per-object kopf machinery: it was most of the
operator's CPU in a burst (docs/bench.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiohttp

from ..api.base import KubeModel
from ..constants import API_VERSION
from ..kube.client import Kube, merge_patch
from ..kube.errors import ApiError, Conflict
from ..kube.events import post_event
from ..kube.informer import Index, Informer
from ..reconcile.plan import Event
from .leader import Leadership
from .runtime import WorkQueue, WriteCache

log = logging.getLogger("lepton_operator.controller")
Key = tuple[str, str]
# First retry after a 409 (then doubling, as any retry): a storm of writes to an object (another controller, a
# script annotating jobs) conflicts pass after pass; retrying from 1 s took 12.8 s to recover (bench/chaos.py).
CONFLICT_RETRY = 0.1
CREATE_MEMORY = 10.0  # seconds a created pod counts as existing before the index shows it


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def owner_of(obj: dict[str, Any], label: str) -> Key:
    """The key of the object a child belongs to, from its label."""
    meta = obj["metadata"]
    return meta.get("namespace", ""), (meta.get("labels") or {}).get(label, "")


async def first_to_end(tasks: list[asyncio.Future[Any]]) -> None:
    """Wait until one of `tasks` ends; raise its exception, if it raised one."""
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in done:
        if not t.cancelled() and (exc := t.exception()) is not None:
            raise exc


class Controller:
    """One kind's controller: `informers()` and `sync(key)` are the kind's; the rest is shared."""

    kind = ""  # lower-case kind, for logs
    plural = ""

    def __init__(self, kube: Kube, objects: Index[Key, dict[str, Any]], workers: int, backoff_max: float) -> None:
        self.kube, self.objects, self.backoff_max = kube, objects, backoff_max
        self.queue = WorkQueue[Key](self.reconcile, workers=workers)
        self.listeners: list[Callable[[str, str], None]] = []  # told of every change of an object
        self.written = WriteCache()
        self._failures: dict[Key, int] = {}
        self._created: dict[Key, dict[str, float]] = {}  # pods created that the index has not shown yet
        self._informers: list[Informer] | None = None  # made on the first run, kept across restarts
        self.leadership = Leadership(leading=True)  # replaced by the elector's when replicas elect a leader

    # -- watching --------------------------------------------------------------------------------
    def informers(self) -> list[Informer]:
        raise NotImplementedError

    async def run(self) -> None:
        """Watch; once every informer has listed and while this replica leads, run the workers (no pass ever acts
        on a partial view; a standby keeps its informers warm and writes nothing).

        Runs until an informer or a worker ends, which is a bug: it raises then, for the supervisor
        (supervisor.py) to start it again. The informers are kept, so the relist reports what vanished meanwhile;
        every known key is queued again whenever the workers start."""
        if self._informers is None:
            self._informers = self.informers()
        informers = self._informers
        tasks = [asyncio.create_task(i.run(), name=repr(i)) for i in informers]
        synced = asyncio.ensure_future(asyncio.gather(*(i.synced.wait() for i in informers)))
        try:
            await first_to_end([synced, *tasks])
            if not synced.done():
                raise RuntimeError(f"{self.kind} controller: an informer ended before it listed")
            log.info("%ss: %d informers synced; %d queued", self.kind, len(informers), len(self.queue))
            while True:
                if not await self._until(self.leadership.leading, tasks):
                    break
                self.queue.start()
                for key in list(self.objects):
                    self.queue.add(key)
                if not await self._until(self.leadership.standby, [*tasks, *self.queue.workers]):
                    break
                await self.queue.stop()
                log.warning("%ss: not the leader; workers stopped", self.kind)
            raise RuntimeError(f"{self.kind} controller: a task ended")
        finally:
            synced.cancel()
            for t in tasks:
                t.cancel()
            await asyncio.gather(synced, *tasks, return_exceptions=True)
            await self.queue.close()

    @staticmethod
    async def _until(event: asyncio.Event, tasks: list[asyncio.Task[None]]) -> bool:
        """Wait for `event`: True once set, False when one of `tasks` ended first (raising its exception)."""
        waiter = asyncio.ensure_future(event.wait())
        try:
            await first_to_end([waiter, *tasks])
        finally:
            waiter.cancel()
        return event.is_set()

    def on_object(self, kind: str, obj: dict[str, Any], batch_seconds: float) -> None:
        """An object of the kind changed: index it and queue it (urgent when its spec changed; our own status
        write coming back batched, since a pass need not be a fixed point)."""
        key = key_of(obj)
        for tell in self.listeners:
            tell(*key)
        if kind == "DELETED":
            self.objects.remove(key, key[1])
            self.forget(key)
            return
        obj["metadata"].pop("managedFields", None)  # never read; most of a stored body's size
        self.objects.put(key, key[1], obj)
        if self.written.is_echo(key, obj):
            self.queue.add(key, batch_seconds)
            return
        meta, status = obj["metadata"], obj.get("status") or {}
        self.queue.add(key, urgent=meta.get("generation") != status.get("observedGeneration"))

    def forget(self, key: Key) -> None:
        self.queue.forget(key)
        self.written.forget(key)
        self._created.pop(key, None)
        self._failures.pop(key, None)

    def body(self, key: Key) -> dict[str, Any] | None:
        """The object as last seen, or as our last status write returned it while the index lags behind."""
        store = self.objects.get(key)
        return self.written.current(key, next(iter(store))) if store else None

    # -- one pass ----------------------------------------------------------------------------------
    async def sync(self, key: Key) -> float | None:
        """Observe, plan, apply; seconds until the key wants another pass, or None."""
        raise NotImplementedError

    async def reconcile(self, key: Key) -> float | None:
        """One pass; API errors are retried with backoff (a Conflict soon, quietly: plan again from the newer
        version, which the watch delivers within moments)."""
        try:
            return await self.sync(key)
        except Conflict as exc:
            log.info("%s %s/%s: changed meanwhile; planning again", self.kind, *key)
            return self.retry_after(key, exc, quiet=True, first=CONFLICT_RETRY)
        except ApiError as exc:
            if exc.namespace_gone:
                log.debug("%s %s/%s: its namespace is going away", self.kind, *key)
                self.forget(key)
                return None
            return self.retry_after(key, exc)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return self.retry_after(key, exc)

    def succeeded(self, key: Key, requeue: float | None) -> float | None:
        self._failures.pop(key, None)
        return requeue

    def retry_after(self, key: Key, exc: object, quiet: bool = False, first: float = 1.0) -> float:
        """Exponential backoff (capped) after a failed apply, from `first` seconds; the next pass recomputes
        everything."""
        tries = self._failures[key] = self._failures.get(key, 0) + 1
        delay = min(self.backoff_max, first * (1 << min(tries - 1, 10)))
        if not quiet:
            log.warning("%s %s/%s: apply failed (%s); retrying in %.1fs", self.kind, *key, exc, delay)
        return delay

    async def write_status(self, key: Key, body: dict[str, Any], status: KubeModel, **extra: Any) -> None:
        """Store exactly `status` (and `extra` wire fields): a merge patch from the stored status (nulls at any
        depth), conditional on the resourceVersion the plan was made from (Conflict when it moved meanwhile)."""
        patch = merge_patch(body.get("status") or {}, status.to_wire() | extra)
        if patch:
            rv = body["metadata"].get("resourceVersion")
            updated = await self.kube.patch_status(API_VERSION, self.plural, *key, patch, rv)
            if updated is not None:
                updated["metadata"].pop("managedFields", None)
                self.written.wrote(key, body, updated)

    async def post_events(self, body: dict[str, Any], events: list[Event], now: datetime) -> None:
        """After the status write; a lost Event is logged, never fails or repeats the pass."""
        for ev in events:
            await post_event(self.kube, body, ev.type, ev.reason, ev.message, now)

    # -- create expectations -----------------------------------------------------------------------
    def not_in_flight(self, key: Key, objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop creates of pods created moments ago that the (lagging) index does not show yet."""
        now = time.monotonic()
        recent = {n: t for n, t in self._created.pop(key, {}).items() if now - t < CREATE_MEMORY}
        if recent:
            self._created[key] = recent
        return [o for o in objs if o["kind"] != "Pod" or o["metadata"]["name"] not in recent]

    def remember(self, key: Key, created: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        names = {o["metadata"]["name"]: now for o in created if o["kind"] == "Pod"}
        if names:
            self._created.setdefault(key, {}).update(names)

    def deleted(self, key: Key, pods: list[str]) -> None:
        """Pods deleted on purpose: they may be created again (resume) at once."""
        recent = self._created.get(key, {})
        for pod in pods:
            recent.pop(pod, None)
