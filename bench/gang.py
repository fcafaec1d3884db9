"""Gang scheduling's cost in speed: apply -> every pod bound, JOBS TrainingJobs x WORKERS workers, with each
epoch a PodGroup (kube-scheduler's GangScheduling plugin) and without (LEPTON_GANG_SCHEDULING=off).

    .venv/bin/python bench/gang.py [--jobs 100] [--workers 4] [--trials 3]

Uses the control plane of the environment (LEPTON_PORT_OFFSET, LEPTON_RUN_DIR, ...; started when none runs),
adds a pool of kwok nodes with room for every worker (1 GPU each, tainted and labelled so that only these jobs
land there), and runs one operator per mode (admin identity) watching only that mode's namespaces; the modes' trials
alternate, so that load from others on the machine falls on both alike. A trial
creates the jobs from 16 threads as fast as the API server takes them and stamps, from a pod watch, the first
moment each pod has a node. Per job: its POST sent -> its last pod bound; per trial: the first POST -> the last
pod of all bound. Prints a table and writes bench/results/gang.json.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import watch
from kubernetes.client import V1Pod
from lepton_cluster.benchrun import local_cluster
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import REPO, create_job, job_manifest
from lepton_cluster.operator import OperatorProcess
from lepton_cluster.testing import create_namespace, delete_namespace, unique_name, wait_for
from lepton_cluster.timings import write_results
from urllib3.exceptions import HTTPError

RESULTS = Path(__file__).parent / "results" / "gang.json"
POOL = "lepton.ai/bench-gang"
MODES = {"gang": "auto", "no-gang": "off"}


class BoundWatch:
    """A thread stamping each pod's first event with spec.nodeName set (wall clock), by job."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.bound: dict[str, tuple[str, float]] = {}  # pod -> (job, time)
        self._watch = watch.Watch()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        stream = self._watch.stream(self.cluster.core.list_namespaced_pod, self.namespace, timeout_seconds=900)
        try:
            for ev in stream:
                pod = ev.get("object")
                if isinstance(pod, V1Pod) and pod.spec.node_name and pod.metadata.name not in self.bound:
                    job = (pod.metadata.labels or {}).get("lepton.ai/job-name", "")
                    self.bound[pod.metadata.name] = (job, time.time())
        except HTTPError:
            if not self._stopping:  # the namespace's deletion ends the stream: expected only then
                raise

    def stop(self) -> None:
        self._stopping = True
        self._watch.stop()


def trial(cluster: Cluster, mode: str, jobs: int, workers: int, spec: dict[str, Any]) -> tuple[list[float], float]:
    ns = create_namespace(cluster, unique_name(f"bg{mode.replace('-', '')}"))
    seen = BoundWatch(cluster, ns)
    sent: dict[str, float] = {}
    try:

        def post(i: int) -> None:
            name = f"j{i}"
            sent[name] = time.time()
            create_job(cluster, ns, job_manifest(name, replicas=workers, gpusPerReplica=1, **spec))

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(post, range(jobs)))
        total = jobs * workers
        wait_for(lambda: len(seen.bound) >= total, 600, interval=0.2, message=lambda: f"{len(seen.bound)}/{total}")
        last: dict[str, float] = {}
        for job, t in seen.bound.values():
            last[job] = max(last.get(job, 0.0), t)
        per_job = [last[name] - t0 for name, t0 in sent.items()]
        return per_job, max(last.values()) - min(sent.values())
    finally:
        seen.stop()
        delete_namespace(cluster, ns, wait=True, timeout=600)


def operator_for(cluster: Cluster, mode: str, setting: str) -> OperatorProcess:
    """An operator watching only `mode`'s namespaces, with LEPTON_GANG_SCHEDULING=`setting`; its log in run/bench/."""
    env = {"LEPTON_NAMESPACES": json.dumps([f"bg{mode.replace('-', '')}-*"]), "LEPTON_GANG_SCHEDULING": setting}
    return OperatorProcess(cluster.kubeconfig, REPO / "run" / "bench" / mode, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file")
    parser.add_argument("--note", default="", help="what differs in this run (e.g. the scheduler's gates)")
    args = parser.parse_args()
    timings: dict[str, list[float]] = {}
    in_order: list[dict[str, Any]] = []  # every trial as run, with the machine's 1-minute load average
    with local_cluster() as cluster:
        pool = unique_name("bench-gang")
        taint = {"key": POOL, "value": pool, "effect": "NoSchedule"}
        nodes = cluster.add_nodes(-(-args.jobs * args.workers // 8), labels={POOL: pool}, taints=[taint])
        spec = {"nodeSelector": {POOL: pool}, "tolerations": [{**taint, "operator": "Equal"}]}
        operators = [operator_for(cluster, mode, setting) for mode, setting in MODES.items()]
        try:
            for operator in operators:
                operator.start()
            for i in range(args.trials):  # the modes alternate (order flipped each trial): the machine is shared
                for mode in list(MODES)[:: 1 if i % 2 == 0 else -1]:
                    per_job, whole = trial(cluster, mode, args.jobs, args.workers, spec)
                    timings.setdefault(f"{mode}: job apply -> all its pods bound", []).extend(per_job)
                    timings.setdefault(f"{mode}: {args.jobs} jobs apply -> every pod bound", []).append(whole)
                    load = round(os.getloadavg()[0], 1)
                    in_order.append({"mode": mode, "every_pod_bound_s": round(whole, 3), "load1": load})
                    print(f"{mode}: {args.jobs} x {args.workers} bound in {whole:.2f} s (load {load})", flush=True)
        finally:
            for operator in operators:
                operator.stop()
            for node in nodes:
                cluster.delete_node(node)
    write_results(
        args.out,
        timings,
        note=args.note,
        trials_in_order=in_order,
        jobs=args.jobs,
        workers=args.workers,
        gpus_per_worker=1,
        nodes=len(nodes),
        command=f".venv/bin/python bench/gang.py --jobs {args.jobs} --workers {args.workers} --trials {args.trials}",
    )


if __name__ == "__main__":
    main()
