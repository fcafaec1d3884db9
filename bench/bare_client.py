"""The machine's ceiling for our worker pods alone: a bare async client POSTs them, no operator and no jobs.

    .venv/bin/python bench/bare_client.py --pods 2000      # on the cluster bench/scale.py uses (started if needed)

bench/scale.py runs the same measurement in alternating rounds with our operator (ratio_vs_bare_client); this is
the bare half on its own: the pods our operator would create (its builder, 4 per job, 1 GPU each, no
ownerReference), POSTed 32 at a time and stamped by the watcher process while the scheduler binds and kwok starts
them. Prints pods/s and writes bench/results/bare-client.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from scalebench.apiclient import Api
from scalebench.drivers import run_bare
from scalebench.setup import REPO, ensure_gpus, open_cluster


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pods", type=int, default=2000)
    p.add_argument("--workers", type=int, default=4, help="pods per (fake) job")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--nodes", type=int, default=256)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per wait")
    p.add_argument("--env-cluster", action="store_true")
    p.add_argument("--keep-cluster", action="store_true")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bare-client.json")
    args = p.parse_args()
    args.jobs, args.gpus_per_worker, args.rate, args.settle = -(-args.pods // args.workers), 1, 0.0, 0.0
    args.profile, args.profile_seconds = None, 0.0
    cluster, started = open_cluster(args)
    try:
        ensure_gpus(cluster, args.jobs * args.workers, args.gpus_per_node)
        load0 = os.getloadavg()[0]
        got = run_bare(cluster, Api.admin(cluster), args)
    finally:
        if started and not args.keep_cluster:
            cluster.down()
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "pods": got["pods"],
        "pods_per_second": got["pods_per_second"],
        "pods_per_second_steady": got["pods_per_second_steady"],
        "all_running_after_s": got["first_apply_to_last_running_s"],
        "cleanup_seconds": got["cleanup_seconds"],
        "load_average_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
