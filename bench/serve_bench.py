"""Model server throughput and latency, with and without dynamic batching, at concurrency 1, 8, 32 (CPU).

    .venv/bin/python bench/serve_bench.py [--seconds 6] [--model digits|mlp]  -> table, ratio, bench/results/serve.json

One real server process per setting on 127.0.0.1 (1 torch thread), closed-loop aiohttp clients in this process,
one-sample OIP v2 requests. Batching on: --max-batch-size 32 --max-wait-ms 2; off: --max-batch-size 1
(--max-queue-batches 64). Overload and shedding: bench/serve_overload.py.
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

JSON = {"Content-Type": "application/json"}  # the server answers 415 to other body types
# Batching off admits 8 x 1 requests by default (the rest get 503): admit 64 so c32 measures throughput, not shedding.
SETTINGS = {
    "batching": ["--max-batch-size", "32", "--max-wait-ms", "2"],
    "no batching": ["--max-batch-size", "1", "--max-queue-batches", "64"],
}


def export(model: str, directory: Path) -> int:
    import torch
    from lepton_trainer.model_io import export_model
    from lepton_trainer.models import MLP, DigitsCNN

    torch.manual_seed(0)
    if model == "digits":
        net, arch, cfg, features = DigitsCNN(), "digits-cnn", {}, 64
    else:
        cfg = {"features": 256, "hidden": 1024, "layers": 2, "classes": 10}
        net, arch, features = MLP(**cfg), "mlp", 256
    spec = {"shape": [features], "dtype": "float32"}
    export_model(net, directory, architecture=arch, config=cfg, input_spec=spec, labels=[str(i) for i in range(10)])
    return features


async def drive(url: str, features: int, concurrency: int, seconds: float) -> dict[str, Any]:
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, features], "datatype": "FP32",
                                   "data": [1.0] * features}]}).encode()  # fmt: skip
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:

        async def client() -> None:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                async with session.post(f"{url}/v2/models/m/infer", data=body, headers=JSON) as r:
                    await r.read()
                    assert r.status == 200, r.status
                latencies.append(time.perf_counter() - t0)

        t0 = time.monotonic()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.monotonic() - t0
    q = statistics.quantiles(latencies, n=100)
    return {"rps": round(len(latencies) / elapsed, 1), "p50_ms": round(q[49] * 1000, 2),
            "p99_ms": round(q[98] * 1000, 2), "requests": len(latencies)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--model", choices=["digits", "mlp"], default="digits")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "serve.json")
    args = p.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        features = export(args.model, model_dir)
        for setting, flags in SETTINGS.items():
            server = ServerProcess(model_dir, Path(tmp) / "server.log", *flags, name="m")
            try:
                server.wait_up()
                asyncio.run(drive(server.url, features, 4, 1.0))  # warm-up
                for c in (1, 8, 32):
                    results[f"{setting}/c{c}"] = asyncio.run(drive(server.url, features, c, args.seconds))
            finally:
                server.stop()
    print(f"model {args.model}, {args.seconds:g} s per point, one server process, 1 torch thread, 2 shared cores")
    print(f"{'setting':<12} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for key, r in results.items():
        setting, c = key.split("/")
        print(f"{setting:<12} {c[1:]:>4} {r['rps']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8}")
    ratios = {c: round(results[f"batching/c{c}"]["rps"] / results[f"no batching/c{c}"]["rps"], 2) for c in (1, 8, 32)}
    print("throughput ratio batching / no batching:", ", ".join(f"c{c}: {r}x" for c, r in ratios.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"model": args.model, "seconds": args.seconds, "results": results, "ratio": ratios}
    args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
