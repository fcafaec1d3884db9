"""Scale and speed: N jobs x W workers through our operator and through Kubeflow training-operator v1.

    .venv/bin/python bench/scale.py --jobs 500 --workers 4 --nodes 200

Starts its own control plane (port offset 2000, run/bench-cluster, NODES x 8 GPUs) unless `--env-cluster`
says to use the one `LEPTON_*` describes; installs our CRD, runs our operator (as the Helm chart's
ServiceAccount), submits the jobs as fast as an async client can (admin, loopback), waits for every pod to
be Running, deletes the jobs and waits for every pod to be gone. Then the same workload as PyTorchJobs
(Master 1 + Worker W-1, same image, GPUs and tolerations) with training-operator v1.8.1 built from its Go
module (bench/build_training_operator.sh), PyTorchJob controller only, no gang scheduling, in the same
cluster. Then (`--memory-jobs`) our operator alone with MEMORY_JOBS x MEMORY_WORKERS CPU-only workers
(10k pods) for its RSS at scale. Prints a table and writes bench/results/scale.json.

Timing: a separate watcher process stamps every pod's first ADDED and first Running watch event with the
wall clock; "apply" is the client's wall clock just before it sends the job's POST. So
apply -> pods created = last pod of the job seen by the watch - POST sent (not creationTimestamp, which
has whole seconds). API requests per job: apiserver_flowcontrol_dispatched_requests_total of a FlowSchema
matching only the operator's ServiceAccount (same priority level as the built-in service-accounts one).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import faulthandler
import json
import multiprocessing as mp
import os
import platform
import queue
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "scale.json"
RUN = REPO / "run" / "bench-scale"
TO_NAMESPACE = "kubeflow"  # the training-operator's own namespace (its webhook cert Secret lives there)
TO_SA = "training-operator"
CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")  # fixed in training-operator's pkg/cert
LEPTON_FLOW, TO_FLOW = "bench-lepton-operator", "bench-training-operator"
GPU_TOLERATIONS = [
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "lepton.ai/spot", "operator": "Exists", "effect": "NoSchedule"},
]


# -- the watcher process ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Api:
    """What a process needs to talk to the API server as admin (picklable)."""

    url: str
    ca: str
    cert: str
    key: str

    def ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def session(self, limit: int = 64) -> aiohttp.ClientSession:
        conn = aiohttp.TCPConnector(ssl=self.ssl(), limit=limit)
        return aiohttp.ClientSession(base_url=self.url, connector=conn)


def _owner(obj: dict[str, Any]) -> str:
    refs = obj["metadata"].get("ownerReferences") or []
    return next((r["name"] for r in refs if r.get("controller")), refs[0]["name"] if refs else "")


def _job_running(obj: dict[str, Any]) -> bool:
    st = obj.get("status") or {}
    if st.get("phase") == "Running":  # TrainingJob
        return True
    return any(c.get("type") == "Running" and c.get("status") == "True" for c in st.get("conditions") or [])


async def _events(listed: list[dict[str, Any]], resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The listed objects as ADDED events, then the watch stream's events (one JSON document a line)."""
    for ev in listed:
        yield ev
    buf = b""
    async for chunk in resp.content.iter_any():
        buf += chunk
        *complete, buf = buf.split(b"\n")
        for line in complete:
            if line.strip():
                yield json.loads(line)


async def _watch(api: Api, path: str, kind: str, out: mp.Queue[tuple[str, str, str, str, float]]) -> None:
    """List+watch `path`, sending (kind, event, name, owner, wall time) for ADDED / RUNNING / DELETED."""
    seen: set[str] = set()
    running: set[str] = set()
    async with api.session(limit=2) as session:
        while True:
            async with session.get(path) as resp:
                listing = await resp.json()
            rv = listing["metadata"]["resourceVersion"]
            listed = {o["metadata"]["name"] for o in listing.get("items") or []}
            for name in seen - listed:  # deleted while the watch was down
                seen.discard(name)
                running.discard(name)
                out.put((kind, "DELETED", name, "", time.time()))
            events = [{"type": "ADDED", "object": o} for o in listing.get("items") or []]
            params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": "3000"}
            timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
            async with session.get(path, params=params, timeout=timeout) as resp:
                async for ev in _events(events, resp):
                    t = time.time()
                    if ev["type"] == "ERROR":
                        break  # expired resourceVersion: list again
                    obj = ev["object"]
                    if ev["type"] == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    if ev["type"] == "DELETED":
                        seen.discard(name)
                        running.discard(name)
                        out.put((kind, "DELETED", name, "", t))
                        continue
                    if name not in seen:
                        seen.add(name)
                        out.put((kind, "ADDED", name, _owner(obj), t))
                    up = (obj.get("status") or {}).get("phase") == "Running" if kind == "pod" else _job_running(obj)
                    if up and name not in running:
                        running.add(name)
                        out.put((kind, "RUNNING", name, "", t))


def watcher_main(api: Api, paths: list[tuple[str, str]], out: mp.Queue[tuple[str, str, str, str, float]]) -> None:
    async def run() -> None:
        await asyncio.gather(*(_watch(api, path, kind, out) for path, kind in paths))

    asyncio.run(run())


@dataclass
class Observed:
    """What the watcher saw, drained from its queue by a thread."""

    pod_created: dict[str, tuple[str, float]] = field(default_factory=dict)
    pod_running: dict[str, float] = field(default_factory=dict)
    pod_deleted: dict[str, float] = field(default_factory=dict)
    job_created: dict[str, float] = field(default_factory=dict)
    job_running: dict[str, float] = field(default_factory=dict)
    job_deleted: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, event: str, name: str, owner: str, t: float) -> None:
        with self.lock:
            if kind == "pod":
                if event == "ADDED":
                    self.pod_created.setdefault(name, (owner, t))
                elif event == "RUNNING":
                    self.pod_running.setdefault(name, t)
                else:
                    self.pod_deleted[name] = t
            elif event == "ADDED":
                self.job_created.setdefault(name, t)
            elif event == "RUNNING":
                self.job_running.setdefault(name, t)
            else:
                self.job_deleted[name] = t

    def live_pods(self) -> int:
        with self.lock:
            return sum(1 for n in self.pod_created if n not in self.pod_deleted)


class Watcher:
    def __init__(self, api: Api, namespace: str, job_path: str) -> None:
        ctx = mp.get_context("spawn")
        self.queue: mp.Queue[tuple[str, str, str, str, float]] = ctx.Queue()
        paths = [(f"/api/v1/namespaces/{namespace}/pods", "pod"), (job_path, "job")]
        self.proc = ctx.Process(target=watcher_main, args=(api, paths, self.queue), daemon=True)
        self.seen = Observed()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)

    def __enter__(self) -> Watcher:
        self.proc.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.proc.terminate()
        self.proc.join(10)
        self._thread.join(5)

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                item = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.add(*item)


# -- measurements ----------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def flow_requests(api: Api, flow: str) -> int:
    """apiserver_flowcontrol_dispatched_requests_total of one FlowSchema (every priority level)."""
    req = urllib.request.Request(api.url + "/metrics")
    with urllib.request.urlopen(req, context=api.ssl(), timeout=30) as resp:
        text = resp.read().decode()
    total = 0.0
    pattern = re.compile(r"^apiserver_flowcontrol_dispatched_requests_total\{([^}]*)\} ([0-9.e+]+)$")
    for line in text.splitlines():
        m = pattern.match(line)
        if m and f'flow_schema="{flow}"' in m.group(1):
            total += float(m.group(2))
    return int(total)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 3)


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
    name: str  # "lepton" | "training-operator"
    namespace: str
    job_path: str  # collection path of the job kind
    manifests: list[dict[str, Any]]
    pid: int
    flow: str
    schedulable: bool = True  # False: CPU-only pods on GPU-tainted nodes stay Pending (memory phase)

    @property
    def pods(self) -> int:
        return sum(_worker_count(m) for m in self.manifests)


def _worker_count(m: dict[str, Any]) -> int:
    if m["kind"] == "TrainingJob":
        return int(m["spec"]["replicas"])
    return sum(int(r["replicas"]) for r in m["spec"]["pytorchReplicaSpecs"].values())


async def submit(
    api: Api, path: str, manifests: list[dict[str, Any]], concurrency: int, rate: float = 0.0
) -> dict[str, float]:
    """POST every job, `concurrency` at a time (`rate` > 0: the i-th no earlier than i / rate seconds after the
    first, an open-loop arrival); job name -> wall time just before its POST."""
    sent: dict[str, float] = {}
    sem = asyncio.Semaphore(concurrency)
    start = time.monotonic()
    async with api.session(limit=concurrency) as session:

        async def one(i: int, m: dict[str, Any]) -> None:
            if rate > 0:
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            async with sem:
                sent[m["metadata"]["name"]] = time.time()
                async with session.post(path, json=m) as resp:
                    if resp.status >= 300:
                        raise RuntimeError(f"POST {path}: {resp.status} {await resp.text()}")

        await asyncio.gather(*(one(i, m) for i, m in enumerate(manifests)))
    return sent


async def delete_all(api: Api, path: str, names: list[str], concurrency: int) -> None:
    sem = asyncio.Semaphore(concurrency)
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
    async with api.session(limit=concurrency) as session:

        async def one(name: str) -> None:
            async with sem, session.delete(f"{path}/{name}", json=body) as resp:
                if resp.status >= 300 and resp.status != 404:
                    raise RuntimeError(f"DELETE {path}/{name}: {resp.status} {await resp.text()}")

        await asyncio.gather(*(one(n) for n in names))


async def remaining(api: Api, ns: str, job_path: str) -> int:
    """Pods plus jobs still in the namespace (one object listed of each is enough to know)."""
    left = 0
    async with api.session(limit=2) as session:
        for path in (f"/api/v1/namespaces/{ns}/pods", job_path):
            async with session.get(path, params={"limit": "1"}) as resp:
                body = await resp.json()
            left += len(body.get("items") or []) + int(body["metadata"].get("remainingItemCount") or 0)
    return left


def run_workload(api: Api, w: Workload, args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    """Submit, wait for all pods Running (and every job Running), delete, wait for all pods gone."""
    total = w.pods
    with Watcher(api, w.namespace, w.job_path) as watcher:
        seen = watcher.seen
        time.sleep(1.0)  # the watcher's first LIST
        requests0, cpu0, load0 = flow_requests(api, w.flow), cpu_seconds(w.pid), os.getloadavg()[0]
        peak = [rss_mib(w.pid)]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.5):
                with contextlib.suppress(OSError):
                    peak.append(rss_mib(w.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        sent = asyncio.run(submit(api, w.job_path, w.manifests, args.concurrency, args.rate))
        t_submitted = time.time()
        pods_ok = wait_until(lambda: len(seen.pod_created) >= total, timeout, f"{total} {w.name} pods")
        running_ok = jobs_ok = False
        if w.schedulable:
            running_ok = wait_until(lambda: len(seen.pod_running) >= total, timeout, f"{total} {w.name} pods Running")
            jobs_ok = wait_until(
                lambda: len(seen.job_running) >= len(w.manifests),
                min(60.0, timeout),
                f"{len(w.manifests)} {w.name} jobs Running",
            )
        time.sleep(args.settle)  # the operator's trailing status writes belong to the workload
        requests1, cpu1 = flow_requests(api, w.flow), cpu_seconds(w.pid)
        sampling.set()
        sampler.join()
        load1 = os.getloadavg()[0]
        rss_now, rss_hwm = rss_mib(w.pid), rss_mib(w.pid, "VmHWM")
        with seen.lock:
            created = dict(seen.pod_created)
            running = dict(seen.pod_running)
            job_running = dict(seen.job_running)
        per_job_created: dict[str, float] = {}
        per_job_running: dict[str, float] = {}
        counts: dict[str, int] = {}
        for pod, (owner, t) in created.items():
            counts[owner] = counts.get(owner, 0) + 1
            per_job_created[owner] = max(per_job_created.get(owner, 0.0), t)
            if pod in running:
                per_job_running[owner] = max(per_job_running.get(owner, 0.0), running[pod])
        expected = {m["metadata"]["name"]: _worker_count(m) for m in w.manifests}
        complete = [j for j, n in expected.items() if counts.get(j, 0) >= n]
        to_created = [per_job_created[j] - sent[j] for j in complete]
        to_running = [per_job_running[j] - sent[j] for j in complete if j in per_job_running]
        to_job_running = [job_running[j] - sent[j] for j in expected if j in job_running]
        first_sent = min(sent.values())
        times = sorted(t for _, t in created.values())
        last_created = times[-1] if times else first_sent
        steady = _steady_rate(times)
        # -- cleanup
        t_delete = time.time()
        asyncio.run(delete_all(api, w.job_path, list(expected), args.concurrency))
        names = set(created)
        checked = [time.monotonic()]

        def gone() -> bool:
            if names <= seen.pod_deleted.keys() and len(seen.job_deleted) >= len(expected):
                return True
            if time.monotonic() - checked[0] < 5:
                return False
            checked[0] = time.monotonic()  # the watch may have missed a DELETED: ask the server itself
            return not asyncio.run(remaining(api, w.namespace, w.job_path))

        gone_ok = wait_until(gone, timeout, f"{w.name} pods and jobs deleted")
        with seen.lock:
            last_gone = max([*(seen.pod_deleted.get(n, 0.0) for n in names), *seen.job_deleted.values()])
        if gone_ok and not names <= seen.pod_deleted.keys():
            last_gone = max(last_gone, time.time())
    print(
        f"   {w.name}: {len(created)}/{total} pods, {len(created) / max(last_created - first_sent, 1e-9):.1f} pods/s, "
        f"p99 apply->pods {pct(to_created, 0.99):.2f} s, cleanup {(last_gone - t_delete) if gone_ok else -1:.1f} s",
        flush=True,
    )
    return {
        "jobs": len(w.manifests),
        "pods": total,
        "pods_created": len(created),
        "jobs_with_all_pods": len(complete),
        "all_pods_created": pods_ok and len(complete) == len(expected),
        "all_pods_running": running_ok,
        "all_jobs_running": jobs_ok,
        "submit_seconds": round(t_submitted - first_sent, 3),
        "pods_per_second": round(len(created) / max(last_created - first_sent, 1e-9), 1),
        "pods_per_second_steady": steady,
        "first_apply_to_last_pod_s": round(last_created - first_sent, 3),
        "apply_to_pods_created_s": {
            "p50": pct(to_created, 0.5),
            "p95": pct(to_created, 0.95),
            "p99": pct(to_created, 0.99),
        },
        "apply_to_pods_running_s": {
            "p50": pct(to_running, 0.5),
            "p95": pct(to_running, 0.95),
            "p99": pct(to_running, 0.99),
        },
        "apply_to_job_running_status_s": {
            "p50": pct(to_job_running, 0.5),
            "p95": pct(to_job_running, 0.95),
            "p99": pct(to_job_running, 0.99),
        },
        "operator_cpu_seconds": round(cpu1 - cpu0, 2),
        "operator_cpu_ms_per_pod": round(1000 * (cpu1 - cpu0) / max(total, 1), 2),
        "operator_peak_rss_mib": round(max(max(peak), rss_hwm), 1),
        "operator_rss_after_mib": round(rss_now, 1),
        "api_requests": requests1 - requests0,
        "api_requests_per_job": round((requests1 - requests0) / max(len(w.manifests), 1), 2),
        "cleanup_seconds": round(last_gone - t_delete, 3) if gone_ok else None,
        "cleanup_complete": gone_ok,
        "load_average_1m": [round(load0, 2), round(load1, 2)],
    }


def _steady_rate(times: list[float]) -> float:
    """Pods per second between the 10th and the 90th percentile pod (the burst's middle, no ramp-up/tail)."""
    if len(times) < 10:
        return float("nan")
    a, b = times[len(times) // 10], times[(len(times) * 9) // 10]
    return round((len(times) * 8 // 10) / max(b - a, 1e-9), 1)


# -- the two operators -----------------------------------------------------------------------------
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


def pytorchjob_manifests(n: int, workers: int, gpus: int) -> list[dict[str, Any]]:
    def replica(count: int) -> dict[str, Any]:
        resources = {"limits": {"nvidia.com/gpu": gpus}} if gpus else {}
        container = {"name": "pytorch", "image": "lepton/trainer:test", "resources": resources}
        return {
            "replicas": count,
            "restartPolicy": "OnFailure",
            "template": {"spec": {"containers": [container], "tolerations": GPU_TOLERATIONS}},
        }

    specs = {"Master": replica(1), **({"Worker": replica(workers - 1)} if workers > 1 else {})}
    return [
        {
            "apiVersion": "kubeflow.org/v1",
            "kind": "PyTorchJob",
            "metadata": {"name": f"pj-{i:05d}"},
            "spec": {"pytorchReplicaSpecs": specs},
        }
        for i in range(n)
    ]


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


def namespace(cluster: Any, prefix: str) -> str:
    from lepton_cluster.testing import create_namespace, unique_name

    return str(create_namespace(cluster, unique_name(prefix)))


def build_training_operator() -> tuple[Path, Path]:
    """The binary (built and cached) and the module's directory in the Go module cache (its CRDs)."""
    out = subprocess.run(
        [str(REPO / "bench" / "build_training_operator.sh")], check=True, text=True, stdout=subprocess.PIPE
    ).stdout
    binary = Path(out.strip().splitlines()[-1])
    gomod = REPO / "bench" / "go" / "training-operator"
    listing = subprocess.run(
        ["go", "list", "-m", "-json", "github.com/kubeflow/training-operator"],
        cwd=gomod,
        check=True,
        text=True,
        stdout=subprocess.PIPE,
        env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"},
    ).stdout
    return binary, Path(json.loads(listing)["Dir"])


class TrainingOperatorProcess:
    def __init__(self, cluster: Any, binary: Path, kubeconfig: Path, watch_namespace: str, threads: int) -> None:
        from lepton_cluster.operator import free_port

        self.cluster, self.certs_mounted = cluster, False
        self.metrics, self.probe, self.webhook = free_port(), free_port(), free_port()
        self.argv = [
            str(binary),
            "--enable-scheme=pytorchjob",
            f"--namespace={watch_namespace}",
            f"--metrics-bind-address=127.0.0.1:{self.metrics}",
            f"--health-probe-bind-address=127.0.0.1:{self.probe}",
            f"--webhook-server-port={self.webhook}",
            f"--controller-threads={threads}",
            "--zap-log-level=info",
            "--zap-devel=false",
        ]
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "MY_POD_NAMESPACE": TO_NAMESPACE}
        self.log = RUN / f"training-operator-{os.getpid()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        RUN.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)

        from lepton_cluster.testing import http_ok

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"training-operator exited; see {self.log}")
            return http_ok(f"http://127.0.0.1:{self.probe}/readyz")

        if not wait_until(lambda: self._mount_certs() or ready(), timeout, "training-operator /readyz", 0.2):
            raise RuntimeError(f"training-operator not ready; see {self.log}")

    def _mount_certs(self) -> bool:
        """Do what the kubelet's Secret volume does in its Deployment: put the rotated certs in its cert dir."""
        if self.certs_mounted:
            return False
        got = self.cluster.kubectl(
            "get", "secret", "training-operator-webhook-cert", "-n", TO_NAMESPACE, "-o", "json", check=False
        )
        data = json.loads(got.stdout).get("data") or {} if got.returncode == 0 else {}
        if not {"tls.crt", "tls.key", "ca.crt"} <= data.keys():
            return False
        CERT_DIR.mkdir(parents=True, exist_ok=True)
        for key in ("tls.crt", "tls.key", "ca.crt"):
            path = CERT_DIR / key
            path.write_bytes(base64.b64decode(data[key]))
            path.chmod(0o600)
        self.certs_mounted = True
        return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def setup_training_operator(cluster: Any, moddir: Path) -> Path:
    """Its CRD (from the module cache), a ServiceAccount with cluster-admin, its webhook Secret; a kubeconfig."""
    from lepton_cluster.chart import ensure_namespace, service_account_token, write_kubeconfig

    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(moddir / "manifests" / "base" / "crds" / "kubeflow.org_pytorchjobs.yaml"),
    )
    wait_until(
        lambda: cluster.kubectl("get", "pytorchjobs", "-A", check=False).returncode == 0, 60, "PyTorchJobs to be served"
    )
    ensure_namespace(cluster, TO_NAMESPACE)
    apply_yaml(
        cluster,
        [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": TO_SA, "namespace": TO_NAMESPACE}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "bench-training-operator"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": TO_SA, "namespace": TO_NAMESPACE}],
            },
            # The cert rotator fills this Secret and the (empty) webhook configuration; no webhook is registered.
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "training-operator-webhook-cert", "namespace": TO_NAMESPACE},
            },
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "validator.training-operator.kubeflow.org"},
            },
            flow_schema(TO_FLOW, TO_NAMESPACE, TO_SA),
        ],
    )
    token = service_account_token(cluster, TO_SA, TO_NAMESPACE)
    return write_kubeconfig(cluster, token, RUN / f"training-operator-{os.getpid()}.kubeconfig", "training-operator")


# -- main ------------------------------------------------------------------------------------------
def open_cluster(args: argparse.Namespace) -> tuple[Any, bool]:
    from lepton_cluster.cluster import Cluster

    if args.env_cluster:
        cluster = Cluster.from_env()
    else:
        env = {
            "LEPTON_PORT_OFFSET": os.environ.get("LEPTON_PORT_OFFSET", "2000"),
            "LEPTON_RUN_DIR": os.environ.get("LEPTON_RUN_DIR", str(REPO / "run" / "bench-cluster")),
        }
        for passed in ("LEPTON_CACHE_DIR", "LEPTON_PROFILING"):  # the latter: /debug/pprof for a profile
            if passed in os.environ:
                env[passed] = os.environ[passed]
        from lepton_cluster.config import ClusterConfig

        config = ClusterConfig.from_env(env, count=args.nodes, gpus_per_node=args.gpus_per_node)
        cluster = Cluster(config)
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


def run_lepton(
    cluster: Any, api: Api, kubeconfig: Path, jobs: int, workers: int, gpus: int, args: argparse.Namespace, label: str
) -> dict[str, Any]:
    from lepton_cluster.operator import OperatorProcess

    ns = namespace(cluster, f"bench-{label}")
    operator = OperatorProcess(kubeconfig, RUN, env={"LEPTON_NAMESPACES": json.dumps([ns])})
    try:
        operator.start()
        assert operator.proc is not None
        w = Workload(
            "lepton",
            ns,
            f"/apis/lepton.ai/v1alpha1/namespaces/{ns}/trainingjobs",
            lepton_manifests(jobs, workers, gpus),
            operator.proc.pid,
            LEPTON_FLOW,
            schedulable=gpus > 0,  # every node carries the GPU taint: CPU-only workers stay Pending
        )
        print(f"-- lepton-operator: {jobs} TrainingJobs x {workers} workers in {ns}", flush=True)
        return run_workload(api, w, args, args.timeout)
    finally:
        operator.stop()
        _drop_namespace(cluster, ns)


def run_training_operator(
    cluster: Any, api: Api, args: argparse.Namespace, binary: Path, moddir: Path
) -> dict[str, Any]:
    kubeconfig = setup_training_operator(cluster, moddir)
    ns = namespace(cluster, "bench-pytorchjob")
    to = TrainingOperatorProcess(cluster, binary, kubeconfig, ns, args.to_threads)
    try:
        to.start()
        assert to.proc is not None
        w = Workload(
            "training-operator",
            ns,
            f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs",
            pytorchjob_manifests(args.jobs, args.workers, args.gpus_per_worker),
            to.proc.pid,
            TO_FLOW,
        )
        print(f"-- training-operator: {args.jobs} PyTorchJobs x {args.workers} pods in {ns}", flush=True)
        return run_workload(api, w, args, args.timeout)
    finally:
        to.stop()
        _drop_namespace(cluster, ns)
        kubeconfig.unlink(missing_ok=True)


def _drop_namespace(cluster: Any, ns: str) -> None:
    """Delete the namespace without waiting (kwok removes deleted pods at once; no pod-by-pod force delete)."""
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float]:
    """ours / theirs for throughput, theirs / ours for latency and cost: >= 1.0 means we are not worse."""

    def div(a: float, b: float) -> float:
        return round(a / b, 2) if b else float("inf")

    return {
        "pods_per_second": div(ours["pods_per_second"], theirs["pods_per_second"]),
        "p50_apply_to_pods_created": div(
            theirs["apply_to_pods_created_s"]["p50"], ours["apply_to_pods_created_s"]["p50"]
        ),
        "p99_apply_to_pods_created": div(
            theirs["apply_to_pods_created_s"]["p99"], ours["apply_to_pods_created_s"]["p99"]
        ),
        "p99_apply_to_pods_running": div(
            theirs["apply_to_pods_running_s"]["p99"], ours["apply_to_pods_running_s"]["p99"]
        ),
        "cleanup": div(theirs["cleanup_seconds"] or 0.0, ours["cleanup_seconds"] or float("inf")),
        "operator_cpu_seconds": div(theirs["operator_cpu_seconds"], ours["operator_cpu_seconds"]),
        "api_requests_per_job": div(theirs["api_requests_per_job"], ours["api_requests_per_job"]),
    }


ROWS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("pods created / s (first apply -> last pod)", lambda r: r["pods_per_second"], "{:.1f}"),
    ("pods created / s (10-90 % of the burst)", lambda r: r["pods_per_second_steady"], "{:.1f}"),
    ("apply -> all pods created p50 (s)", lambda r: r["apply_to_pods_created_s"]["p50"], "{:.2f}"),
    ("apply -> all pods created p95 (s)", lambda r: r["apply_to_pods_created_s"]["p95"], "{:.2f}"),
    ("apply -> all pods created p99 (s)", lambda r: r["apply_to_pods_created_s"]["p99"], "{:.2f}"),
    ("apply -> all pods Running p50 (s)", lambda r: r["apply_to_pods_running_s"]["p50"], "{:.2f}"),
    ("apply -> all pods Running p99 (s)", lambda r: r["apply_to_pods_running_s"]["p99"], "{:.2f}"),
    ("apply -> job status Running p99 (s)", lambda r: r["apply_to_job_running_status_s"]["p99"], "{:.2f}"),
    ("operator CPU (s)", lambda r: r["operator_cpu_seconds"], "{:.1f}"),
    ("operator CPU per pod (ms)", lambda r: r["operator_cpu_ms_per_pod"], "{:.2f}"),
    ("operator peak RSS (MiB)", lambda r: r["operator_peak_rss_mib"], "{:.1f}"),
    ("API requests per job", lambda r: r["api_requests_per_job"], "{:.1f}"),
    ("cleanup: delete -> all pods gone (s)", lambda r: r["cleanup_seconds"], "{:.2f}"),
]


def print_table(columns: dict[str, dict[str, Any]]) -> None:
    names = list(columns)
    print(f"\n{'':46}" + "".join(f"{n:>20}" for n in names))
    for label, get, fmt in ROWS:
        cells = []
        for n in names:
            try:
                v = get(columns[n])
                cells.append(fmt.format(v) if v is not None else "-")
            except (KeyError, TypeError):
                cells.append("-")
        print(f"{label:46}" + "".join(f"{c:>20}" for c in cells))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=500)
    p.add_argument("--workers", type=int, default=4, help="pods per job")
    p.add_argument("--gpus-per-worker", type=int, default=1)
    p.add_argument(
        "--nodes",
        type=int,
        default=256,
        help="simulated GPU nodes of a cluster it starts (more are added when the workload needs them)",
    )
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=32, help="concurrent POSTs of the submitting client")
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="jobs submitted per second (open-loop arrival); 0 = all at once (a burst: latency is queueing)",
    )
    p.add_argument("--settle", type=float, default=5.0, help="seconds counted after the last pod runs")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per wait")
    p.add_argument("--skip-training-operator", action="store_true", help="our operator only (no Go build)")
    p.add_argument("--to-threads", type=int, default=1, help="training-operator --controller-threads (default 1)")
    p.add_argument("--memory-jobs", type=int, default=0, help="then our operator alone with this many jobs")
    p.add_argument("--memory-workers", type=int, default=10)
    p.add_argument("--env-cluster", action="store_true", help="use the cluster LEPTON_* describes (CI smoke)")
    p.add_argument("--keep-cluster", action="store_true", help="leave a cluster this run started running")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop operators, cluster
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>`: where a stuck run waits

    from lepton_cluster.chart import operator_kubeconfig
    from lepton_cluster.jobs import install_crds

    binary = moddir = None
    if not args.skip_training_operator:
        binary, moddir = build_training_operator()  # before the cluster: a cold build wants both cores
    cluster, started = open_cluster(args)
    pki = cluster.config.pki_dir
    api = Api(cluster.config.apiserver_url, str(pki / "ca.crt"), str(pki / "admin.crt"), str(pki / "admin.key"))
    RUN.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    try:
        install_crds(cluster)
        ensure_gpus(cluster, args.jobs * args.workers * args.gpus_per_worker, args.gpus_per_node)
        kubeconfig = operator_kubeconfig(cluster, RUN / f"operator-sa-{os.getpid()}.kubeconfig")
        apply_yaml(cluster, [flow_schema(LEPTON_FLOW, "lepton-system", _sa_name(kubeconfig))])
        load_start = os.getloadavg()
        ours = run_lepton(cluster, api, kubeconfig, args.jobs, args.workers, args.gpus_per_worker, args, "lepton")
        columns = {"lepton-operator": ours}
        partial = args.out.with_suffix(".partial.json")
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(columns, indent=2) + "\n")
        theirs = None
        if binary is not None and moddir is not None:
            theirs = run_training_operator(cluster, api, args, binary, moddir)
            columns["training-operator"] = theirs
            partial.write_text(json.dumps(columns, indent=2) + "\n")
        memory = None
        if args.memory_jobs:
            memory = run_lepton(cluster, api, kubeconfig, args.memory_jobs, args.memory_workers, 0, args, "memory")
            columns[f"lepton {args.memory_jobs}x{args.memory_workers} cpu"] = memory
        load_end = os.getloadavg()
        kubeconfig.unlink(missing_ok=True)
    finally:
        if started and not args.keep_cluster:
            cluster.down()
    print_table(columns)
    ratio = ratios(ours, theirs) if theirs else None
    if ratio:
        print("\nratio_vs_training_operator (>= 1.0: lepton-operator not slower / not costlier):")
        for k, v in ratio.items():
            print(f"  {k:32} {v:>8.2f}")
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "jobs": args.jobs,
        "workers": args.workers,
        "submit_rate_jobs_per_s": args.rate or None,
        "gpus_per_worker": args.gpus_per_worker,
        "nodes": cluster.config.nodes.count,
        "pods_per_second": ours["pods_per_second"],
        "p99_apply_to_pods_created_s": ours["apply_to_pods_created_s"]["p99"],
        "operator_peak_rss_mib": ours["operator_peak_rss_mib"],
        "ratio_vs_training_operator": ratio["pods_per_second"] if ratio else None,
        "ratios_vs_training_operator": ratio,
        "lepton_operator": ours,
        "training_operator": theirs,
        "training_operator_version": moddir.name.split("@")[-1] if moddir else None,
        "training_operator_controller_threads": args.to_threads if theirs else None,
        "memory_at_scale": memory,
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


def _sa_name(kubeconfig: Path) -> str:
    import yaml

    user: str = yaml.safe_load(kubeconfig.read_text())["users"][0]["name"]
    return user.rsplit(":", 1)[-1]


if __name__ == "__main__":
    sys.exit(main())
