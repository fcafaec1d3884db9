"""The batcher on its own: one forward pass per batch, results split back, limits respected."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from lepton_trainer.serve.batcher import Array, Batcher, BatcherDown, Forward, Overloaded


async def run(n: int, max_batch: int, max_wait: float, rows_each: int = 1) -> tuple[list[int], list[Array]]:
    sizes: list[int] = []

    async def forward(x: Array) -> Array:
        sizes.append(len(x))
        await asyncio.sleep(0.01)
        return x * 2

    b = Batcher(forward, max_batch, max_wait)
    b.start()
    try:
        inputs = [np.full((rows_each, 3), i, dtype=np.float32) for i in range(n)]
        outs = await asyncio.gather(*(b.submit(x) for x in inputs))
    finally:
        await b.stop()
    for i, out in enumerate(outs):
        assert out.shape == (rows_each, 3) and np.all(out == 2 * i)  # each caller gets its own rows back
    return sizes, outs


@pytest.mark.parametrize(
    ("n", "max_batch", "rows_each", "want"),
    [
        (10, 4, 1, [4, 4, 2]),  # full batches, then what is left when the wait ends
        (10, 1, 1, [1] * 10),  # batching off: one request per pass
        (5, 4, 3, [3, 3, 3, 3, 3]),  # a request never splits; two of 3 rows exceed 4
        (6, 8, 2, [8, 4]),
    ],
)
async def test_batches(n: int, max_batch: int, rows_each: int, want: list[int]) -> None:
    sizes, _ = await run(n, max_batch, max_wait=0.05, rows_each=rows_each)
    assert sizes == want


async def test_a_lone_request_waits_at_most_max_wait() -> None:
    t0 = asyncio.get_running_loop().time()
    sizes, _ = await run(1, 32, max_wait=0.05)
    assert sizes == [1] and asyncio.get_running_loop().time() - t0 < 0.5


async def test_a_failing_forward_fails_every_request_of_the_batch() -> None:
    async def forward(x: Array) -> Array:
        raise RuntimeError("boom")

    b = Batcher(forward, 4, 0.01)
    b.start()
    try:
        results = await asyncio.gather(
            *(b.submit(np.zeros((1, 2), np.float32)) for _ in range(3)), return_exceptions=True
        )
    finally:
        await b.stop()
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_503_while_the_model_loads() -> None:
    from pathlib import Path

    import httpx
    from lepton_trainer.serve.app import BatchingConfig, Server
    from lepton_trainer.serve.model import ServedModel

    server = Server(ServedModel("digits", Path("/nowhere")), BatchingConfig())  # lifespan not run: still Loading
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app), base_url="http://test") as client:
        ready = await client.get("/v2/health/ready")
        assert ready.status_code == 503 and ready.json()["state"] == "Loading"
        infer = await client.post("/v2/models/digits/infer", json={"inputs": []})
        assert infer.status_code == 503 and "not ready (Loading)" in infer.json()["error"]
        assert (await client.get("/v2/health/live")).status_code == 200


def _slow_forward(started: asyncio.Event, release: asyncio.Event) -> Forward:
    async def forward(x: Array) -> Array:
        started.set()
        await release.wait()
        return x

    return forward


async def test_a_full_queue_refuses_at_once_and_a_long_wait_times_out() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    b = Batcher(_slow_forward(started, release), 1, 0.0, max_queue=3, timeout=0.3)
    b.start()
    row = np.zeros((1, 2), np.float32)
    try:
        running = asyncio.ensure_future(b.submit(row))  # taken by the consumer, blocked in forward
        await started.wait()
        queued = [asyncio.ensure_future(b.submit(row)) for _ in range(2)]
        await asyncio.sleep(0)  # both are in the queue now
        assert b.waiting == 3  # one running, two queued
        with pytest.raises(Overloaded, match="3 requests are already waiting"):
            await b.submit(row)
        results = await asyncio.gather(running, *queued, return_exceptions=True)
        assert all(isinstance(r, Overloaded) and "no result within 0.3 s" in str(r) for r in results), results
        release.set()
        assert (await b.submit(row)).shape == (1, 2)  # the batcher still works afterwards
    finally:
        await b.stop()


async def test_a_dead_batcher_fails_waiting_and_new_requests_at_once() -> None:
    deaths: list[str] = []

    def broken(requests: int, rows: int) -> None:
        raise RuntimeError("bug in the batcher")

    async def forward(x: Array) -> Array:
        return x

    b = Batcher(forward, 4, 0.01, broken, timeout=30, on_death=deaths.append)
    b.start()
    row = np.zeros((1, 2), np.float32)
    try:
        results = await asyncio.wait_for(asyncio.gather(*(b.submit(row) for _ in range(3)), return_exceptions=True), 5)
        assert all(isinstance(r, BatcherDown) for r in results), results
        assert deaths == ["the batcher stopped: RuntimeError: bug in the batcher"] and b.failure == deaths[0]
        with pytest.raises(BatcherDown):
            await asyncio.wait_for(b.submit(row), 1)
    finally:
        await b.stop()
