"""One workload measured: submit it, wait until every pod is Running (and every job reports Running), count what
the controller cost (CPU, RSS, API requests), delete it and wait until everything is gone.

Timing comes from the watcher process's stamps (watch.py); "apply" is the client's wall clock just before the
POST, so apply -> pods created = the job's last pod seen by the watch - its first POST (not creationTimestamp,
which has whole seconds). API requests: apiserver_flowcontrol_dispatched_requests_total of a FlowSchema matching
only the controller's ServiceAccount, and, for our operator, its own lepton_api_requests_total by verb and
resource.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .apiclient import Api, delete_all, remaining, submit
from .profile import BurstCpu, cpu_seconds, profiled, rss_mib, settle
from .watch import JOB_LABEL, Watcher


def _page(url: str, ctx: Any = None) -> str:
    """The text of a /metrics page."""
    with urllib.request.urlopen(urllib.request.Request(url), context=ctx, timeout=30) as resp:
        return str(resp.read().decode())


def _samples(text: str, name: str) -> list[tuple[str, float]]:
    """(labels, value) of every labelled sample of counter `name` on a /metrics page."""
    pattern = re.compile(rf"^{name}\{{([^}}]*)\}} ([0-9.e+]+)$")
    return [(m.group(1), float(m.group(2))) for line in text.splitlines() if (m := pattern.match(line))]


def flow_requests(api: Api, flow: str) -> int:
    """apiserver_flowcontrol_dispatched_requests_total of one FlowSchema (every priority level)."""
    page = _page(api.url + "/metrics", api.ssl())
    samples = _samples(page, "apiserver_flowcontrol_dispatched_requests_total")
    return int(sum(v for labels, v in samples if f'flow_schema="{flow}"' in labels))


def operator_counts(metrics_url: str) -> dict[str, int]:
    """From one read of our operator's /metrics: its requests so far by "VERB resource[/subresource]"
    (lepton_api_requests_total) and, under "passes", its TrainingJob passes (lepton_reconcile_duration_seconds)."""
    page = _page(metrics_url)
    out: dict[str, int] = {}
    for labels, value in _samples(page, "lepton_api_requests_total"):
        parts = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        key = f"{parts.get('verb', '?')} {parts.get('resource', '?')}"
        out[key] = out.get(key, 0) + int(value)
    m = re.search(r"^lepton_reconcile_duration_seconds_count ([0-9.e+]+)$", page, re.MULTILINE)
    out["passes"] = int(float(m.group(1))) if m else 0
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 3)


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": pct(values, 0.5), "p95": pct(values, 0.95), "p99": pct(values, 0.99)}


def steady_rate(times: list[float]) -> float:
    """Pods per second between the 10th and the 90th percentile pod (the burst's middle, no ramp-up/tail)."""
    if len(times) < 10:
        return float("nan")
    a, b = times[len(times) // 10], times[(len(times) * 9) // 10]
    return round((len(times) * 8 // 10) / max(b - a, 1e-9), 1)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            print(f"  timed out after {timeout:.0f} s waiting for {what}", flush=True)
            return False
        time.sleep(interval)
    return True


@dataclass
class Workload:
    """What a driver submits and how it is observed."""

    name: str  # "lepton" | "training-operator" | "bare-client"
    namespace: str
    post_path: str  # where the manifests are POSTed
    manifests: list[dict[str, Any]]  # jobs, or (bare client) the pods themselves
    pid: int | None = None  # the controller's process: CPU and RSS
    flow: str | None = None  # its FlowSchema: API requests
    metrics_url: str | None = None  # our operator's /metrics: requests by verb and resource
    components: dict[str, int] = field(default_factory=dict)  # the control plane's processes: CPU over the burst
    schedulable: bool = True  # False: CPU-only pods on GPU-tainted nodes stay Pending (memory phase)

    @property
    def job_path(self) -> str | None:
        """The collection of the job kind (where the jobs were POSTed); None for the bare client's pods."""
        return None if self.manifests and self.manifests[0]["kind"] == "Pod" else self.post_path

    def job_of(self, manifest: dict[str, Any]) -> str:
        meta = manifest["metadata"]
        return str(meta["labels"][JOB_LABEL]) if manifest["kind"] == "Pod" else str(meta["name"])

    def expected(self) -> dict[str, int]:
        """Job name -> pods it should get."""
        counts: dict[str, int] = {}
        for m in self.manifests:
            counts[self.job_of(m)] = counts.get(self.job_of(m), 0) + _pod_count(m)
        return counts

    @property
    def pods(self) -> int:
        return sum(_pod_count(m) for m in self.manifests)


def _pod_count(m: dict[str, Any]) -> int:
    if m["kind"] == "Pod":
        return 1
    if m["kind"] == "TrainingJob":
        return int(m["spec"]["replicas"])
    return sum(int(r["replicas"]) for r in m["spec"]["pytorchReplicaSpecs"].values())


class Usage:
    """The controller's CPU seconds, peak RSS (sampled every 0.5 s, and the kernel's high-water mark) and API
    requests between `start()` and `stop()`."""

    def __init__(self, api: Api, w: Workload) -> None:
        self.api, self.w = api, w
        self.peak: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _read(self) -> tuple[int | None, float | None, dict[str, int]]:
        w = self.w
        flow = flow_requests(self.api, w.flow) if w.flow else None
        cpu = cpu_seconds(w.pid) if w.pid else None
        return flow, cpu, operator_counts(w.metrics_url) if w.metrics_url else {}

    def _sample(self) -> None:
        assert self.w.pid
        while not self._stop.wait(0.5):
            with contextlib.suppress(OSError):
                self.peak.append(rss_mib(self.w.pid))

    def start(self) -> None:
        self.before = self._read()
        if self.w.pid:
            self.peak.append(rss_mib(self.w.pid))
            self._thread.start()

    def stop(self) -> dict[str, Any]:
        (flow0, cpu0, ops0), (flow1, cpu1, ops1) = self.before, self._read()
        jobs, pid = max(len(self.w.expected()), 1), self.w.pid
        self._stop.set()
        if pid is None:
            return {}
        self._thread.join()
        cpu = (cpu1 or 0.0) - (cpu0 or 0.0)
        requests = (flow1 or 0) - (flow0 or 0)
        by_kind = {k: round((v - ops0.get(k, 0)) / jobs, 2) for k, v in sorted(ops1.items()) if v - ops0.get(k, 0)}
        passes = by_kind.pop("passes", None)
        return {
            "operator_cpu_seconds": round(cpu, 2),
            "operator_cpu_ms_per_pod": round(1000 * cpu / max(self.w.pods, 1), 2),
            "operator_peak_rss_mib": round(max(max(self.peak), rss_mib(pid, "VmHWM")), 1),
            "operator_rss_after_mib": round(rss_mib(pid), 1),
            "api_requests": requests,
            "api_requests_per_job": round(requests / jobs, 2),
            **({"api_requests_per_job_by_kind": by_kind} if by_kind else {}),
            **({"passes_per_job": passes} if passes is not None else {}),
        }


def run_workload(api: Api, w: Workload, args: argparse.Namespace) -> dict[str, Any]:
    """Submit, wait for all pods Running (and every job Running), delete, wait for all pods gone."""
    total, expected, timeout = w.pods, w.expected(), args.timeout
    quiet = settle(w.components)  # the previous clean-up (or a fresh cluster's start) is over
    with Watcher(api, w.namespace, w.job_path) as watcher:
        seen = watcher.seen
        usage = Usage(api, w)
        usage.start()
        load0 = os.getloadavg()[0]
        pids = {**w.components, "watcher": watcher.proc.pid, "bench client": os.getpid()}
        burst = BurstCpu({**pids, **({"controller": w.pid} if w.pid else {})})
        label = f"{w.name}-{time.strftime('%H%M%S')}"
        with profiled(api, args.profile, label, w.pid, args.profile_seconds):
            burst.start()
            sent_by_name = asyncio.run(submit(api, w.post_path, w.manifests, args.concurrency, args.rate))
            t_submitted = time.time()
            pods_ok = wait_until(lambda: len(seen.pod_created) >= total, timeout, f"{total} {w.name} pods")
            running_ok = jobs_ok = False
            if w.schedulable:
                running_ok = wait_until(
                    lambda: len(seen.pod_running) >= total, timeout, f"{total} {w.name} pods Running"
                )
            burst_cpu = burst.stop()
        sent: dict[str, float] = {}  # job -> its first POST
        for m in w.manifests:
            job, t = w.job_of(m), sent_by_name[m["metadata"]["name"]]
            sent[job] = min(sent.get(job, t), t)
        if w.schedulable:
            jobs_ok = w.job_path is None or wait_until(
                lambda: len(seen.job_running) >= len(expected),
                min(60.0, timeout),
                f"{len(expected)} {w.name} jobs Running",
            )
        if w.pid:
            time.sleep(args.settle)  # the controller's trailing status writes belong to the workload
        used = usage.stop()
        load1 = os.getloadavg()[0]
        with seen.lock:
            created = dict(seen.pod_created)
            running = dict(seen.pod_running)
            job_running = dict(seen.job_running)
        per_job_created: dict[str, float] = {}
        per_job_running: dict[str, float] = {}
        counts: dict[str, int] = {}
        for pod, (job, t) in created.items():
            counts[job] = counts.get(job, 0) + 1
            per_job_created[job] = max(per_job_created.get(job, 0.0), t)
            if pod in running:
                per_job_running[job] = max(per_job_running.get(job, 0.0), running[pod])
        complete = [j for j, n in expected.items() if counts.get(j, 0) >= n]
        to_created = [per_job_created[j] - sent[j] for j in complete]
        to_running = [per_job_running[j] - sent[j] for j in complete if j in per_job_running]
        to_job_running = [job_running[j] - sent[j] for j in expected if j in job_running]
        first_sent = min(sent.values())
        times = sorted(t for _, t in created.values())
        last_created = times[-1] if times else first_sent
        cleanup = _clean_up(api, w, seen, set(created), list(expected), args)
    rate = len(created) / max(last_created - first_sent, 1e-9)
    print(
        f"   {w.name}: {len(created)}/{total} pods, {rate:.1f} pods/s, "
        f"p99 apply->pods {pct(to_created, 0.99):.2f} s, cleanup {cleanup if cleanup is not None else -1:.1f} s",
        flush=True,
    )
    return {
        "jobs": len(expected),
        "pods": total,
        "pods_created": len(created),
        "jobs_with_all_pods": len(complete),
        "all_pods_created": pods_ok and len(complete) == len(expected),
        "all_pods_running": running_ok,
        "all_jobs_running": jobs_ok,
        "submit_seconds": round(t_submitted - first_sent, 3),
        "pods_per_second": round(rate, 1),
        "pods_per_second_steady": steady_rate(times),
        "first_apply_to_last_pod_s": round(last_created - first_sent, 3),
        "first_apply_to_last_running_s": round(max(running.values()) - first_sent, 3) if running_ok else None,
        "apply_to_pods_created_s": percentiles(to_created),
        "apply_to_pods_running_s": percentiles(to_running),
        "apply_to_job_running_status_s": percentiles(to_job_running) if w.job_path else None,
        **used,
        "burst_cpu_seconds": burst_cpu,  # every process, from the first POST to the last pod Running
        "burst_cpu_ms_per_pod": round(1000 * sum(burst_cpu.values()) / max(total, 1), 2),
        "cleanup_seconds": cleanup,
        "cleanup_complete": cleanup is not None,
        "load_average_1m": [round(load0, 2), round(load1, 2)],
        "control_plane_cores_before": quiet,
    }


def _clean_up(
    api: Api, w: Workload, seen: Any, pods: set[str], jobs: list[str], args: argparse.Namespace
) -> float | None:
    """Delete the jobs (or, bare, the pods); seconds until every pod and job is gone, None on timeout."""
    t_delete = time.time()
    if w.job_path:
        asyncio.run(delete_all(api, w.job_path, jobs, args.concurrency))
    else:
        asyncio.run(delete_all(api, w.post_path, sorted(pods), args.concurrency))
    collections = [f"/api/v1/namespaces/{w.namespace}/pods", *([w.job_path] if w.job_path else [])]
    checked = [time.monotonic()]

    def gone() -> bool:
        if pods <= seen.pod_deleted.keys() and (not w.job_path or len(seen.job_deleted) >= len(jobs)):
            return True
        if time.monotonic() - checked[0] < 5:
            return False
        checked[0] = time.monotonic()  # the watch may have missed a DELETED: ask the server itself
        return not asyncio.run(remaining(api, collections))

    if not wait_until(gone, args.timeout, f"{w.name} pods and jobs deleted"):
        return None
    with seen.lock:
        last_gone = max([*(seen.pod_deleted.get(n, 0.0) for n in pods), *seen.job_deleted.values()])
    if not pods <= seen.pod_deleted.keys():
        last_gone = max(last_gone, time.time())
    return round(last_gone - t_delete, 3)
