"""Model server under overload, with and without its limits; and liveness while huge bodies arrive.

    .venv/bin/python bench/serve_overload.py [--seconds 10]  -> table, bench/results/serve-overload.json

Overload: one real server on 127.0.0.1 whose capacity is set by its model, not the client's CPU (digits CNN,
--max-batch-size 4, 50 ms added per forward pass: at most ~80 req/s). Capacity is measured closed-loop (64
clients); then an open-loop client sends one-sample requests at 1x and 2x that rate (fixed arrival times, no
cap on outstanding requests, 60 s client timeout) for --seconds. "limits" = the defaults (at most 8 x max
batch size = 32 requests admitted, 5 s wait); "no limits" = 10^6 batches, 1 h, 10^5 connections. Reported: p50/p99 of
the answered (200) requests, shed rate (503), other failures.

Liveness: 4 clients post a body near the 4 MiB limit (240000 numbers: parsed and checked in full, then a 400
for its value count) back to back; /v2/health/live is timed every 100 ms: parsed in a worker thread (default,
bodies over 64 KiB) vs parsed on the event loop (--inline-parse-bytes 8 MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.serve.support import ServerProcess  # noqa: E402

JSON = {"Content-Type": "application/json"}
MODEL = ["--max-batch-size", "4", "--max-wait-ms", "2", "--simulated-latency-ms", "50"]
NO_LIMITS = ["--max-queue-batches", "1000000", "--queue-timeout", "3600", "--max-connections", "100000"]


def export(directory: Path) -> None:
    import torch
    from lepton_trainer.model_io import export_model
    from lepton_trainer.models import DigitsCNN

    torch.manual_seed(0)
    spec = {"shape": [64], "dtype": "float32"}
    labels = [str(i) for i in range(10)]
    export_model(DigitsCNN(), directory, architecture="digits-cnn", config={}, input_spec=spec, labels=labels)


def one_sample() -> bytes:
    return json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [1.0] * 64}]}
    ).encode()


def pct(values: list[float], q: int) -> float | None:
    if len(values) < 2:
        return round(values[0] * 1000, 1) if values else None
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000, 1)


async def closed_loop(url: str, clients: int, seconds: float) -> float:
    """Answered requests per second with `clients` back-to-back senders."""
    body, done = one_sample(), 0
    stop = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def client() -> None:
            nonlocal done
            while time.monotonic() < stop:
                async with session.post(f"{url}/v2/models/m/infer", data=body, headers=JSON) as r:
                    await r.read()
                    done += r.status == 200

        t0 = time.monotonic()
        await asyncio.gather(*(client() for _ in range(clients)))
        return done / (time.monotonic() - t0)


async def open_loop(url: str, rate: float, seconds: float) -> dict[str, Any]:
    """Requests at fixed arrival times, `rate` per second, whatever the server's state."""
    body = one_sample()
    results: list[tuple[int, float]] = []
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        async def one() -> None:
            t0 = time.perf_counter()
            try:
                async with session.post(f"{url}/v2/models/m/infer", data=body, headers=JSON) as r:
                    await r.read()
                    status = r.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            results.append((status, time.perf_counter() - t0))

        loop = asyncio.get_running_loop()
        start, tasks = loop.time(), []
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    ok = [t for s, t in results if s == 200]
    shed = sum(s == 503 for s, _ in results)
    return {
        "sent": len(results),
        "ok": len(ok),
        "p50_ms": pct(ok, 50),
        "p99_ms": pct(ok, 99),
        "max_ms": round(max(ok) * 1000, 1) if ok else None,
        "shed_rate": round(shed / len(results), 3),
        "other_failures": len(results) - len(ok) - shed,
    }


async def liveness_under_big_bodies(url: str, seconds: float) -> dict[str, Any]:
    values = [0.123456789012] * 240_000  # parsed and checked in full, then refused: 240000 values, shape needs 65536
    body = json.dumps({"inputs": [{"name": "input", "shape": [1024, 64], "datatype": "FP32", "data": values}]}).encode()
    assert len(body) <= 4 * 1024 * 1024, len(body)
    probes: list[float] = []
    posted = 0
    stop = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def poster() -> None:
            nonlocal posted
            while time.monotonic() < stop:
                async with session.post(f"{url}/v2/models/m/infer", data=body, headers=JSON) as r:
                    await r.read()
                    posted += 1

        async def prober() -> None:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                async with session.get(f"{url}/v2/health/live") as r:
                    await r.read()
                probes.append(time.perf_counter() - t0)
                await asyncio.sleep(0.1)

        await asyncio.gather(prober(), *(poster() for _ in range(4)))
    return {
        "body_bytes": len(body),
        "bodies": posted,
        "live_p50_ms": pct(probes, 50),
        "live_p99_ms": pct(probes, 99),
        "live_max_ms": round(max(probes) * 1000, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "serve-overload.json")
    args = p.parse_args()
    doc: dict[str, Any] = {"seconds": args.seconds, "model": MODEL, "overload": {}, "liveness": {}}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        export(model_dir)

        def serve(*flags: str) -> ServerProcess:
            s = ServerProcess(model_dir, Path(tmp) / "server.log", *flags, name="m")
            s.wait_up()
            return s

        s = serve(*MODEL, *NO_LIMITS)
        try:
            asyncio.run(closed_loop(s.url, 8, 1.0))  # warm-up
            capacity = asyncio.run(closed_loop(s.url, 64, args.seconds / 2))
        finally:
            s.stop()
        doc["capacity_rps"] = round(capacity, 1)
        print(f"capacity (closed loop, 64 clients): {capacity:.0f} req/s")
        for load in (1, 2):
            for setting, flags in (("no limits", NO_LIMITS), ("limits", [])):
                s = serve(*MODEL, *flags)
                try:
                    asyncio.run(closed_loop(s.url, 8, 1.0))
                    r = asyncio.run(open_loop(s.url, capacity * load, args.seconds))
                finally:
                    s.stop()
                doc["overload"][f"{setting}/{load}x"] = r
                print(f"{setting:<9} {load}x ({capacity * load:.0f} req/s): {r}")
        for setting, flags in (("worker thread", []), ("event loop", ["--inline-parse-bytes", str(8 << 20)])):
            s = serve("--max-batch-size", "32", *flags)
            try:
                r = asyncio.run(liveness_under_big_bodies(s.url, args.seconds))
            finally:
                s.stop()
            doc["liveness"][setting] = r
            print(f"liveness, 4 clients posting 4 MiB bodies, parsed on the {setting}: {r}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
