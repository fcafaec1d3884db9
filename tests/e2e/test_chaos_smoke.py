"""The fault drills (bench/chaos.py) at a smoke size on the session's cluster: every drill runs once (leader
SIGKILL, API server restart, etcd pause, compaction + cut watches, 409 storm, slow API server, 5 % proxy faults)
and the invariants hold. No timed assertions: the figures are the benchmark's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("crds")]


@pytest.mark.timeout(600)
def test_chaos_drills_smoke(cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    argv = [
        sys.executable,
        str(REPO / "bench" / "chaos.py"),
        "--jobs=4",
        "--kills=1",
        "--apiserver-restarts=1",
        "--hit=2",
        "--lease-duration=4",
        "--renew-deadline=3",
        "--retry-period=1",
        "--slow=0.2",  # a Lease attempt must fit in retryPeriod: 1 s per request would leave no leader at all
        f"--out={out}",
    ]
    run = subprocess.run(argv, cwd=REPO, text=True, capture_output=True, timeout=560)
    assert run.returncode == 0, f"bench/chaos.py failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    result = json.loads(out.read_text())
    assert result["operator_kills"] == 1 and result["apiserver_restarts"] == 1 and result["jobs"] == 4
    for key in ("jobs_lost", "duplicate_pods", "pods_of_unreached_epochs", "orphaned_pods", "jobs_wrong_final_state",
                "restart_count_errors"):  # fmt: skip
        assert result[key] == 0, (key, result["wrong"])
    assert result["failures_injected"] == 2 * 7  # seven drills, two jobs hit in each
    assert sum(result["proxy_faults"].values()) > 0
    assert result["leader_takeover_s_p95"] is not None
