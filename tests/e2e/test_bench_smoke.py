"""The scale benchmark (bench/scale.py) at a smoke size, on the session's cluster, our operator only.

No timed assertions: only that it runs, writes its JSON with the keys the README table reads, that every
job got all its pods and that cleanup finished. CPU-only workers, so it takes no GPUs from other tests.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("crds")]

JOBS, WORKERS = 20, 4


@pytest.mark.timeout(540)
def test_scale_bench_smoke(cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    argv = [
        sys.executable,
        str(REPO / "bench" / "scale.py"),
        "--env-cluster",
        "--skip-training-operator",
        "--rounds=2",  # both orders: bare client first, then our operator first
        f"--jobs={JOBS}",
        f"--workers={WORKERS}",
        "--gpus-per-worker=0",
        "--settle=1",
        "--timeout=60",
        f"--out={out}",
    ]
    run = subprocess.run(argv, cwd=REPO, text=True, capture_output=True, timeout=520)
    assert run.returncode == 0, f"bench/scale.py failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "pods created / s" in run.stdout  # the table was printed

    result = json.loads(out.read_text())
    keys = ("pods_per_second", "p99_apply_to_pods_created_s", "operator_peak_rss_mib", "ratio_vs_training_operator")
    for key in keys:
        assert key in result, key
    assert result["ratio_vs_training_operator"] is None  # no training-operator in the smoke run
    assert result["machine"]["cpus"] and result["load_average"]["start"]
    rounds = result["rounds_vs_bare_client"]
    assert [r["order"] for r in rounds] == ["bare first", "lepton first"]
    for r in rounds:  # the same pods, from the bare client and through our jobs, on the same cluster
        assert r["bare"]["pods_created"] == r["lepton"]["pods_created"] == JOBS * WORKERS, r
        assert r["bare"]["cleanup_complete"] and r["ratio_vs_bare_client"] > 0, r
    assert result["bare_client_pods_per_second"] > 0 and result["ratio_vs_bare_client"] > 0
    by_kind = result["lepton_operator"]["api_requests_per_job_by_kind"]  # the operator's own request counter
    assert by_kind["POST pods"] == WORKERS and by_kind["POST services"] == 1, by_kind

    ours = result["lepton_operator"]
    assert ours["jobs"] == JOBS and ours["pods"] == JOBS * WORKERS
    assert ours["jobs_with_all_pods"] == JOBS, ours
    assert ours["all_pods_created"], ours  # Running is not asserted: the shared cluster's nodes may be busy
    assert ours["cleanup_complete"] and ours["cleanup_seconds"] is not None, ours
    for value in (result["pods_per_second"], result["p99_apply_to_pods_created_s"], result["operator_peak_rss_mib"]):
        assert isinstance(value, float | int) and math.isfinite(value) and value > 0, value
    assert ours["api_requests_per_job"] > 0 and ours["operator_cpu_seconds"] > 0, ours


@pytest.mark.timeout(200)
def test_bare_client_bench_smoke(cluster: Cluster, tmp_path: Path) -> None:
    """bench/bare_client.py (the machine's ceiling for our worker pods) runs and reports what it saw."""
    out = tmp_path / "bare.json"
    argv = [sys.executable, str(REPO / "bench" / "bare_client.py"), "--env-cluster", "--pods=8", f"--out={out}"]
    run = subprocess.run(argv, cwd=REPO / "bench", text=True, capture_output=True, timeout=180)
    assert run.returncode == 0, f"bench/bare_client.py failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    result = json.loads(out.read_text())
    assert result["pods"] == 8 and result["pods_per_second"] > 0, result
    assert result["all_running_after_s"] is not None, result  # 8 one-GPU pods fit the session's nodes
