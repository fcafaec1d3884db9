"""Two operator processes, one leader (a Lease): SIGKILL the leader, the standby takes over within the lease
duration plus two retry periods, and a job created after the kill gets its pods."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from lepton_cluster.chart import E2E_RELEASE
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import REPO, create_job, job_manifest, live_pods
from lepton_cluster.operator import OperatorProcess
from lepton_cluster.testing import create_namespace, delete_namespace, unique_name, wait_for

from ..conftest import SESSION_PREFIX

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("crds")]

LEASE_NS, LEASE = "lepton-system", f"{E2E_RELEASE}-lepton-operator"  # the chart's Role allows this one Lease
TIMES = {"LEPTON_LEASE_DURATION": "4", "LEPTON_RENEW_DEADLINE": "3", "LEPTON_RETRY_PERIOD": "0.5"}


def holder(cluster: Cluster) -> str:
    try:
        lease = k8s.CoordinationV1Api(cluster.api_client).read_namespaced_lease(LEASE, LEASE_NS)
    except ApiException as exc:
        if exc.status == 404:
            return ""
        raise
    return str(lease.spec.holder_identity or "")


def pid_of(identity: str) -> int:
    """Our identities are `<hostname>_<pid>_<random>`."""
    parts = identity.split("_")
    return int(parts[-2]) if len(parts) >= 3 else -1


@pytest.fixture
def isolated(cluster: Cluster) -> Iterator[str]:
    """A namespace the session's own operator does not watch (its pattern is `<prefix>-*`), and no old Lease."""
    ns = create_namespace(cluster, unique_name(f"leader-{SESSION_PREFIX}"))
    cluster.kubectl("delete", "lease", "-n", LEASE_NS, LEASE, "--ignore-not-found")
    try:
        yield ns
    finally:
        delete_namespace(cluster, ns)


def replica(identity: Path, ns: str, log_dir: Path) -> OperatorProcess:
    env = {
        "LEPTON_NAMESPACES": json.dumps([ns]),
        "LEPTON_LEADER_ELECTION": "true",
        "LEPTON_LEADER_ELECTION_NAMESPACE": LEASE_NS,
        "LEPTON_LEADER_ELECTION_NAME": LEASE,
        **TIMES,
    }
    return OperatorProcess(identity, log_dir, env=env)


def pods_of(cluster: Cluster, ns: str, name: str, n: int, timeout: float) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = wait_for(
        lambda: (pods := live_pods(cluster, ns, name)) and len(pods) == n and pods,
        timeout,
        interval=0.1,
        message=f"{n} pods of {name}",
    )
    return found


@pytest.mark.timeout(120)
def test_the_standby_takes_over_when_the_leader_is_killed(
    cluster: Cluster, isolated: str, operator_identity: Path
) -> None:
    ns, logs = isolated, REPO / "run" / "e2e" / "leader"
    a = replica(operator_identity, ns, logs / "a")
    b = replica(operator_identity, ns, logs / "b")
    try:
        a.start()
        wait_for(lambda: a.proc is not None and pid_of(holder(cluster)) == a.proc.pid, 15, message="a leads")
        b.start()  # healthy while standing by
        create_job(cluster, ns, job_manifest("before", replicas=2))
        pods_of(cluster, ns, "before", 2, 20)
        assert b.proc is not None and pid_of(holder(cluster)) == a.proc.pid
        killed = time.monotonic()
        a.kill()
        create_job(cluster, ns, job_manifest("after", replicas=2))
        limit = float(TIMES["LEPTON_LEASE_DURATION"]) + 2 * float(TIMES["LEPTON_RETRY_PERIOD"]) + 2.0
        wait_for(lambda: pid_of(holder(cluster)) == b.proc.pid, limit, interval=0.05, message="b takes over")
        took_over = time.monotonic() - killed
        pods_of(cluster, ns, "after", 2, 15)
        assert took_over < limit, took_over
        assert "leads" in b.tail(200)
    finally:
        b.stop()
        a.stop()
