"""Timings of repeated trials (benchmarks): one summary, one results file, one printed table."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def summary(samples: list[float]) -> dict[str, float | int]:
    """Median, nearest-rank p95, min and max (seconds, 3 decimals) of `samples`, and their count."""
    ordered = sorted(samples)
    return {
        "median_s": round(statistics.median(ordered), 3),
        "p95_s": round(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)], 3),
        "min_s": round(ordered[0], 3),
        "max_s": round(ordered[-1], 3),
        "trials": len(ordered),
    }


def write_results(path: Path, timings: Mapping[str, list[float]], **extra: Any) -> dict[str, Any]:
    """Write {name: summary} plus `extra`, the machine and the time to `path`; print a table; return it."""
    result: dict[str, Any] = {name: summary(samples) for name, samples in timings.items()}
    result |= extra
    result |= {
        "machine": f"{platform.node()} {platform.machine()} cpus={os.cpu_count()}",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(name) for name in timings) + 2
    print(f"{'scenario':<{width}}{'median':>10}{'p95':>10}{'max':>10}{'trials':>8}")
    for name in timings:
        s = result[name]
        print(f"{name:<{width}}{s['median_s']:>9.2f}s{s['p95_s']:>9.2f}s{s['max_s']:>9.2f}s{s['trials']:>8}")
    print(f"written to {path}")
    return result
