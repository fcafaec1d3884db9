"""The Helm chart's identity for a locally run operator: the chart's RBAC, a ServiceAccount token, a kubeconfig.

Used by the e2e `operator` fixture so that every e2e scenario runs with exactly the permissions the chart
grants (least privilege proven on the real scenarios), and by tests/e2e/test_chart.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .cluster import Cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "lepton-operator"
E2E_RELEASE = "lepton-e2e"
E2E_NAMESPACE = "lepton-system"
FIELD_MANAGER = "lepton-e2e"
# What the operator run outside the cluster needs of the chart: its ServiceAccount and RBAC, nothing else.
IDENTITY_ONLY = (
    "operator.deploy=false",
    "crds.install=false",
    "prices.enabled=false",
    "metrics.service.enabled=false",
    "rbac.aggregateToDefaultRoles=false",
)


def template(cluster: Cluster, release: str, namespace: str, *sets: str, show_only: tuple[str, ...] = ()) -> str:
    """`helm template` of the chart with `--set` values (the built helm; the server's Kubernetes version)."""
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", server_version(cluster)]
    for s in sets:
        args += ["--set", s]
    for path in show_only:
        args += ["--show-only", path]
    return cluster.helm(*args).stdout


def server_version(cluster: Cluster) -> str:
    info: dict[str, Any] = cluster.kubectl_json("version")
    version: str = info["serverVersion"]["gitVersion"]
    return version


def ensure_namespace(cluster: Cluster, name: str) -> None:
    """Create the namespace if missing (server-side apply: idempotent, safe for concurrent sessions)."""
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    cluster.kubectl(
        "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-", input=yaml.safe_dump(manifest)
    )


def apply_identity(
    cluster: Cluster,
    release: str = E2E_RELEASE,
    namespace: str = E2E_NAMESPACE,
    sets: tuple[str, ...] = (),
) -> str:
    """Apply the chart's ServiceAccount and RBAC (rendered with `helm template`); the ServiceAccount's name.

    Server-side apply rather than `helm install`: idempotent and safe when several test sessions share the
    cluster, and it leaves no release behind that an `uninstall` could remove from under another session.
    """
    ensure_namespace(cluster, namespace)
    manifests = template(cluster, release, namespace, *IDENTITY_ONLY, *sets)
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}", "-f", "-", input=manifests
    )
    sa = next(d["metadata"]["name"] for d in yaml.safe_load_all(manifests) if d and d.get("kind") == "ServiceAccount")
    return str(sa)


def service_account_token(cluster: Cluster, name: str, namespace: str, duration: str = "6h") -> str:
    """A bound token of the ServiceAccount (TokenRequest API: `kubectl create token`)."""
    return cluster.kubectl("create", "token", name, "-n", namespace, f"--duration={duration}").stdout.strip()


def write_kubeconfig(cluster: Cluster, token: str, path: Path, user: str) -> Path:
    """A kubeconfig with the admin kubeconfig's server and CA, authenticating with `token` (mode 0600)."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    ctx_name = admin.get("current-context") or admin["contexts"][0]["name"]
    ctx = next(c["context"] for c in admin["contexts"] if c["name"] == ctx_name)
    server = next(c["cluster"] for c in admin["clusters"] if c["name"] == ctx["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lepton", "cluster": server}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "lepton", "user": user}}],
        "current-context": user,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(config, fh)
    tmp.replace(path)
    return path


def operator_kubeconfig(
    cluster: Cluster,
    path: Path,
    release: str = E2E_RELEASE,
    namespace: str = E2E_NAMESPACE,
    sets: tuple[str, ...] = (),
) -> Path:
    """Everything at once: the chart's RBAC applied, a token of its ServiceAccount, a kubeconfig holding it."""
    sa = apply_identity(cluster, release, namespace, sets)
    token = service_account_token(cluster, sa, namespace)
    return write_kubeconfig(cluster, token, path, f"system:serviceaccount:{namespace}:{sa}")
