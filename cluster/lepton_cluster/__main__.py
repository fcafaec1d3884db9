"""`python -m lepton_cluster up|down|status`: the local control plane from the command line."""

from __future__ import annotations

import argparse
import sys

from .cluster import Cluster, ClusterError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lepton_cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build (cached) and start the control plane with simulated GPU nodes")
    up.add_argument("--nodes", type=int, help="simulated GPU nodes at start-up (env LEPTON_NODES, default 8)")
    up.add_argument("--gpus-per-node", type=int, help="nvidia.com/gpu per node (env LEPTON_GPUS_PER_NODE, default 8)")
    up.add_argument(
        "--spot-every",
        type=int,
        help="every Nth node of each GPU type is spot, 0 = none (env LEPTON_SPOT_EVERY, 4)",
    )
    up.add_argument(
        "--real-nodes", type=int, help="nodes with a real kubelet + containerd (env LEPTON_REAL_NODES, default 2)"
    )
    up.add_argument("--kueue", action="store_true", default=None, help="also start Kueue (env LEPTON_KUEUE=1)")
    up.add_argument("--timeout", type=float, help="seconds allowed for start-up (default 120)")
    up.add_argument("--restart", action="store_true", help="stop a running cluster first")
    sub.add_parser("down", help="stop every process of the control plane (safe to run twice)")
    sub.add_parser("status", help="show the components, their memory and the nodes")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            cluster = Cluster.from_env(
                count=args.nodes,
                gpus_per_node=args.gpus_per_node,
                spot_every=args.spot_every,
                start_timeout=args.timeout,
                real_nodes=args.real_nodes,
                kueue=args.kueue,
            )
            cluster.up(restart=args.restart)
            print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
            return 0
        cluster = Cluster.from_env()
        if args.command == "down":
            stopped = cluster.down()
            print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
            return 0
        return _status(cluster)
    except ClusterError as e:
        print(f"lepton_cluster {args.command}: {e}", file=sys.stderr)
        return 1


def _status(cluster: Cluster) -> int:
    statuses = cluster.status()
    ok = all(s.running for s in statuses.values())
    total = 0.0
    for s in statuses.values():
        rss = f"{s.rss_mib:7.1f} MiB" if s.rss_mib is not None else "      -    "
        total += s.rss_mib or 0.0
        print(f"{s.name:26} {'running' if s.running else 'stopped':8} pid {s.pid or '-':>7}  rss {rss}")
    print(f"{'total':26} {'':8} {'':11}  rss {total:7.1f} MiB")
    ready = cluster.is_ready()
    print(f"apiserver {cluster.config.apiserver_url} /readyz: {'ok' if ready else 'not ready'}")
    if ready:
        print(
            cluster.kubectl("get", "nodes", "-L", "nvidia.com/gpu.product,lepton.ai/capacity-type").stdout,
            end="",
        )
        print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0 if ok and ready else 1


if __name__ == "__main__":
    sys.exit(main())
