"""TrainingJob helpers for tests and benchmarks (through the kubernetes client, as admin)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import yaml

from .cluster import Cluster
from .testing import wait_for

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "lepton.ai", "v1alpha1", "trainingjobs"


def crd_established(cluster: Cluster, name: str) -> bool:
    """The CRD's Established condition is True. (Not `kubectl wait`: it fails at once, instead of waiting,
    while a CRD just created has no status.conditions yet - 1 of 10 fresh-clone demos failed so.)"""
    crd = cluster.kubectl_json("get", "crd", name)
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def install_crds(cluster: Cluster) -> None:
    """Apply crds/ and wait until the API server serves every kind they define."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        name, plural = str(crd["metadata"]["name"]), str(crd["spec"]["names"]["plural"])
        wait_for(partial(crd_established, cluster, name), 30, interval=0.2, message=f"CRD {name} Established")
        wait_for(partial(_served, cluster, plural), 30, message=f"{plural} to be served")


def _served(cluster: Cluster, plural: str) -> bool:
    return cluster.kubectl("get", plural, "-A", check=False).returncode == 0


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


def dns_records(cluster: Cluster, namespace: str, job: str) -> dict[str, str]:
    """hostname -> address, from the EndpointSlices of the job's headless Service (what cluster DNS answers)."""
    slices = cluster.kubectl_json("-n", namespace, "get", "endpointslices", "-l", f"kubernetes.io/service-name={job}")
    return {e["hostname"]: e["addresses"][0] for s in slices["items"] for e in s.get("endpoints") or []}


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
