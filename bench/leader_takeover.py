"""Leader takeover time on the local control plane: two operator processes elect a leader on a Lease; the
leader is SIGKILLed at a random moment N times; each time, the seconds from the kill until the standby holds
the Lease, and until a job created right after the kill has its pods.

    .venv/bin/python bench/leader_takeover.py [--kills 10] [--lease-duration 15 --renew-deadline 10 --retry-period 2]

Starts the control plane if none runs, installs the CRDs, prints median and p95 and writes
bench/results/leader-takeover.json. The defaults are the chart's.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from lepton_cluster.benchrun import holder_pid, leader_env, local_cluster, pid
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import REPO, create_job, job_manifest, live_pods
from lepton_cluster.operator import OperatorProcess
from lepton_cluster.testing import create_namespace, delete_namespace, unique_name, wait_for
from lepton_cluster.timings import write_results

RESULTS = Path(__file__).parent / "results" / "leader-takeover.json"
LEASE = "lepton-operator-bench"


def kill_the_leader(
    cluster: Cluster, ns: str, ops: list[OperatorProcess], job: str, retry: float
) -> tuple[float, float]:
    """SIGKILL the leader between two renewals, create a job; seconds until the standby holds the Lease and
    until the job's pods exist. The killed one starts again as the standby."""
    found = wait_for(lambda: next((op for op in ops if pid(op) == holder_pid(cluster, ns, LEASE)), None), 60, 0.05)
    assert found is not None
    leader: OperatorProcess = found
    standby = next(op for op in ops if op is not leader)
    time.sleep(random.uniform(0, retry))
    killed = time.monotonic()
    leader.kill()
    create_job(cluster, ns, job_manifest(job, replicas=2, gpusPerReplica=0))
    wait_for(lambda: holder_pid(cluster, ns, LEASE) == pid(standby), 120, interval=0.05)
    took_over = time.monotonic() - killed
    wait_for(lambda: len(live_pods(cluster, ns, job)) == 2, 60, interval=0.05)
    acted = time.monotonic() - killed
    leader.start()
    return took_over, acted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--lease-duration", type=float, default=15.0)
    parser.add_argument("--renew-deadline", type=float, default=10.0)
    parser.add_argument("--retry-period", type=float, default=2.0)
    args = parser.parse_args()
    takeover: list[float] = []
    acting: list[float] = []
    with local_cluster() as cluster:
        ns = create_namespace(cluster, unique_name("bench-leader"))
        env = leader_env(ns, LEASE, args.lease_duration, args.renew_deadline, args.retry_period)
        run = REPO / "run" / "bench" / "leader"
        ops = [OperatorProcess(cluster.kubeconfig, run / name, env=env) for name in ("a", "b")]
        try:
            for op in ops:
                op.start()
            for i in range(args.kills):
                t, a = kill_the_leader(cluster, ns, ops, f"after-{i}", args.retry_period)
                takeover.append(t)
                acting.append(a)
                print(f"kill {i + 1}: lease taken over in {t:.2f}s, the new job's pods in {a:.2f}s", flush=True)
        finally:
            for op in ops:
                op.stop()
            delete_namespace(cluster, ns)
    write_results(
        RESULTS,
        {"lease_taken_over": takeover, "new_job_pods_created": acting},
        lease_duration_s=args.lease_duration,
        renew_deadline_s=args.renew_deadline,
        retry_period_s=args.retry_period,
    )


if __name__ == "__main__":
    main()
