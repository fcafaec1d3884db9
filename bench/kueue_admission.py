"""Admission latency with and without Kueue: TrainingJob applied -> every worker pod created, over N trials.

    .venv/bin/python bench/kueue_admission.py [--trials 20]

Starts the control plane if none runs, Kueue on it (cluster.start_kueue), the CRDs, one operator process with
LEPTON_KUEUE_INTEGRATION=true, and a ClusterQueue with room for every trial. Each trial creates a 2 x 4-GPU job,
with the kueue.x-k8s.io/queue-name label or without, polls its pods every 20 ms until both exist, then deletes
it and waits until its pods are gone. Prints median/p95 and writes bench/results/kueue.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from lepton_cluster.benchrun import local_cluster, watched_namespace
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import GROUP, PLURAL, REPO, VERSION, create_job, custom, job_manifest, job_pods
from lepton_cluster.testing import wait_for
from lepton_cluster.timings import write_results

RESULTS = Path(__file__).parent / "results" / "kueue.json"
KUEUE, KV = "kueue.x-k8s.io", "v1beta2"
REPLICAS, GPUS = 2, 4


def kobj(kind: str, name: str, **rest: Any) -> dict[str, Any]:
    return {"apiVersion": f"{KUEUE}/{KV}", "kind": kind, "metadata": {"name": name}, **rest}


def queue(cluster: Cluster, ns: str, suffix: str) -> list[tuple[str, str]]:
    """A flavor, a ClusterQueue of 64 GPUs and the LocalQueue `bench` in `ns`; what to delete afterwards."""
    api = custom(cluster)
    flavor, cq = f"bench-{suffix}", f"bench-{suffix}"
    api.create_cluster_custom_object(KUEUE, KV, "resourceflavors", kobj("ResourceFlavor", flavor))
    quota = {"name": "nvidia.com/gpu", "nominalQuota": 64}
    groups = [{"coveredResources": ["nvidia.com/gpu"], "flavors": [{"name": flavor, "resources": [quota]}]}]
    spec = {"namespaceSelector": {}, "resourceGroups": groups}
    api.create_cluster_custom_object(KUEUE, KV, "clusterqueues", kobj("ClusterQueue", cq, spec=spec))
    api.create_namespaced_custom_object(
        KUEUE, KV, ns, "localqueues", kobj("LocalQueue", "bench", spec={"clusterQueue": cq})
    )
    return [("clusterqueues", cq), ("resourceflavors", flavor)]


def trial(cluster: Cluster, ns: str, name: str, queued: bool) -> float:
    manifest = job_manifest(name, replicas=REPLICAS, gpusPerReplica=GPUS)
    if queued:
        manifest["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "bench"}
    t0 = time.monotonic()
    create_job(cluster, ns, manifest)
    wait_for(lambda: len(job_pods(cluster, ns, name)) >= REPLICAS, 60, interval=0.02, message=f"{name} pods")
    elapsed = time.monotonic() - t0
    custom(cluster).delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    wait_for(lambda: not job_pods(cluster, ns, name), 60, interval=0.1, message=f"{name} pods gone")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    env = {"LEPTON_KUEUE_INTEGRATION": "true"}
    with local_cluster() as cluster:
        cluster.start_kueue()
        with watched_namespace(cluster, "bench-kueue", REPO / "run" / "bench", env) as ns:
            made = queue(cluster, ns, ns[-6:])
            try:
                plain, queued = [], []
                for i in range(args.trials):  # interleaved: both see the same machine load
                    plain.append(trial(cluster, ns, f"plain-{i}", queued=False))
                    queued.append(trial(cluster, ns, f"queued-{i}", queued=True))
            finally:
                for plural, name in made:
                    cluster.kubectl("delete", f"{plural}.{KUEUE}", name, "--ignore-not-found", "--wait=false")
    write_results(
        RESULTS,
        {"apply_to_pods_without_kueue": plain, "apply_to_pods_with_kueue": queued},
        job=f"{REPLICAS} workers x {GPUS} GPUs on kwok nodes; Kueue v0.17.0 as a host process, quota never short",
    )


if __name__ == "__main__":
    main()
