"""The machine's ceiling for our worker pods: a bare async client POSTs them, no operator and no jobs.

    .venv/bin/python bench/bare_client.py --pods 2000      # on the cluster bench/scale.py uses (started if needed)

The same pods the operator would create (builders.trainingjob.worker_pod, 4 per fake job, 1 GPU each, no
ownerReference), POSTed by bench/scale.py's client (admin, 32 in flight) and stamped by its watcher process,
while the scheduler binds and kwok starts them. Prints pods/s and writes bench/results/bare-client.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import scale
from lepton_operator.api.trainingjob import TrainingJob
from lepton_operator.builders.trainingjob import worker_pod
from lepton_operator.prices import DEFAULT_PRICES
from lepton_operator.reconcile.pricing import placement


def pods(namespace: str, count: int, per_job: int = 4) -> list[dict[str, Any]]:
    out = []
    for i, manifest in enumerate(scale.lepton_manifests(-(-count // per_job), per_job, 1, prefix="bare")):
        manifest["metadata"] |= {"namespace": namespace, "uid": f"uid-{i}", "generation": 1}
        job = TrainingJob.model_validate(manifest)
        for rank in range(per_job):
            pod = worker_pod(job, 0, rank, per_job, [], placement(job, DEFAULT_PRICES))  # as the operator does
            del pod["metadata"]["ownerReferences"]
            out.append(pod)
    return out[:count]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pods", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--nodes", type=int, default=256)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--env-cluster", action="store_true")
    p.add_argument("--keep-cluster", action="store_true")
    p.add_argument("--out", type=Path, default=scale.REPO / "bench" / "results" / "bare-client.json")
    args = p.parse_args()
    cluster, started = scale.open_cluster(args)
    pki = cluster.config.pki_dir
    api = scale.Api(cluster.config.apiserver_url, str(pki / "ca.crt"), str(pki / "admin.crt"), str(pki / "admin.key"))
    try:
        scale.ensure_gpus(cluster, args.pods, args.gpus_per_node)
        ns = scale.namespace(cluster, "bare")
        manifests = pods(ns, args.pods)
        path = f"/api/v1/namespaces/{ns}/pods"
        with scale.Watcher(api, ns, f"/api/v1/namespaces/{ns}/services") as watcher:
            seen = watcher.seen
            time.sleep(1.0)  # the watcher's first LIST
            load0, t0 = os.getloadavg()[0], time.time()
            asyncio.run(scale.submit(api, path, manifests, args.concurrency))
            posted = time.time() - t0
            scale.wait_until(lambda: len(seen.pod_created) >= len(manifests), 300, "pods seen")
            running = scale.wait_until(lambda: len(seen.pod_running) >= len(manifests), 300, "pods Running")
            with seen.lock:
                created = sorted(t for _, t in seen.pod_created.values())
                up = sorted(seen.pod_running.values())
        scale._drop_namespace(cluster, ns)
    finally:
        if started and not args.keep_cluster:
            cluster.down()
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "pods": len(manifests),
        "post_seconds": round(posted, 2),
        "pods_per_second": round(len(created) / max(created[-1] - t0, 1e-9), 1),
        "all_running_after_s": round(up[-1] - t0, 2) if running else None,
        "load_average_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
