"""kopf settings and the operator's long-lived objects, made once at start-up.

kopf runs the process: start-up, clean-up, liveness. It watches nothing: both kinds run on our own controller
runtime (handlers/controller.py). Replicas elect a leader on a Lease (handlers/leader.py); kopf's peering is a
freeze protocol between operators, not leader election, so it stays off (standalone).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from .config import OperatorConfig
from .constants import GROUP
from .handlers import prices
from .handlers.inferenceservice import InferenceServiceController
from .handlers.leader import LeaderElector, Leadership
from .handlers.supervisor import Supervisor
from .handlers.trainingjob import TrainingJobController
from .kube.client import Kube
from .kube.lease import Leases
from .prices import PriceTable


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    config = OperatorConfig()
    # Our own finalizer/annotation prefix (we add no finalizers: children are garbage-collected by ownerReferences).
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key="last-handled")
    # No kopf peering objects (leader election is ours, on a Lease), no extra RBAC.
    settings.peering.standalone = True
    # Resources are resolved once at start-up (the CRDs come with the chart) and namespaces are exact names or
    # filtered in the handlers: no CRD or namespace watching, so no RBAC on either.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    # We post our own Events for transitions; kopf's per-handler log events would double API traffic.
    settings.posting.enabled = False
    memo.config = config
    memo.kube = Kube(connections=config.api_connections)
    memo.trainingjobs = jobs = TrainingJobController(memo.kube, config)
    services = InferenceServiceController(
        Kube(connections=16), config, lambda: jobs.prices, jobs.idx.jobs, jobs.idx.nodes
    )
    memo.inferenceservices = services
    jobs.listeners.append(services.job_changed)
    memo.supervisor = tasks = Supervisor()
    if config.leader_election:
        leadership = Leadership()
        leases = Leases(memo.kube, config.leader_election_namespace, config.leader_election_name)
        elector = LeaderElector(
            leases,
            leadership,
            lease_duration=config.lease_duration,
            renew_deadline=config.renew_deadline,
            retry_period=config.retry_period,
        )
        jobs.leadership = services.leadership = leadership
        tasks.start("leader election", elector.run)
    tasks.start("trainingjob controller", jobs.run)
    tasks.start("inferenceservice controller", services.run)
    if config.prices_configmap:

        def use(table: PriceTable) -> None:
            memo.trainingjobs.prices = table

        tasks.start("price reload", lambda: prices.follow(memo.kube, config.prices_configmap, use))
    logger.info("lepton-operator configured: namespaces=%s", config.namespaces or "all")


@kopf.on.probe(id="tasks")
def tasks_alive(memo: kopf.Memo, **_: Any) -> dict[str, str]:
    """/healthz: each background task's state; a task that keeps failing fails the probe (kubelet restarts us)."""
    supervisor: Supervisor | None = memo.get("supervisor")
    if supervisor is None:
        return {}
    health = supervisor.health()
    if not supervisor.healthy():
        raise kopf.PermanentError(f"background tasks failing: {health}")
    return health


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    if "supervisor" in memo:
        await memo.supervisor.close()
    await memo.inferenceservices.close()
    await memo.kube.close()
