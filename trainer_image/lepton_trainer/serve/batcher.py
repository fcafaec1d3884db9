"""Dynamic batching: requests that arrive close together share one forward pass.

One consumer task takes the first waiting request and whatever else is queued; when that is more than one
request it keeps collecting until the batch holds ``max_batch_size`` rows or ``max_wait`` seconds have passed
since the first request (a lone request with nothing queued runs at once); it runs ONE forward
pass over the concatenated rows and hands every request its own slice. While a pass runs, new requests
queue up, so under load batches fill without waiting. ``max_batch_size=1`` turns batching off.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]
Forward = Callable[[Array], Awaitable[Array]]


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
    ) -> None:
        if max_batch_size < 1 or max_wait < 0:
            raise ValueError("max_batch_size must be >= 1 and max_wait >= 0")
        self.forward, self.max_batch_size, self.max_wait, self.on_batch = forward, max_batch_size, max_wait, on_batch
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._carry: _Item | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, rows: Array) -> Array:
        """The model's output rows for ``rows`` (computed in some batch)."""
        future: asyncio.Future[Array] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(rows, future))
        return await future

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
        first = await self._next(None)
        assert first is not None
        batch, rows = [first], len(first.rows)
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
