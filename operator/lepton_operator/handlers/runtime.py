"""Scheduling of reconciles: a work queue with a fixed number of workers, per-key coalescing, delayed requeues."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

log = logging.getLogger("lepton_operator.runtime")

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """Keys waiting for a reconcile, served by `workers` tasks (the shape of controller-runtime's queue).

    A key is reconciled by one worker at a time. Adds while it waits collapse into one pass; an add while it
    runs queues it once more for after the run. Urgent keys (new or changed specs) go before the rest, so a
    burst of status-only passes never delays the creation of a new job's pods. `add(key, delay)` waits
    `delay` seconds first (an earlier pending time wins), which batches a job's pod events into one pass.
    A reconcile returns seconds until it wants to run again, or None; an exception is logged and retried.
    """

    def __init__(self, reconcile: Callable[[K], Awaitable[float | None]], workers: int = 16) -> None:
        self._reconcile, self._workers = reconcile, workers
        self._urgent: deque[K] = deque()
        self._normal: deque[K] = deque()
        self._queued: set[K] = set()
        self._running: set[K] = set()
        self._again: dict[K, bool] = {}  # added while running -> urgent
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._tokens: asyncio.Queue[None] = asyncio.Queue()  # one per queued key: wakes exactly one worker
        self._tasks: list[asyncio.Task[None]] = []

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def workers(self) -> list[asyncio.Task[None]]:
        """The running worker tasks (they never end by themselves: one that does is a bug)."""
        return list(self._tasks)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work(), name=f"reconcile worker {i}") for i in range(self._workers)]

    async def stop(self) -> None:
        """Stop the workers (a pass under way is cancelled); queued keys and timers stay for the next start."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()
        self._again.clear()  # whoever starts the workers again queues every key

    def add(self, key: K, delay: float = 0.0, *, urgent: bool = False) -> None:
        if delay > 0:
            self._add_later(key, delay)
            return
        if key in self._running:
            self._again[key] = self._again.get(key, False) or urgent
            return
        if key in self._queued:
            if urgent and key in self._normal:
                self._normal.remove(key)  # O(n), only for a key whose spec changed while it waited
                self._urgent.append(key)
            return
        self._queued.add(key)
        (self._urgent if urgent else self._normal).append(key)
        self._tokens.put_nowait(None)

    def _add_later(self, key: K, delay: float) -> None:
        due = time.monotonic() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()

        def fire() -> None:
            self._timers.pop(key, None)
            self.add(key)

        self._timers[key] = (due, asyncio.get_running_loop().call_later(delay, fire))

    def forget(self, key: K) -> None:
        """Drop timers of a deleted object (a pass already queued finds it gone and does nothing)."""
        if pending := self._timers.pop(key, None):
            pending[1].cancel()

    async def _work(self) -> None:
        while True:
            await self._tokens.get()
            key = (self._urgent or self._normal).popleft()
            self._queued.discard(key)
            self._running.add(key)
            try:
                delay = await self._reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # the outermost boundary of a pass: log it, retry the key later
                log.exception("reconcile of %s failed", key)
                delay = 5.0
            finally:
                self._running.discard(key)
            if delay is not None:
                self.add(key, max(delay, 0.001))
            if key in self._again:
                self.add(key, urgent=self._again.pop(key))

    async def close(self) -> None:
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        await self.stop()


class WriteCache:
    """Objects we wrote whose watch events have not reached the informer's index yet.

    The index may lag several of our writes behind. While it still shows a version older than our last
    write, our write's response is the truth; once it shows anything else (ours, or someone's newer
    edit), the index is. Without this, a pass could act on an old restart epoch and undo a newer one.
    """

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[frozenset[str], dict[str, Any]]] = {}

    @staticmethod
    def _rv(body: dict[str, Any]) -> str:
        return str(body.get("metadata", {}).get("resourceVersion", ""))

    def current(self, key: Hashable, indexed: dict[str, Any]) -> dict[str, Any]:
        entry = self._entries.get(key)
        if entry is None:
            return indexed
        older, newest = entry
        if self._rv(indexed) in older:
            return newest
        del self._entries[key]
        return indexed

    def wrote(self, key: Hashable, based_on: dict[str, Any], response: dict[str, Any]) -> None:
        older = self._entries[key][0] if key in self._entries else frozenset()
        self._entries[key] = (older | {self._rv(based_on)}, response)

    def is_echo(self, key: Hashable, indexed: dict[str, Any]) -> bool:
        """The object is exactly our last write of it, coming back through the watch."""
        entry = self._entries.get(key)
        return entry is not None and self._rv(indexed) == self._rv(entry[1])

    def forget(self, key: Hashable) -> None:
        self._entries.pop(key, None)
