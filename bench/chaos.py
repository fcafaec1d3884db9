"""Fault drills on the local control plane: two operators (leader election) reach the API server through a proxy
that fails ~5 % of requests (429, 500, connection reset, 5 s stall) while TrainingJobs get worker failures and
the control plane is hit: the leader SIGKILLed mid-reconcile, the API server SIGKILLed and restarted, etcd paused,
etcd compacted and every watch cut (410 on resume), a storm of writes making the operator's status writes
conflict (409), every request slowed by 1 s.

    .venv/bin/python bench/chaos.py [--jobs 100] [--kills 20] [--apiserver-restarts 2] [--fault-rate 0.05]

(tests/e2e/test_chaos_smoke.py runs it small, with a short lease, and checks the invariants.)

Each drill injects worker failures into a few jobs (exit 137: a counted restart; an eviction: not counted),
applies the fault, and times recovery: injection -> every hit job Running at its next epoch. At the end every
job's pods complete; the invariants are read from the API: no two pods for one (job, epoch, rank) and none of an
epoch the job has not reached, no pod without a live owner, every job Succeeded, restarts and epochs exactly as
injected. Prints a table and writes bench/results/chaos.json.
"""

from __future__ import annotations

import argparse
import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lepton_cluster.benchrun import holder_pid, leader_env, local_cluster, pid
from lepton_cluster.cluster import Cluster
from lepton_cluster.faults import FaultProxy, compact_etcd, paused, restart
from lepton_cluster.jobs import GROUP, PLURAL, REPO, VERSION, create_job, custom, job_manifest, live_pods, status
from lepton_cluster.operator import OperatorProcess
from lepton_cluster.testing import create_namespace, delete_namespace, unique_name, wait_for
from lepton_cluster.timings import summary, write_results

RESULTS = Path(__file__).parent / "results" / "chaos.json"
LEASE = "lepton-operator-chaos"
REPLICAS = 2
GPUS_PER_NODE = 64
RECOVERY_TIMEOUT = 180.0


class Drills:
    """The jobs, what was injected into each, and the operators."""

    def __init__(self, cluster: Cluster, ns: str, ops: list[OperatorProcess], jobs: list[str], hit: int) -> None:
        self.cluster, self.ns, self.ops, self.jobs, self.hit = cluster, ns, ops, jobs, hit
        self.counted: Counter[str] = Counter()  # restarts that spend the budget (exit 137)
        self.epochs: Counter[str] = Counter()  # every restart epoch (exit 137 and evictions)
        self.next_jobs = itertools.cycle(jobs)
        self.kinds = itertools.cycle(["exit", "evict"])
        self.recovery: dict[str, list[float]] = {}
        self.takeover: list[float] = []
        self.kills = 0
        self.apiserver_restarts = 0

    def running_at(self, job: str, epoch: int) -> bool:
        st = status(self.cluster, self.ns, job)
        if st.get("restartEpoch") != epoch or st.get("phase") != "Running":
            return False
        pods = live_pods(self.cluster, self.ns, job)
        return sum(p["metadata"]["labels"].get("lepton.ai/restart-epoch") == str(epoch) for p in pods) == REPLICAS

    def inject(self) -> dict[str, int]:
        """Fail rank 0 of `hit` jobs' current epoch; the epoch each must reach."""
        wanted = {}
        for job in itertools.islice(self.next_jobs, self.hit):
            epoch = self.epochs[job]
            name = f"{job}-{epoch}-0"
            if next(self.kinds) == "exit":
                self.cluster.fail_pod(self.ns, name, exit_code=137, reason="Error")
                self.counted[job] += 1
            else:
                self.cluster.evict_pod(self.ns, name)
            self.epochs[job] += 1
            wanted[job] = epoch + 1
        return wanted

    def recover(self, drill: str, wanted: dict[str, int], since: float) -> float:
        """Seconds from `since` until every job of `wanted` runs at its epoch (recorded under `drill`)."""
        for job, epoch in wanted.items():
            wait_for(
                lambda j=job, e=epoch: self.running_at(j, e),
                RECOVERY_TIMEOUT,
                0.1,
                message=f"{drill}: {job} running at epoch {epoch}",
                ignore=(OSError,),
            )
        took = time.monotonic() - since
        self.recovery.setdefault(drill, []).append(took)
        print(f"{drill}: recovered in {took:.2f}s", flush=True)
        return took

    def drill(self, name: str, fault: Callable[[], None]) -> None:
        """Inject failures, apply the fault at once (the operator is mid-reconcile), time the recovery."""
        t0 = time.monotonic()
        wanted = self.inject()
        fault()
        self.recover(name, wanted, t0)

    # -- faults --------------------------------------------------------------------------------
    def kill_leader(self) -> None:
        """SIGKILL the Lease holder 0-0.5 s after the failures; time until the standby holds the Lease; the killed
        one starts again as the standby."""
        leader = wait_for(
            lambda: next((op for op in self.ops if pid(op) == holder_pid(self.cluster, self.ns, LEASE)), None), 120
        )
        standby = next(op for op in self.ops if op is not leader)
        time.sleep(random.uniform(0, 0.5))
        killed = time.monotonic()
        leader.kill()
        self.kills += 1
        wait_for(lambda: holder_pid(self.cluster, self.ns, LEASE) == pid(standby), 120, 0.05, ignore=(OSError,))
        self.takeover.append(time.monotonic() - killed)
        leader.start(timeout=120)

    def restart_apiserver(self) -> None:
        restart(self.cluster, "kube-apiserver")
        self.apiserver_restarts += 1


def conflict_storm(cluster: Cluster, ns: str, jobs: list[str], stop: threading.Event) -> int:
    """Annotate `jobs` over and over (each write moves resourceVersion: the operator's next status write with
    the version it read conflicts); how many writes."""
    api, writes = custom(cluster), 0
    while not stop.is_set():
        for job in jobs:
            patch = {"metadata": {"annotations": {"chaos.lepton.ai/tick": str(writes)}}}
            api.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, job, patch)
            writes += 1
    return writes


def invariants(cluster: Cluster, ns: str, d: Drills) -> dict[str, Any]:
    """What the API says at the end."""
    jobs = {
        j["metadata"]["name"]: j
        for j in custom(cluster).list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
    }
    pods = [cluster.to_dict(p) for p in cluster.core.list_namespaced_pod(ns, label_selector="lepton.ai/job-name").items]
    uids = {j["metadata"]["uid"] for j in jobs.values()}
    seen: Counter[tuple[str, str, str]] = Counter()
    future = 0
    for p in pods:
        labels = p["metadata"]["labels"]
        job, epoch = labels["lepton.ai/job-name"], labels["lepton.ai/restart-epoch"]
        seen[(job, epoch, labels["lepton.ai/replica-index"])] += 1
        reached = (jobs.get(job, {}).get("status") or {}).get("restartEpoch", 0)
        future += int(epoch) > reached
    orphans = sum(not {o["uid"] for o in p["metadata"].get("ownerReferences") or []} & uids for p in pods)
    wrong = [n for n in d.jobs if (jobs.get(n, {}).get("status") or {}).get("phase") != "Succeeded"]
    counts = [
        n
        for n in d.jobs
        if (st := (jobs.get(n, {}).get("status") or {})).get("restarts", 0) != d.counted[n]
        or st.get("restartEpoch", 0) != d.epochs[n]
    ]
    return {
        "jobs_lost": sum(n not in jobs for n in d.jobs),
        "duplicate_pods": sum(c - 1 for c in seen.values() if c > 1),
        "pods_of_unreached_epochs": future,
        "orphaned_pods": orphans,
        "jobs_wrong_final_state": len(wrong),
        "restart_count_errors": len(counts),
        "wrong": {"final_state": wrong[:10], "restart_counts": counts[:10]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--apiserver-restarts", type=int, default=2)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--hit", type=int, default=4, help="jobs given a worker failure per drill")
    parser.add_argument("--lease-duration", type=float, default=15.0)
    parser.add_argument("--renew-deadline", type=float, default=10.0)
    parser.add_argument("--retry-period", type=float, default=2.0)
    parser.add_argument("--slow", type=float, default=1.0, help="seconds added to every request in the slow drill")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    random.seed(7)
    started = time.monotonic()
    with local_cluster() as cluster:
        ns = create_namespace(cluster, unique_name("chaos"))
        proxy = FaultProxy(cluster, rate=0.0)
        proxy.start()
        run = REPO / "run" / "bench" / "chaos"
        kubeconfig = proxy.write_kubeconfig(run / "proxy.kubeconfig")
        env = leader_env(ns, LEASE, args.lease_duration, args.renew_deadline, args.retry_period)
        ops = [OperatorProcess(kubeconfig, run / name, env=env) for name in ("a", "b")]
        jobs = [f"c{i}" for i in range(args.jobs)]
        d = Drills(cluster, ns, ops, jobs, args.hit)
        nodes: list[str] = []
        try:
            for op in ops:
                op.start(timeout=120)
            pool = {"lepton.ai/chaos-pool": ns}  # simulated GPU nodes of this run: room for every job at once
            nodes = cluster.add_nodes(
                -(-args.jobs * REPLICAS // GPUS_PER_NODE), gpus_per_node=GPUS_PER_NODE, labels=pool
            )
            policy = {"maxRestarts": 1000, "backoff": {"initialSeconds": 0, "maxSeconds": 0}}
            t0 = time.monotonic()
            for job in jobs:
                manifest = job_manifest(
                    job, replicas=REPLICAS, gpusPerReplica=1, nodeSelector=pool, failurePolicy=policy
                )
                create_job(cluster, ns, manifest)
            d.recover("all_jobs_running_from_create", {j: 0 for j in jobs}, t0)
            proxy.rate = args.fault_rate  # background faults from here on
            d.drill("baseline_proxy_faults_only", lambda: None)
            for _ in range(args.kills):
                d.drill("leader_sigkill", d.kill_leader)
            for _ in range(args.apiserver_restarts):
                d.drill("apiserver_restart", d.restart_apiserver)

            def pause_etcd() -> None:
                with paused(cluster, "etcd"):
                    time.sleep(10)

            d.drill("etcd_paused_10s", pause_etcd)

            def expire_watches() -> None:
                compact_etcd(cluster)
                proxy.cut_watches()

            d.drill("watches_cut_after_compaction_410", expire_watches)
            stop = threading.Event()
            storm_writes: list[int] = []
            storm = threading.Thread(target=lambda: storm_writes.append(conflict_storm(cluster, ns, jobs[:8], stop)))
            storm.start()
            try:
                d.drill("conflict_storm_409", lambda: None)
            finally:
                stop.set()
                storm.join(30)
            proxy.delay = args.slow
            try:
                d.drill(f"apiserver_slowed_{args.slow:g}s_per_request", lambda: None)
            finally:
                proxy.delay = 0.0
            t0 = time.monotonic()
            for job in jobs:  # the last epoch's workers all succeed
                for rank in range(REPLICAS):
                    cluster.complete_pod(ns, f"{job}-{d.epochs[job]}-{rank}")
            wait_for(
                lambda: all(status(cluster, ns, j).get("phase") == "Succeeded" for j in jobs),
                RECOVERY_TIMEOUT,
                0.5,
                message="every job Succeeded",
            )
            d.recovery["all_jobs_succeeded_after_last_pods_complete"] = [time.monotonic() - t0]
            checked = invariants(cluster, ns, d)
        finally:
            for op in ops:
                op.stop()
            proxy.stop()
            delete_namespace(cluster, ns)
            for node in nodes:
                cluster.delete_node(node)
    timings = {**{f"recovery_{k}": v for k, v in d.recovery.items()}, "leader_takeover": d.takeover}
    result = write_results(
        args.out,
        timings,
        jobs=len(jobs),
        operator_kills=d.kills,
        apiserver_restarts=d.apiserver_restarts,
        etcd_pauses=1,
        watch_expiries=1,
        failures_injected=sum(d.epochs.values()),
        counted_restarts_injected=sum(d.counted.values()),
        proxy_requests=proxy.requests,
        proxy_faults=dict(proxy.injected),
        conflict_storm_writes=sum(storm_writes),
        leader_takeover_s_p95=summary(d.takeover)["p95_s"] if d.takeover else None,
        wall_clock_s=round(time.monotonic() - started, 1),
        settings={k: str(v) for k, v in vars(args).items()},
        **checked,
    )
    bad = [k for k in ("jobs_lost", "duplicate_pods", "pods_of_unreached_epochs", "orphaned_pods",
                       "jobs_wrong_final_state", "restart_count_errors") if result[k]]  # fmt: skip
    print("invariants:", "all hold" if not bad else f"BROKEN: {bad} {result['wrong']}")
    if bad:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
