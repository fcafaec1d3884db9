"""The batcher on its own: one forward pass per batch, results split back, limits respected."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from lepton_trainer.serve.batcher import Array, Batcher


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
