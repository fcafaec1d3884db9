"""Per-key coalescing of reconciles and delayed requeues."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

Reconcile = Callable[[], Awaitable[float | None]]  # returns seconds until the next pass is due, or None


class Coalescer:
    """Runs at most one reconcile per key at a time; triggers during a run collapse into one re-run.

    Reconciles run in the caller's task (kopf's worker for the triggering event), so no extra queue is
    needed; a requeue (timer) starts a task of its own.
    """

    def __init__(self) -> None:
        self._dirty: dict[Hashable, bool] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def trigger(self, key: Hashable, reconcile: Reconcile) -> None:
        if key in self._dirty:
            self._dirty[key] = True
            return
        self._dirty[key] = False
        try:
            while True:
                delay = await reconcile()
                if delay is not None:
                    self.requeue(key, delay, reconcile)
                if not self._dirty[key]:
                    break
                self._dirty[key] = False
        finally:
            del self._dirty[key]

    def requeue(self, key: Hashable, delay: float, reconcile: Reconcile) -> None:
        """Run the reconcile again after `delay` seconds (replacing an earlier timer of the key)."""
        if old := self._timers.pop(key, None):
            old.cancel()
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(key, None)
            task = loop.create_task(self.trigger(key, reconcile))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._timers[key] = loop.call_later(max(delay, 0.0), fire)

    def forget(self, key: Hashable) -> None:
        if timer := self._timers.pop(key, None):
            timer.cancel()

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class WriteCache:
    """Objects we wrote whose watch events have not reached kopf's index yet.

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

    def forget(self, key: Hashable) -> None:
        self._entries.pop(key, None)
