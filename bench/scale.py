"""Scale and speed: N jobs x W workers through our operator, against a bare client and Kubeflow training-operator.

    .venv/bin/python bench/scale.py --jobs 500 --workers 4 --rounds 3 --memory-jobs 1000 --memory-workers 10

Starts its own control plane (port offset 2000, run/bench-cluster, NODES x 8 GPUs, simulated nodes only, no gang
scheduling) unless `--env-cluster` says to use the one `LEPTON_*` describes. Then, in ROUNDS rounds, back to back
in alternating order: the bare client (the benchmark's own async client POSTs the very pods our operator would
create: the machine's ceiling) and our operator (as the Helm chart's ServiceAccount, the jobs POSTed by the same
client). Then the same workload as PyTorchJobs through training-operator v1 (bench/scalebench/training_operator.py),
and (`--memory-jobs`) our operator alone with MEMORY_JOBS x MEMORY_WORKERS CPU-only workers for its RSS at scale.
Prints a table and writes bench/results/scale.json; how each figure is taken: bench/scalebench/measure.py.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

from scalebench import report, training_operator
from scalebench.apiclient import Api
from scalebench.drivers import LEPTON_FLOW, run_bare, run_lepton
from scalebench.setup import REPO, RUN, apply_yaml, ensure_gpus, flow_schema, open_cluster, sa_name

RESULTS = REPO / "bench" / "results" / "scale.json"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=500)
    p.add_argument("--workers", type=int, default=4, help="pods per job")
    p.add_argument("--gpus-per-worker", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="rounds of bare client + our operator (order alternating)")
    p.add_argument(
        "--nodes",
        type=int,
        default=256,
        help="simulated GPU nodes of a cluster it starts (more are added when the workload needs them)",
    )
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=32, help="concurrent POSTs of the submitting client")
    p.add_argument("--bare-concurrency", type=int, help="concurrent POSTs of the bare client (default: --concurrency)")
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="jobs submitted per second (open-loop arrival); 0 = all at once (a burst: latency is queueing)",
    )
    p.add_argument("--settle", type=float, default=5.0, help="seconds counted after the last pod runs")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per wait")
    p.add_argument("--skip-training-operator", action="store_true", help="no training-operator (no Go build)")
    p.add_argument("--to-threads", type=int, default=1, help="training-operator --controller-threads (default 1)")
    p.add_argument("--memory-jobs", type=int, default=0, help="then our operator alone with this many jobs")
    p.add_argument("--memory-workers", type=int, default=10)
    p.add_argument("--operator-env", action="append", default=[], metavar="K=V", help="extra operator setting")
    p.add_argument("--profile", type=Path, help="py-spy of the controller, pprof of the API server, into this folder")
    p.add_argument("--profile-seconds", type=float, default=20.0, help="length of the API server's CPU profile")
    p.add_argument("--env-cluster", action="store_true", help="use the cluster LEPTON_* describes (CI smoke)")
    p.add_argument("--keep-cluster", action="store_true", help="leave a cluster this run started running")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    return args


def rounds_vs_bare(cluster: Any, api: Api, kubeconfig: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """ROUNDS x (bare client, our operator), the order alternating so drift favours neither."""
    done = []
    for i in range(args.rounds):
        print(f"== round {i + 1}/{args.rounds}", flush=True)
        got: dict[str, dict[str, Any]] = {}
        for who in ("bare", "lepton") if i % 2 == 0 else ("lepton", "bare"):
            if who == "bare":
                got[who] = run_bare(cluster, api, args)
            else:
                got[who] = run_lepton(
                    cluster, api, kubeconfig, args.jobs, args.workers, args.gpus_per_worker, args, "lepton"
                )
        ratio = report.div(got["lepton"]["pods_per_second"], got["bare"]["pods_per_second"])
        print(f"   round {i + 1}: ratio_vs_bare_client {ratio:.2f}", flush=True)
        done.append({"order": "bare first" if i % 2 == 0 else "lepton first", **got, "ratio_vs_bare_client": ratio})
        partial = args.out.with_suffix(".partial.json")
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(done, indent=2) + "\n")
    return done


def main() -> int:
    args = parse()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop operators, cluster
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>`: where a stuck run waits

    from lepton_cluster.chart import operator_kubeconfig
    from lepton_cluster.jobs import install_crds

    binary = moddir = None
    if not args.skip_training_operator:
        binary, moddir = training_operator.build()  # before the cluster: a cold build wants both cores
    cluster, started = open_cluster(args)
    api = Api.admin(cluster)
    RUN.mkdir(parents=True, exist_ok=True)
    theirs = memory = None
    try:
        install_crds(cluster)
        ensure_gpus(cluster, args.jobs * args.workers * args.gpus_per_worker, args.gpus_per_node)
        kubeconfig = operator_kubeconfig(cluster, RUN / f"operator-sa-{os.getpid()}.kubeconfig")
        apply_yaml(cluster, [flow_schema(LEPTON_FLOW, "lepton-system", sa_name(kubeconfig))])
        load_start = os.getloadavg()
        rounds = rounds_vs_bare(cluster, api, kubeconfig, args)
        if binary is not None and moddir is not None:
            theirs = training_operator.run(cluster, api, args, binary, moddir)
        if args.memory_jobs:
            memory = run_lepton(cluster, api, kubeconfig, args.memory_jobs, args.memory_workers, 0, args, "memory")
        load_end = os.getloadavg()
        kubeconfig.unlink(missing_ok=True)
    finally:
        if started and not args.keep_cluster:
            cluster.down()
    ours, bare = report.median_round([r["lepton"] for r in rounds]), report.median_round([r["bare"] for r in rounds])
    columns = {"bare client": bare, "lepton-operator": ours}
    if theirs:
        columns["training-operator"] = theirs
    if memory:
        columns[f"lepton {args.memory_jobs}x{args.memory_workers} cpu"] = memory
    report.print_table(columns)
    vs_bare = report.versus_bare(rounds)
    print(f"\nratio_vs_bare_client (median of {len(rounds)} rounds): {vs_bare['ratio_vs_bare_client']:.2f}")
    print(f"  per round: {vs_bare['ratios_vs_bare_client']}")
    ratio = report.ratios(ours, theirs) if theirs else None
    if ratio:
        report.print_ratios("ratio_vs_training_operator (>= 1.0: lepton-operator not slower / not costlier)", ratio)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "jobs": args.jobs,
        "workers": args.workers,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "bare_concurrency": args.bare_concurrency or args.concurrency,
        "submit_rate_jobs_per_s": args.rate or None,
        "gpus_per_worker": args.gpus_per_worker,
        "nodes": cluster.config.nodes.count,
        "operator_env": args.operator_env,
        "pods_per_second": vs_bare["lepton_pods_per_second"],
        "bare_client_pods_per_second": vs_bare["bare_client_pods_per_second"],
        "ratio_vs_bare_client": vs_bare["ratio_vs_bare_client"],
        "ratios_vs_bare_client": vs_bare["ratios_vs_bare_client"],
        "p99_apply_to_pods_created_s": ours["apply_to_pods_created_s"]["p99"],
        "operator_peak_rss_mib": max(r["lepton"].get("operator_peak_rss_mib", 0.0) for r in rounds),
        "ratio_vs_training_operator": ratio["pods_per_second"] if ratio else None,
        "ratios_vs_training_operator": ratio,
        "lepton_operator": ours,
        "bare_client": bare,
        "training_operator": theirs,
        "training_operator_version": moddir.name.split("@")[-1] if moddir else None,
        "training_operator_controller_threads": args.to_threads if theirs else None,
        "memory_at_scale": memory,
        "rounds_vs_bare_client": rounds,
        "machine": {
            "host": platform.node(),
            "arch": platform.machine(),
            "cpus": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(),
        },
        "load_average": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in load_end]},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".partial.json").unlink(missing_ok=True)
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
