"""Prometheus metrics of the operator. Labels are bounded: namespace, phase, reason; never a pod or job name."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry()
PHASES = ("Pending", "Running", "Restarting", "Suspended", "Succeeded", "Failed")

RESTARTS = Counter(
    "lepton_trainingjob_restarts",
    "New epochs started after a worker failure.",
    ["namespace", "reason"],
    registry=REGISTRY,
)
RECONCILE = Histogram(
    "lepton_reconcile_duration_seconds",
    "One observe-plan-apply pass of a TrainingJob.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
APPLY_TO_PODS = Histogram(
    "lepton_apply_to_pods_created_seconds",
    "From a TrainingJob's creation to all its first pods created.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120),
    registry=REGISTRY,
)
FAILOVER = Histogram(
    "lepton_failover_duration_seconds",
    "From a failure seen to every worker of the new epoch running.",
    buckets=(0.5, 1, 2, 3, 5, 8, 10, 15, 20, 30, 60, 120, 300),
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "lepton_api_requests",
    "Requests the operator sent to the API server (watches excluded), by verb, resource and status code.",
    ["verb", "resource", "code"],
    registry=REGISTRY,
)
TASK_RESTARTS = Counter(
    "lepton_operator_task_restarts",
    "Background tasks (controllers, price reload, leader election) started again after they ended.",
    ["task"],
    registry=REGISTRY,
)


@dataclass
class JobFacts:
    """What the gauges need of one job, kept up to date by its reconcile."""

    namespace: str
    phase: str
    gpu_hours: float
    cost_usd: float


class JobCollector(Collector):
    """Gauges computed at scrape time from the latest facts of every job (consistent with the cluster)."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], JobFacts] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_phase = GaugeMetricFamily("lepton_trainingjobs", "TrainingJobs by phase.", labels=["phase"])
        counts = dict.fromkeys(PHASES, 0)
        hours: dict[str, float] = {}
        usd: dict[str, float] = {}
        for f in self.jobs.values():
            counts[f.phase] = counts.get(f.phase, 0) + 1
            hours[f.namespace] = hours.get(f.namespace, 0.0) + f.gpu_hours
            usd[f.namespace] = usd.get(f.namespace, 0.0) + f.cost_usd
        for phase, n in counts.items():
            by_phase.add_metric([phase], n)
        yield by_phase
        g = GaugeMetricFamily("lepton_gpu_hours", "GPU-hours accrued by existing TrainingJobs.", labels=["namespace"])
        c = GaugeMetricFamily("lepton_cost_usd", "Cost accrued by existing TrainingJobs, USD.", labels=["namespace"])
        for ns in sorted(hours):
            g.add_metric([ns], hours[ns])
            c.add_metric([ns], usd[ns])
        yield g
        yield c


JOBS = JobCollector()
REGISTRY.register(JOBS)


def serve(port: int, host: str) -> None:
    """Expose /metrics (a daemon thread of prometheus_client's own HTTP server)."""
    start_http_server(port, addr=host, registry=REGISTRY)
