"""The workloads: TrainingJobs through our operator, and the same worker pods POSTed by a bare client (no
operator, no jobs), the ceiling of this machine for our pods."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .apiclient import Api
from .measure import Workload, run_workload
from .profile import component_pids
from .setup import RUN, drop_namespace, namespace

LEPTON_FLOW = "bench-lepton-operator"


def lepton_manifests(n: int, workers: int, gpus: int, prefix: str = "tj") -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "lepton.ai/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": f"{prefix}-{i:05d}"},
            "spec": {"image": "lepton/trainer:test", "replicas": workers, "gpusPerReplica": gpus},
        }
        for i in range(n)
    ]


def bare_pods(ns: str, jobs: int, workers: int, gpus: int) -> list[dict[str, Any]]:
    """The pods our operator would create for `lepton_manifests(jobs, workers, gpus)` (its own builder, first
    epoch), without the ownerReference (there is no job)."""
    from lepton_operator.api.trainingjob import TrainingJob
    from lepton_operator.builders.trainingjob import worker_pod
    from lepton_operator.prices import DEFAULT_PRICES
    from lepton_operator.reconcile.pricing import placement

    out = []
    for i, manifest in enumerate(lepton_manifests(jobs, workers, gpus, prefix="bare")):
        manifest["metadata"] |= {"namespace": ns, "uid": f"uid-{i}", "generation": 1}
        job = TrainingJob.model_validate(manifest)
        for rank in range(workers):
            pod = worker_pod(job, 0, rank, workers, [], placement(job, DEFAULT_PRICES))
            del pod["metadata"]["ownerReferences"]
            out.append(pod)
    return out


def run_lepton(
    cluster: Any, api: Api, kubeconfig: Path, jobs: int, workers: int, gpus: int, args: argparse.Namespace, label: str
) -> dict[str, Any]:
    """Our operator (as the chart's ServiceAccount, watching only a fresh namespace) and `jobs` TrainingJobs."""
    from lepton_cluster.operator import OperatorProcess

    ns = namespace(cluster, f"bench-{label}")
    env = {"LEPTON_NAMESPACES": json.dumps([ns]), **dict(e.split("=", 1) for e in args.operator_env)}
    operator = OperatorProcess(kubeconfig, RUN, env=env)
    try:
        operator.start()
        assert operator.proc is not None
        w = Workload(
            "lepton",
            ns,
            f"/apis/lepton.ai/v1alpha1/namespaces/{ns}/trainingjobs",
            lepton_manifests(jobs, workers, gpus),
            pid=operator.proc.pid,
            flow=LEPTON_FLOW,
            metrics_url=f"http://127.0.0.1:{operator.metrics_port}/metrics",
            schedulable=gpus > 0,  # every node carries the GPU taint: CPU-only workers stay Pending
            components=component_pids(cluster),
        )
        print(f"-- lepton-operator: {jobs} TrainingJobs x {workers} workers in {ns}", flush=True)
        return run_workload(api, w, args)
    finally:
        operator.stop()
        drop_namespace(cluster, ns, wait=True)


def run_bare(cluster: Any, api: Api, args: argparse.Namespace) -> dict[str, Any]:
    """The same pods as `run_lepton`'s, POSTed by the benchmark's client itself (same concurrency)."""
    ns = namespace(cluster, "bench-bare")
    try:
        pods = bare_pods(ns, args.jobs, args.workers, args.gpus_per_worker)
        w = Workload(
            "bare-client",
            ns,
            f"/api/v1/namespaces/{ns}/pods",
            pods,
            schedulable=args.gpus_per_worker > 0,
            components=component_pids(cluster),
        )
        inflight = getattr(args, "bare_concurrency", None) or args.concurrency
        print(
            f"-- bare client: {len(pods)} pods ({args.jobs} x {args.workers}, {inflight} in flight) in {ns}", flush=True
        )
        return run_workload(api, w, argparse.Namespace(**{**vars(args), "concurrency": inflight}))
    finally:
        drop_namespace(cluster, ns, wait=True)
