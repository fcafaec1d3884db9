"""What the operator benchmarks share: the local control plane for one run, and operators electing a leader."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

from .cluster import Cluster
from .jobs import install_crds
from .operator import OperatorProcess
from .testing import create_namespace, delete_namespace, unique_name


@contextlib.contextmanager
def local_cluster() -> Iterator[Cluster]:
    """The control plane of the environment (LEPTON_PORT_OFFSET, LEPTON_RUN_DIR, ...) with the CRDs installed:
    started when none runs, and then stopped at the end."""
    cluster = Cluster.from_env()
    started = not cluster.is_ready()
    if started:
        cluster.up()
    try:
        install_crds(cluster)
        yield cluster
    finally:
        if started:
            cluster.down()


@contextlib.contextmanager
def watched_namespace(
    cluster: Cluster, prefix: str, log_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """A fresh namespace and an operator process (admin kubeconfig, `env` on top) watching only it; the
    operator is stopped and the namespace deleted (waited for) at the end."""
    ns = create_namespace(cluster, unique_name(prefix))
    operator = OperatorProcess(cluster.kubeconfig, log_dir, env={"LEPTON_NAMESPACES": json.dumps([ns]), **(env or {})})
    operator.start()
    try:
        yield ns
    finally:
        operator.stop()
        delete_namespace(cluster, ns, wait=True)


def leader_env(
    namespace: str, lease: str, duration: float = 15.0, renew_deadline: float = 10.0, retry: float = 2.0
) -> dict[str, str]:
    """Operator settings for leader election on the Lease `namespace/lease`, watching only `namespace` (the
    defaults are the chart's)."""
    return {
        "LEPTON_NAMESPACES": json.dumps([namespace]),
        "LEPTON_LEADER_ELECTION": "true",
        "LEPTON_LEADER_ELECTION_NAMESPACE": namespace,
        "LEPTON_LEADER_ELECTION_NAME": lease,
        "LEPTON_LEASE_DURATION": str(duration),
        "LEPTON_RENEW_DEADLINE": str(renew_deadline),
        "LEPTON_RETRY_PERIOD": str(retry),
    }


def holder_pid(cluster: Cluster, namespace: str, lease: str) -> int:
    """The pid in the Lease's holder identity `<hostname>_<pid>_<random>`; -1 when there is no holder."""
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    try:
        got = k8s.CoordinationV1Api(cluster.api_client).read_namespaced_lease(lease, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return -1
        raise
    parts = str((got.spec.holder_identity if got.spec else None) or "").split("_")
    return int(parts[-2]) if len(parts) >= 3 else -1


def pid(op: OperatorProcess) -> int:
    """The operator's pid (-2 when it is not started)."""
    return op.proc.pid if op.proc else -2
