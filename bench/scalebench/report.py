"""The comparison: ratios (>= 1.0: we are not worse), the median of alternating rounds, the printed table."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any


def div(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("inf")


def ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float]:
    """ours / theirs for throughput, theirs / ours for latency and cost: >= 1.0 means we are not worse."""
    out = {
        "pods_per_second": div(ours["pods_per_second"], theirs["pods_per_second"]),
        "p50_apply_to_pods_created": div(
            theirs["apply_to_pods_created_s"]["p50"], ours["apply_to_pods_created_s"]["p50"]
        ),
        "p99_apply_to_pods_created": div(
            theirs["apply_to_pods_created_s"]["p99"], ours["apply_to_pods_created_s"]["p99"]
        ),
        "p99_apply_to_pods_running": div(
            theirs["apply_to_pods_running_s"]["p99"], ours["apply_to_pods_running_s"]["p99"]
        ),
        "cleanup": div(theirs["cleanup_seconds"] or 0.0, ours["cleanup_seconds"] or float("inf")),
    }
    if "operator_cpu_seconds" in theirs:
        out["operator_cpu_seconds"] = div(theirs["operator_cpu_seconds"], ours["operator_cpu_seconds"])
        out["api_requests_per_job"] = div(theirs["api_requests_per_job"], ours["api_requests_per_job"])
    return out


def median_round(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose pods/s is the median (the lower middle one of an even count)."""
    ordered = sorted(runs, key=lambda r: r["pods_per_second"])
    return ordered[(len(ordered) - 1) // 2]


def versus_bare(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each round ran the bare client and our operator back to back (order alternating): the median of the
    rounds' pods/s and of the per-round ratios."""
    return {
        "bare_client_pods_per_second": statistics.median(r["bare"]["pods_per_second"] for r in rounds),
        "lepton_pods_per_second": statistics.median(r["lepton"]["pods_per_second"] for r in rounds),
        "ratio_vs_bare_client": round(statistics.median(r["ratio_vs_bare_client"] for r in rounds), 3),
        "ratios_vs_bare_client": [r["ratio_vs_bare_client"] for r in rounds],
    }


def _p(key: str, q: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: r[key][q]


ROWS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("pods created / s (first apply -> last pod)", lambda r: r["pods_per_second"], "{:.1f}"),
    ("pods created / s (10-90 % of the burst)", lambda r: r["pods_per_second_steady"], "{:.1f}"),
    ("apply -> all pods created p50 (s)", _p("apply_to_pods_created_s", "p50"), "{:.2f}"),
    ("apply -> all pods created p95 (s)", _p("apply_to_pods_created_s", "p95"), "{:.2f}"),
    ("apply -> all pods created p99 (s)", _p("apply_to_pods_created_s", "p99"), "{:.2f}"),
    ("apply -> all pods Running p50 (s)", _p("apply_to_pods_running_s", "p50"), "{:.2f}"),
    ("apply -> all pods Running p99 (s)", _p("apply_to_pods_running_s", "p99"), "{:.2f}"),
    ("apply -> job status Running p99 (s)", _p("apply_to_job_running_status_s", "p99"), "{:.2f}"),
    ("operator CPU (s)", lambda r: r["operator_cpu_seconds"], "{:.1f}"),
    ("operator CPU per pod (ms)", lambda r: r["operator_cpu_ms_per_pod"], "{:.2f}"),
    ("operator peak RSS (MiB)", lambda r: r["operator_peak_rss_mib"], "{:.1f}"),
    ("API requests per job", lambda r: r["api_requests_per_job"], "{:.1f}"),
    ("cleanup: delete -> all pods gone (s)", lambda r: r["cleanup_seconds"], "{:.2f}"),
]


def print_table(columns: dict[str, dict[str, Any]]) -> None:
    names = list(columns)
    print(f"\n{'':46}" + "".join(f"{n:>20}" for n in names))
    for label, get, fmt in ROWS:
        cells = []
        for n in names:
            try:
                v = get(columns[n])
                cells.append(fmt.format(v) if v is not None else "-")
            except (KeyError, TypeError):
                cells.append("-")
        print(f"{label:46}" + "".join(f"{c:>20}" for c in cells))


def print_ratios(title: str, ratio: dict[str, float]) -> None:
    print(f"\n{title}:")
    for k, v in ratio.items():
        print(f"  {k:32} {v:>8.2f}")
