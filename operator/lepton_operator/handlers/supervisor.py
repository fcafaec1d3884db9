"""Supervision of the operator's long-lived tasks (controllers with their informers and workers, the price
reload, leader election).

A task that ends - by an exception (a bug: every expected failure is retried inside the task) or by returning -
is logged with its traceback and started again after an exponential backoff, rather than failing the process:
a restart lists again and keeps every other job served, and one object that trips a bug does not stop the rest.
A task that keeps failing (`unhealthy_after` times in a row, each run shorter than `stable_seconds`, and not
up for `stable_seconds` since) makes `healthy()` false, so /healthz fails and the kubelet restarts the process.
Restarts are counted in a metric.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from .. import metrics

log = logging.getLogger("lepton_operator.supervisor")
Factory = Callable[[], Coroutine[Any, Any, None]]


@dataclass
class Supervised:
    name: str
    factory: Factory
    failures: int = 0  # in a row, each run shorter than stable_seconds
    last_error: str = ""
    started: float | None = None  # when the current run started; None while waiting to start again
    task: asyncio.Task[None] | None = None


class Supervisor:
    """Keeps named tasks running; `health()` says how each one is."""

    def __init__(
        self,
        backoff: float = 1.0,
        backoff_max: float = 30.0,
        unhealthy_after: int = 3,
        stable_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backoff, self.backoff_max, self.clock = backoff, backoff_max, clock
        self.unhealthy_after, self.stable_seconds = unhealthy_after, stable_seconds
        self.tasks: dict[str, Supervised] = {}

    def start(self, name: str, factory: Factory) -> None:
        entry = self.tasks[name] = Supervised(name, factory)
        entry.task = asyncio.get_running_loop().create_task(self._keep(entry), name=f"supervised {name}")

    async def _keep(self, entry: Supervised) -> None:
        while True:
            entry.started = started = self.clock()
            try:
                await entry.factory()
                error = "returned"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the outermost boundary of a background task: log it, start it again
                log.exception("task %s failed", entry.name)
                error = f"{type(exc).__name__}: {exc}"
            else:
                log.error("task %s returned", entry.name)
            entry.started = None
            if self.clock() - started >= self.stable_seconds:
                entry.failures = 0
            entry.failures += 1
            entry.last_error = error[:512]
            metrics.TASK_RESTARTS.labels(entry.name).inc()
            delay = min(self.backoff_max, self.backoff * 2 ** (entry.failures - 1))
            log.warning("task %s: restarting in %.1fs (failure %d in a row)", entry.name, delay, entry.failures)
            await asyncio.sleep(delay)

    def health(self) -> dict[str, str]:
        """Task name -> "ok", or what is wrong with it."""
        out = {}
        for name, e in self.tasks.items():
            if e.task is None or e.task.done():
                out[name] = "stopped"
            elif e.failures >= self.unhealthy_after and (
                e.started is None or self.clock() - e.started < self.stable_seconds
            ):
                out[name] = f"failing: {e.failures} failures in a row, last: {e.last_error}"
            elif e.failures:
                out[name] = f"ok (restarted after: {e.last_error})"
            else:
                out[name] = "ok"
        return out

    def healthy(self) -> bool:
        return all(state.startswith("ok") for state in self.health().values())

    async def close(self) -> None:
        """Stop the tasks in the reverse order of their start (the controllers before the leader election that
        gates them: the Lease is released only once nothing acts any more)."""
        for e in reversed(list(self.tasks.values())):
            if e.task is not None:
                e.task.cancel()
                await asyncio.gather(e.task, return_exceptions=True)
