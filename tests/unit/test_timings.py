"""Benchmark timings: nearest-rank p95 and the results file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lepton_cluster.timings import summary, write_results


@pytest.mark.parametrize(
    ("samples", "median", "p95"),
    [
        ([1.0], 1.0, 1.0),
        ([float(i) for i in range(1, 11)], 5.5, 10.0),  # 10 trials: p95 is the largest
        ([float(i) for i in range(1, 21)], 10.5, 19.0),  # 20 trials: the 19th
        ([3.0, 1.0, 2.0], 2.0, 3.0),
    ],
)
def test_summary(samples: list[float], median: float, p95: float) -> None:
    s = summary(samples)
    assert (s["median_s"], s["p95_s"], s["trials"]) == (median, p95, len(samples))
    assert (s["min_s"], s["max_s"]) == (min(samples), max(samples))


def test_write_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r" / "x.json"
    write_results(out, {"kill_to_running": [2.0, 1.0]}, lease_s=15)
    doc = json.loads(out.read_text())
    assert doc["kill_to_running"]["median_s"] == 1.5 and doc["lease_s"] == 15 and "machine" in doc
    assert "kill_to_running" in capsys.readouterr().out
