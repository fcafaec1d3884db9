"""Dynamic batching: requests that arrive close together share one forward pass.

One consumer task takes the first waiting request and whatever else is queued; when that is more than one
request it keeps collecting until the batch holds ``max_batch_size`` rows or ``max_wait`` seconds have passed
since the first request (a lone request with nothing queued runs at once); it runs ONE forward
pass over the concatenated rows and hands every request its own slice. While a pass runs, new requests
queue up, so under load batches fill without waiting. ``max_batch_size=1`` turns batching off.

Bounded: at most ``max_queue`` requests wait (beyond, ``submit`` raises Overloaded at once) and a request
waits at most ``timeout`` seconds for its result (then Overloaded). Supervised: if the consumer task dies,
every waiting and later request gets BatcherDown at once and ``on_death(reason)`` is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]
Forward = Callable[[Array], Awaitable[Array]]
log = logging.getLogger("lepton_trainer.serve")


class Overloaded(Exception):
    """The queue is full, or the request waited ``timeout`` s: retry later (503 + Retry-After)."""


class BatcherDown(Exception):
    """The consumer task died; the server cannot answer inferences any more (503, liveness fails)."""


@dataclass
class _Item:
    rows: Array
    future: asyncio.Future[Array]


class Batcher:
    """Collects submitted rows into batches for ``forward``; ``on_batch(requests, rows)`` sees each batch."""

    def __init__(
        self,
        forward: Forward,
        max_batch_size: int,
        max_wait: float,
        on_batch: Callable[[int, int], None] = lambda requests, rows: None,
        *,
        max_queue: int = 256,
        timeout: float = 5.0,
        on_death: Callable[[str], None] = lambda reason: None,
    ) -> None:
        if max_batch_size < 1 or max_wait < 0 or max_queue < 1 or timeout <= 0:
            raise ValueError("max_batch_size, max_queue must be >= 1, max_wait >= 0, timeout > 0")
        self.forward, self.max_batch_size, self.max_wait, self.on_batch = forward, max_batch_size, max_wait, on_batch
        self.max_queue, self.timeout, self.on_death = max_queue, timeout, on_death
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()  # bounded by _pending (timed-out items don't count)
        self._pending = 0  # requests in submit(): queued or in the running batch
        self._carry: _Item | None = None
        self._batch: list[_Item] = []  # the batch being collected or run
        self._task: asyncio.Task[None] | None = None
        self.failure: str | None = None  # why the consumer died

    @property
    def waiting(self) -> int:
        return self._pending

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._supervised(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, rows: Array) -> Array:
        """The model's output rows for ``rows`` (computed in some batch); Overloaded or BatcherDown at once
        when the queue is full or the consumer is dead, Overloaded after ``timeout`` s."""
        if self.failure is not None:
            raise BatcherDown(self.failure)
        if self._pending >= self.max_queue:
            raise Overloaded(f"{self.max_queue} requests are already waiting for the model")
        future: asyncio.Future[Array] = asyncio.get_running_loop().create_future()
        self._pending += 1
        try:
            self._queue.put_nowait(_Item(rows, future))
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            raise Overloaded(f"no result within {self.timeout:g} s (the model is overloaded)") from None
        finally:
            self._pending -= 1

    async def _supervised(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the consumer must never die silently: fail everything, tell the server
            self.failure = f"the batcher stopped: {type(exc).__name__}: {exc}"
            log.exception("%s", self.failure)
            pending = [*self._batch, *([self._carry] if self._carry else [])]
            while not self._queue.empty():
                pending.append(self._queue.get_nowait())
            for item in pending:
                if not item.future.done():
                    item.future.set_exception(BatcherDown(self.failure))
            self.on_death(self.failure)

    async def _next(self, wait: float | None) -> _Item | None:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        if wait is None:
            return await self._queue.get()
        if not self._queue.empty():
            return self._queue.get_nowait()
        if wait <= 0:
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), wait)
        except TimeoutError:
            return None

    async def _collect(self) -> list[_Item]:
        loop = asyncio.get_running_loop()
        self._batch = []
        first = await self._next(None)
        assert first is not None
        batch, rows = self._batch, len(first.rows)
        batch.append(first)
        deadline = loop.time() + self.max_wait
        while rows < self.max_batch_size:
            # A lone request with nothing else queued runs at once (no added latency at low load); once
            # requests are queueing up, the batch waits up to max_wait for more to arrive.
            wait = deadline - loop.time() if len(batch) > 1 else 0.0
            item = await self._next(wait)
            if item is None:
                break
            if rows + len(item.rows) > self.max_batch_size:
                self._carry = item  # first of the next batch
                break
            batch.append(item)
            rows += len(item.rows)
        return [i for i in batch if not i.future.done()]  # drop requests whose client went away

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            if not batch:
                continue
            self.on_batch(len(batch), sum(len(i.rows) for i in batch))
            try:
                joined = batch[0].rows if len(batch) == 1 else np.concatenate([i.rows for i in batch])
                out = await self.forward(joined)
            except Exception as exc:  # the model failed: every request of the batch gets the error
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            start = 0
            for item in batch:
                end = start + len(item.rows)
                if not item.future.done():
                    item.future.set_result(out[start:end])
                start = end
