"""The cluster a run measures on: started (or the one LEPTON_* describes), enough simulated GPUs, FlowSchemas that
count one ServiceAccount's requests, throw-away namespaces."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "run" / "bench-scale"


def open_cluster(args: argparse.Namespace) -> tuple[Any, bool]:
    """The cluster, and whether this run started it. A cluster it starts has no gang scheduling (no PodGroup
    per job: the bare client and training-operator make none either) and no real nodes."""
    from lepton_cluster.cluster import Cluster
    from lepton_cluster.config import ClusterConfig

    if args.env_cluster:
        cluster = Cluster.from_env()
    else:
        env = {
            "LEPTON_PORT_OFFSET": os.environ.get("LEPTON_PORT_OFFSET", "2000"),
            "LEPTON_RUN_DIR": os.environ.get("LEPTON_RUN_DIR", str(REPO / "run" / "bench-cluster")),
            "LEPTON_REAL_NODES": "0",
            "LEPTON_GANG": os.environ.get("LEPTON_GANG", "0"),
        }
        for passed in ("LEPTON_CACHE_DIR", "LEPTON_PROFILING"):  # the latter: /debug/pprof for a profile
            if passed in os.environ:
                env[passed] = os.environ[passed]
        cluster = Cluster(ClusterConfig.from_env(env, count=args.nodes, gpus_per_node=args.gpus_per_node))
    started = False
    if not cluster.is_ready():
        cluster.up()
        started = True
    return cluster, started


def ensure_gpus(cluster: Any, needed: int, gpus_per_node: int) -> None:
    """Add simulated GPU nodes until every worker of the workload fits (a reused cluster may be smaller)."""
    have = 0
    for node in cluster.core.list_node().items:
        have += int((node.status.allocatable or {}).get("nvidia.com/gpu", "0"))
    if have < needed:
        count = -(-(needed - have) // gpus_per_node)
        print(f"   adding {count} nodes x {gpus_per_node} GPUs ({have} GPUs < {needed} needed)", flush=True)
        cluster.add_nodes(count, gpus_per_node=gpus_per_node, timeout=300)


def apply_yaml(cluster: Any, docs: list[dict[str, Any]]) -> None:
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
    )


def flow_schema(name: str, sa_namespace: str, sa: str) -> dict[str, Any]:
    """A FlowSchema for exactly one ServiceAccount, on the priority level SAs get by default (workload-low)."""
    return {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name},
        "spec": {
            "matchingPrecedence": 500,
            "priorityLevelConfiguration": {"name": "workload-low"},
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [{"kind": "ServiceAccount", "serviceAccount": {"name": sa, "namespace": sa_namespace}}],
                    "resourceRules": [
                        {
                            "verbs": ["*"],
                            "apiGroups": ["*"],
                            "resources": ["*"],
                            "namespaces": ["*"],
                            "clusterScope": True,
                        }
                    ],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                }
            ],
        },
    }


def sa_name(kubeconfig: Path) -> str:
    """The ServiceAccount a kubeconfig made by lepton_cluster.chart authenticates as."""
    import yaml

    user: str = yaml.safe_load(kubeconfig.read_text())["users"][0]["name"]
    return user.rsplit(":", 1)[-1]


def namespace(cluster: Any, prefix: str) -> str:
    from lepton_cluster.testing import create_namespace, unique_name

    return str(create_namespace(cluster, unique_name(prefix)))


def drop_namespace(cluster: Any, ns: str, wait: bool = False) -> None:
    """Delete the namespace (kwok removes deleted pods at once; no pod-by-pod force delete); `wait`: until it is
    gone, so the next round does not share the machine with the namespace controller."""
    cluster.kubectl("delete", "namespace", ns, f"--wait={str(wait).lower()}", "--timeout=300s", check=False)
