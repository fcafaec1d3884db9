"""Failover time on the local control plane, over N trials: pod failure -> new epoch Running, node loss -> Running.

    .venv/bin/python bench/failover.py [--trials 20]

Starts the control plane if none runs, installs the CRDs, runs the operator as a process, prints the
median and p95 and writes bench/results/failover.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lepton_cluster.benchrun import local_cluster, watched_namespace
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import (
    GROUP,
    PLURAL,
    REPO,
    VERSION,
    create_job,
    custom,
    job_manifest,
    job_pods,
    live_pods,
    status,
    wait_phase,
)
from lepton_cluster.testing import unique_name, wait_for
from lepton_cluster.timings import write_results

RESULTS = Path(__file__).parent / "results" / "failover.json"


def finish(cluster: Cluster, ns: str, name: str) -> None:
    """Delete a trial's job and wait until its pods are gone, so trials never compete for GPUs."""
    custom(cluster).delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    wait_for(lambda: not job_pods(cluster, ns, name), 60, interval=0.1, message=f"{name} pods gone")


def running_epoch(cluster: Cluster, ns: str, name: str, epoch: int) -> None:
    def reached() -> bool:
        st = status(cluster, ns, name)
        return st.get("restartEpoch") == epoch and st.get("phase") == "Running"

    wait_for(reached, 60, interval=0.02, message=f"{name} epoch {epoch} running")


def pod_failure_trial(cluster: Cluster, ns: str, trial: int) -> float:
    name = f"pf-{trial}"
    create_job(cluster, ns, job_manifest(name, replicas=4, failurePolicy={"maxRestarts": 5}))
    wait_phase(cluster, ns, name, "Running", timeout=60)
    t0 = time.monotonic()
    cluster.fail_pod(ns, f"{name}-0-1", exit_code=137)
    running_epoch(cluster, ns, name, 1)
    elapsed = time.monotonic() - t0
    finish(cluster, ns, name)
    return elapsed


def node_loss_trial(cluster: Cluster, ns: str, trial: int) -> float:
    name, pool = f"nl-{trial}", unique_name("bench-pool")
    nodes = cluster.add_nodes(3, labels={"lepton.ai/bench-pool": pool})
    try:
        manifest = job_manifest(name, replicas=2, gpusPerReplica=8, nodeSelector={"lepton.ai/bench-pool": pool})
        create_job(cluster, ns, manifest)
        wait_phase(cluster, ns, name, "Running", timeout=60)
        victim = live_pods(cluster, ns, name)[0]["spec"]["nodeName"]
        t0 = time.monotonic()
        cluster.set_node_not_ready(victim)
        running_epoch(cluster, ns, name, 1)
        elapsed = time.monotonic() - t0
        finish(cluster, ns, name)
        return elapsed
    finally:
        for node in nodes:
            cluster.delete_node(node)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    with local_cluster() as cluster, watched_namespace(cluster, "bench-failover", REPO / "run" / "bench") as ns:
        pod = [pod_failure_trial(cluster, ns, i) for i in range(args.trials)]
        node = [node_loss_trial(cluster, ns, i) for i in range(args.trials)]
    write_results(RESULTS, {"pod_failure_to_running": pod, "node_not_ready_to_running": node})


if __name__ == "__main__":
    main()
