"""Failover with real containers on the real nodes, over N trials each (issue 14, item 5):

- kill: a worker's container SIGKILLed through its node's containerd (exit 137) -> the operator starts a new
  epoch -> every rank of it has made its first training step again (from the checkpoint);
- node loss: the node of a worker powered off (kubelet, containerd and every container killed) -> the node
  goes NotReady (the node lifecycle controller, Kubernetes' default grace) -> the operator starts a new epoch
  away from it -> every rank steps again on the surviving node.

"Stepping again" is the trainer's own wall clock at its first step (its log line), so the figure is what a
user waits, kill to training. Each trial starts a fresh digits job (2 workers, 500m CPU each so both fit on
one node after a node loss) and deletes it afterwards; a stopped node is started again between trials.

    .venv/bin/python bench/realnode_failover.py [--trials 10]

Starts the control plane with its real nodes if none runs, imports the trainer image into them, runs the
operator as a process; prints the median and p95 and writes bench/results/realnode-failover.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import yaml
from lepton_cluster.benchrun import local_cluster, watched_namespace
from lepton_cluster.cluster import Cluster
from lepton_cluster.incluster import TRAINER_IMAGE, load_images
from lepton_cluster.jobs import GROUP, PLURAL, REPO, VERSION, create_job, custom, job_pods, status, wait_phase
from lepton_cluster.realnode.drills import epoch_pods, kill_container, stepping_walls
from lepton_cluster.testing import wait_for
from lepton_cluster.timings import write_results

RESULTS = Path(__file__).parent / "results" / "realnode-failover.json"
RUN = REPO / "run" / "bench-realnode-failover"


def manifest(name: str, checkpoints: Path) -> dict[str, Any]:
    """The digits example, long enough never to finish during a trial, small enough for one node."""
    m: dict[str, Any] = yaml.safe_load((REPO / "examples" / "trainingjob-digits-real.yaml").read_text())
    m["metadata"]["name"] = name
    m["spec"]["args"] = [
        *("-m", "lepton_trainer.train", "--workload", "digits", "--epochs", "1000"),
        *("--step-sleep", "0.05", "--checkpoint-every", "20", "--log-every", "50"),
    ]
    m["spec"]["resources"] = {"cpu": "500m", "memory": "1Gi"}
    m["spec"]["failurePolicy"] = {"maxRestarts": 5}
    m["spec"]["checkpoint"]["volume"]["hostPath"] = str(checkpoints)
    return m


def start(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    """A fresh job, running, both ranks stepping and one checkpoint written; returns the epoch-0 pods."""
    checkpoints = RUN / ns / name  # the namespace is unique per invocation
    checkpoints.mkdir(parents=True)
    checkpoints.chmod(0o1777)
    job = create_job(cluster, ns, manifest(name, checkpoints))
    folder = checkpoints / ns / f"{name}-{job['metadata']['uid']}"
    wait_phase(cluster, ns, name, "Running", timeout=120)
    wait_for(lambda: stepping_walls(cluster, ns, name, 0, 2), 180, interval=0.5, message=f"{name} stepping")
    wait_for(lambda: list(folder.glob("step-*.ckpt")), 180, interval=0.2, message=f"{name} checkpoint")
    return epoch_pods(cluster, ns, name, 0)


def recovered(cluster: Cluster, ns: str, name: str, t0: float) -> float:
    """Seconds from `t0` until every rank of the job's current epoch (past 0) has stepped. A node loss may take
    two epochs: one at once (PeerLost) and one when the node is NotReady, if a worker went back to it."""

    def stepping() -> list[float] | None:
        epoch = int(status(cluster, ns, name).get("restartEpoch") or 0)
        return stepping_walls(cluster, ns, name, epoch, 2) if epoch >= 1 else None

    walls = wait_for(stepping, 300, interval=0.5, message=f"{name} stepping again")
    assert walls is not None
    return max(walls) - t0


def epochs_used(cluster: Cluster, ns: str, name: str) -> int:
    return int(status(cluster, ns, name).get("restartEpoch") or 0)


def finish(cluster: Cluster, ns: str, name: str) -> None:
    custom(cluster).delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    wait_for(lambda: not job_pods(cluster, ns, name), 120, interval=0.2, message=f"{name} pods gone")


def kill_trial(cluster: Cluster, ns: str, trial: int) -> float:
    name = f"kill-{trial}"
    victim = start(cluster, ns, name)[1]
    t0 = time.time()
    kill_container(cluster, victim)
    took = recovered(cluster, ns, name, t0)
    finish(cluster, ns, name)
    return took


def node_loss_trial(cluster: Cluster, ns: str, trial: int) -> tuple[float, float, int]:
    """Returns (node loss -> all ranks stepping, node loss -> node NotReady, epochs it took)."""
    name = f"node-{trial}"
    node = start(cluster, ns, name)[1]["spec"]["nodeName"]
    t0 = time.time()
    cluster.stop_real_node(node)
    try:
        wait_for(lambda: not cluster.node_ready(cluster.kubectl_json("get", "node", node)), 120, interval=0.5)
        not_ready = time.time() - t0
        took = recovered(cluster, ns, name, t0)
        epochs = epochs_used(cluster, ns, name)
    finally:
        cluster.start_real_node(node, timeout=120)  # its kubelet then finishes the deletion of its old pods
    finish(cluster, ns, name)
    return took, not_ready, epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    with local_cluster() as cluster:
        load_images(cluster, names=[TRAINER_IMAGE])
        env = {"LEPTON_ALLOWED_HOSTPATH_PREFIXES": json.dumps([str(RUN)])}
        with watched_namespace(cluster, "bench-rnf", RUN, env) as ns:
            kills = [kill_trial(cluster, ns, i) for i in range(args.trials)]
            nodes = [node_loss_trial(cluster, ns, i) for i in range(args.trials)]
    write_results(
        RESULTS,
        {
            "container_kill_to_all_ranks_stepping": kills,
            "node_loss_to_all_ranks_stepping": [n[0] for n in nodes],
            "node_loss_to_node_not_ready": [n[1] for n in nodes],
        },
        workers=2,
        node_loss_epochs=[n[2] for n in nodes],
        note="real nodes (kubelet + containerd), digits job from localhost/lepton-trainer:dev, operator as a process",
    )


if __name__ == "__main__":
    main()
