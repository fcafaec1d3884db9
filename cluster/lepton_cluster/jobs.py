"""TrainingJob helpers for tests and benchmarks (through the kubernetes client, as admin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .cluster import Cluster
from .testing import wait_for

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "lepton.ai", "v1alpha1", "trainingjobs"


def install_crds(cluster: Cluster) -> None:
    """Apply crds/ and wait until the API server serves the kinds."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/trainingjobs.lepton.ai")
    wait_for(
        lambda: cluster.kubectl("get", "trainingjobs", "-A", check=False).returncode == 0,
        30,
        message="trainingjobs to be served",
    )


def custom(cluster: Cluster) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(cluster.api_client)


def job_manifest(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {"image": "lepton/trainer:test", "replicas": 2, "gpusPerReplica": 1, **spec},
    }


def create_job(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = custom(cluster).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    return obj


def get_job(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom(cluster).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return obj


def patch_job(cluster: Cluster, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = custom(cluster).patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
    return obj


def status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    st: dict[str, Any] = get_job(cluster, namespace, name).get("status") or {}
    return st


def condition(st: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in st.get("conditions") or [] if c["type"] == type_), None)


def job_pods(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"lepton.ai/job-name={name}").items
    return [cluster.to_dict(p) for p in pods]


def live_pods(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    return [p for p in job_pods(cluster, namespace, name) if not p["metadata"].get("deletionTimestamp")]


def wait_phase(cluster: Cluster, namespace: str, name: str, phase: str, timeout: float = 30.0) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        st = status(cluster, namespace, name)
        return st if st.get("phase") == phase else None

    result = wait_for(
        reached,
        timeout,
        interval=0.2,
        message=lambda: f"{name} phase {phase}; status {status(cluster, namespace, name)}",
    )
    assert result is not None
    return result


def table(cluster: Cluster, namespace: str, kind: str = "tj") -> list[dict[str, str]]:
    """`kubectl get` as a person sees it, one dict per row keyed by column header (empty cells kept)."""
    lines = cluster.kubectl("get", kind, "-n", namespace).stdout.splitlines()
    if not lines:
        return []
    header = lines[0]
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [{header[a:b].strip(): line[a:b].strip() for a, b in bounds} for line in lines[1:]]
