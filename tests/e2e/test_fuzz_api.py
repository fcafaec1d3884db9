"""Fuzz against the real API server (issue 15): ~1000 TrainingJobs from tests/unit/strategies.py (plausible specs with
up to 3 hostile, missing or extra fields), created with the operator running. The CRD's schema and CEL refuse some
(422, naming a field); every accepted job the operator manages gets pods, a phase or a condition within 10 s of its
creation; the operator process lives through it with no background task started again; and once every job has
settled, its passes are the ones backoff and the periodic requeues explain, never a hot loop.

Run alone: `pytest tests/e2e/test_fuzz_api.py -s` (the figures are printed as one JSON line)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from kubernetes import config as k8s_config
from kubernetes import watch
from kubernetes.client import CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import GROUP, PLURAL, VERSION, custom
from lepton_cluster.operator import OperatorProcess
from lepton_cluster.testing import holds_for, wait_for
from lepton_operator.constants import CONTROLLER_NAME
from lepton_operator.reconcile.cost import COST_WRITE_INTERVAL
from lepton_operator.reconcile.elastic import GROW_RECHECK_SECONDS
from prometheus_client.parser import text_string_to_metric_families

from ..unit.strategies import FUZZ, trainingjob

pytestmark = [pytest.mark.e2e]

JOBS = 1000  # generated (the CRD refuses ~4 in 5: a fifth are accepted); any not JSON (NaN, inf) are not sent
BATCH = 50  # created back to back, then awaited: the cluster holds every job, the operator a burst of 50 at once
REACT_S = 10.0  # the bound: an accepted job has pods, a phase or a condition this long after its creation
MAX_REPLICAS = 2  # integer replica counts are capped: kwok pods run no code, but 500 x 1024 pods would still flood
QUIET_S = 15.0  # the window, after every job settled, in which passes are counted
FIELD = re.compile(r"\bspec(\.[A-Za-z]+)*|metadata\.name|\b(apiVersion|kind)\b")
WHY = re.compile(r"\bspec(\.[A-Za-z]+)+|forbidden: no [A-Za-z]+")  # the gist of a condition's message
RETRY = re.compile(r"trainingjob (\S+)/(\S+): apply failed .*; retrying in ([0-9.]+)s")


def generated_jobs() -> list[dict[str, Any]]:
    """JOBS TrainingJobs, the same on every run: a @given function that only collects what it is given, run once
    with the strategies' derandomized profile (a fixed seed, no database) and only the generate phase (nothing
    fails, so nothing to shrink). `strategy.example()` would not be reproducible, and `find` stops at the first
    match; this is hypothesis' own generator, its size distribution included (small specs first, then larger)."""
    drawn: list[dict[str, Any]] = []

    @settings(FUZZ, max_examples=JOBS, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(trainingjob())
    def collect(job: dict[str, Any]) -> None:
        drawn.append(job)

    collect()
    return drawn


def manifest(i: int, job: dict[str, Any]) -> dict[str, Any] | None:
    """The generated spec under a unique name (the rest of the generated metadata and status is what the API
    server sets; it would refuse a create with a resourceVersion); None when it is not JSON (NaN, inf)."""
    spec = dict(job["spec"])
    for key in ("replicas", "minReplicas", "maxReplicas"):
        if type(spec.get(key)) is int:
            spec[key] = min(spec[key], MAX_REPLICAS)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob", "metadata": {"name": f"fz-{i:03d}"}}
    try:
        json.dumps(spec, allow_nan=False)
    except ValueError:
        return None
    return body | {"spec": spec}


@dataclass
class Seen:
    """What the watches saw, by job name, in time.monotonic() seconds."""

    reported: dict[str, float] = field(default_factory=dict)  # first status with a phase or a condition
    podded: dict[str, float] = field(default_factory=dict)  # first pod
    writes: dict[str, list[float]] = field(default_factory=dict)  # every change of the job after its creation
    status: dict[str, dict[str, Any]] = field(default_factory=dict)  # the latest


class Watches:
    """Watches of the namespace's TrainingJobs and pods in two threads (their own API clients), recording when
    each job was first reported on and first had a pod."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster, self.ns, self.seen, self.stopped = cluster, namespace, Seen(), threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._loop, args=(self._jobs,), daemon=True),
            threading.Thread(target=self._loop, args=(self._pods,), daemon=True),
        ]

    def __enter__(self) -> Watches:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        for t in self.threads:
            t.join(15)

    def _loop(self, run: Callable[[Any], None]) -> None:
        client = k8s_config.new_client_from_config(config_file=str(self.cluster.kubeconfig))  # type: ignore[no-untyped-call]
        try:
            while not self.stopped.is_set():
                run(client)  # each stream ends after a few seconds: a re-list replays ADDED, times kept if set
        except BaseException as exc:  # shown by the test, not lost in a thread
            self.errors.append(exc)
        finally:
            client.close()

    def _jobs(self, client: Any) -> None:
        w = watch.Watch()  # type: ignore[no-untyped-call]
        api = CustomObjectsApi(client)
        for ev in w.stream(api.list_namespaced_custom_object, GROUP, VERSION, self.ns, PLURAL, timeout_seconds=3):  # type: ignore[no-untyped-call]
            now, obj = time.monotonic(), ev["object"]
            name, st = obj["metadata"]["name"], obj.get("status") or {}
            if ev["type"] == "MODIFIED":
                self.seen.writes.setdefault(name, []).append(now)
            self.seen.status[name] = st
            if st.get("phase") or st.get("conditions"):
                self.seen.reported.setdefault(name, now)
            if self.stopped.is_set():
                w.stop()  # type: ignore[no-untyped-call]

    def _pods(self, client: Any) -> None:
        w = watch.Watch()  # type: ignore[no-untyped-call]
        api = CoreV1Api(client)
        for ev in w.stream(api.list_namespaced_pod, self.ns, label_selector="lepton.ai/job-name", timeout_seconds=3):  # type: ignore[no-untyped-call]
            self.seen.podded.setdefault(ev["object"].metadata.labels["lepton.ai/job-name"], time.monotonic())
            if self.stopped.is_set():
                w.stop()  # type: ignore[no-untyped-call]


def reaction(seen: Seen, name: str) -> float | None:
    times = [t for t in (seen.reported.get(name), seen.podded.get(name)) if t is not None]
    return min(times) if times else None


def gist(status: dict[str, Any]) -> str | None:
    """InvalidSpec or ReplicaFailure and the field or rule its message names, for the figures."""
    for c in status.get("conditions") or []:
        if c["type"] in ("InvalidSpec", "ReplicaFailure") and c.get("status") == "True":
            why = WHY.search(c.get("message", ""))
            return f"{c['type']}: {why[0] if why else c.get('reason')}"
    return None


def scrape(operator: OperatorProcess) -> dict[str, float]:
    """Each metric family summed over its labels."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(operator.metrics()):
        for s in family.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def passes(operator: OperatorProcess) -> float:
    return scrape(operator).get("lepton_reconcile_duration_seconds_count", 0.0)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else 0.0


def log_since(operator: OperatorProcess, offset: int) -> Iterator[str]:
    with operator.log_path.open("rb") as f:
        f.seek(offset)
        yield from f.read().decode(errors="replace").splitlines()


@pytest.mark.timeout(240)
def test_generated_specs_are_refused_or_reported_and_never_loop(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    jobs = [b for i, job in enumerate(generated_jobs()) if (b := manifest(i, job)) is not None]
    assert len(jobs) >= 500, f"only {len(jobs)} of {JOBS} generated specs are JSON"
    api = custom(cluster)
    before = scrape(operator)
    restarts_before = before.get("lepton_operator_task_restarts_total", 0.0)
    created: dict[str, float] = {}  # accepted, managed by the operator: creation time
    elsewhere: list[str] = []  # accepted with another spec.managedBy: the operator must leave them alone
    refusals: Counter[str] = Counter()  # by the first field the API server's message names
    unnamed: list[str] = []
    with Watches(cluster, namespace) as watches:
        seen = watches.seen
        for start in range(0, len(jobs), BATCH):
            batch = []
            for body in jobs[start : start + BATCH]:
                name = body["metadata"]["name"]
                try:
                    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
                except ApiException as e:
                    assert e.status == 422, f"{name}: {e.status} {e.body}"
                    message = json.loads(e.body or "{}").get("message", "")
                    if found := FIELD.search(message):
                        refusals[found[0]] += 1
                    else:
                        unnamed.append(f"{name}: {message}")
                    continue
                if body["spec"].get("managedBy", CONTROLLER_NAME) == CONTROLLER_NAME:
                    created[name] = time.monotonic()
                    batch.append(name)
                else:
                    elsewhere.append(name)
            # every job of the batch reported on, or REACT_S past its creation (the assertion below says which)
            deadline = max((created[n] for n in batch), default=0.0) + REACT_S
            wait_for(
                lambda b=batch, d=deadline: all(reaction(seen, n) is not None for n in b) or time.monotonic() > d,  # type: ignore[misc]
                REACT_S + 5,
                interval=0.1,
            )
            assert not watches.errors, watches.errors
        latency = {n: (t - created[n]) if (t := reaction(seen, n)) is not None else None for n in created}
        late = {n: latency[n] for n in created if latency[n] is None or latency[n] > REACT_S}  # type: ignore[operator]

        # Settled: no job changed for 2 s (a pass that writes shows as a change; the last batch's jobs settle
        # within moments of their report).
        def settled() -> bool:
            last = max((t for times in seen.writes.values() for t in times), default=0.0)
            return time.monotonic() - last > 2.0

        wait_for(settled, 30, interval=0.2, message="every job to stop changing")
        offset = operator.log_path.stat().st_size
        passes_before, window_start = passes(operator), time.monotonic()
        holds_for(lambda: operator.proc is not None and operator.proc.poll() is None, QUIET_S, 0.5, "operator alive")
        passes_in_window, window_end = passes(operator) - passes_before, time.monotonic()
        after = scrape(operator)
    assert not watches.errors, watches.errors

    writes_in_window = {
        n: k for n, times in seen.writes.items() if (k := sum(window_start <= t <= window_end for t in times))
    }
    retries: dict[str, list[float]] = {}
    for line in log_since(operator, offset):
        if m := RETRY.search(line):
            retries.setdefault(m[2], []).append(float(m[3]))
    measured = [v for v in latency.values() if v is not None]
    figures = {
        "specs": len(jobs),
        "refused": sum(refusals.values()) + len(unnamed),
        "refused_by_field": dict(refusals.most_common()),
        "accepted": len(created) + len(elsewhere),
        "managed_elsewhere": len(elsewhere),
        "phases": dict(Counter(seen.status.get(n, {}).get("phase", "-") for n in created)),
        "conditions": dict(
            Counter(
                c["type"]
                for n in created
                for c in seen.status.get(n, {}).get("conditions") or []
                if c.get("status") == "True"
            )
        ),
        "why": dict(Counter(gist(seen.status.get(n, {})) for n in created if gist(seen.status.get(n, {})))),
        "with_pods": sum(n in seen.podded for n in created),
        "first_report_s_max": round(max(measured, default=0.0), 2),
        "first_report_s_p95": round(p95(measured), 2),
        "quiet_window_s": round(window_end - window_start, 1),
        "passes_in_window": passes_in_window,
        "jobs_written_in_window": len(writes_in_window),
        "jobs_retrying_in_window": len(retries),
    }
    print("\nfuzz_api " + json.dumps(figures))

    assert not unnamed, f"refusals that name no field: {unnamed[:5]}"
    assert not late, f"{len(late)} accepted jobs not reported on within {REACT_S} s: {dict(list(late.items())[:10])}"
    for name in elsewhere:
        assert name not in seen.podded and not seen.status.get(name), f"{name} (managed elsewhere) was acted on"
    # Never crashed: the process is alive and healthy, and no background task (controllers, price reload) ended
    # and was started again by the supervisor.
    assert operator.proc is not None and operator.proc.poll() is None, operator.tail()
    assert operator.healthy()
    assert after.get("lepton_operator_task_restarts_total", 0.0) == restarts_before, operator.tail()
    # Never retries without backoff. In a window of QUIET_S = 15 s a settled job has at most: one cost refresh
    # (every COST_WRITE_INTERVAL = 30 s), two elastic re-checks for free GPUs (GROW_RECHECK_SECONDS = 10 s), one
    # one-shot timer (a deadline, the TTL, the unschedulable timeout), and the retries of a failing apply, which
    # wait 1, 2, 4, 8, ... s (at most 5 in 15 s: t, t+1, t+3, t+7, t+15); 9 in all, so 9 x jobs bounds the total.
    # (A 409 is retried from 0.1 s, but needs a second writer: there is none in the window.) A hot loop (a requeue
    # of 0 s, a retry without backoff) makes a pass every few ms: thousands in the window from one job.
    assert COST_WRITE_INTERVAL >= QUIET_S and GROW_RECHECK_SECONDS >= QUIET_S / 2
    assert passes_in_window <= 9 * len(created), f"{passes_in_window} passes in {QUIET_S} s for {len(created)} jobs"
    # Per job: at most one status write in the window (the cost refresh), and retries that each wait longer.
    assert all(k <= 1 for k in writes_in_window.values()), f"jobs written more than once: {writes_in_window}"
    for name, delays in retries.items():
        assert len(delays) <= 5 and delays == sorted(delays), f"{name} retried without backoff: {delays}"
