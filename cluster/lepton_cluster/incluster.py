"""The operator as its users run it: images in the real nodes' containerd, `helm install` of the chart.

`load_images` builds (or finds cached) `localhost/lepton-operator:dev` and `localhost/lepton-trainer:dev` and
imports them into every real node (skipped where the digest is there already), like `kind load`.
`install_operator` installs the chart from charts/ with that image on the real nodes: the chart's own
Deployment, ServiceAccount and RBAC, non-root with a read-only root filesystem, and waits until it is Ready.

What differs from a cloud cluster, and why (docs/cluster.md "Real nodes"): no kube-proxy serves the
`kubernetes` Service's ClusterIP, so the operator reaches the API server at the fabric address through
`KUBERNETES_SERVICE_HOST`/`PORT` (operator.extraEnv); the nodes carry the taint lepton.ai/runtime=container,
so the release tolerates and selects it; nothing is pulled (image.pullPolicy Never).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .chart import CHART
from .cluster import Cluster
from .images import build_all, load_image
from .images.build import BuiltImage
from .realnode.plan import API_PORT, RUNTIME_LABEL, RUNTIME_TOLERATION, RUNTIME_VALUE

OPERATOR_IMAGE = "lepton-operator"
TRAINER_IMAGE = "lepton-trainer"


def load_images(
    cluster: Cluster, names: Sequence[str] = (OPERATOR_IMAGE, TRAINER_IMAGE), say: Callable[[str], None] = print
) -> dict[str, BuiltImage]:
    """Build (cached) and import the images into every real node; returns them by name."""
    if not cluster.real_node_names:
        raise RuntimeError("no real nodes: start the cluster with LEPTON_REAL_NODES=2 (the default)")
    built = {b.name: b for b in build_all(cluster.config.cache_dir, names=list(names))}
    for image in built.values():
        for node in cluster.real_node_names:
            t0 = time.monotonic()
            imported = load_image(image.archive, cluster.real.node(node).containerd_socket)
            took = time.monotonic() - t0
            say(f"{image.ref} {'imported into' if imported else 'already in'} {node} ({took:.0f} s)")
    return built


def release_values(watch: Sequence[str], host_path_prefixes: Sequence[str] = (), replicas: int = 1) -> dict[str, Any]:
    """Chart values of an in-cluster release on the real nodes (everything else is the chart's default)."""
    return {
        "image": {"repository": f"localhost/{OPERATOR_IMAGE}", "tag": "dev", "pullPolicy": "Never"},
        "replicas": replicas,
        "nodeSelector": {RUNTIME_LABEL: RUNTIME_VALUE},
        "tolerations": [RUNTIME_TOLERATION],
        "operator": {
            "serveImage": f"localhost/{TRAINER_IMAGE}:dev",
            "namespaces": list(watch),
            "allowedHostPathPrefixes": list(host_path_prefixes),
        },
    }


def install_operator(
    cluster: Cluster,
    release: str,
    namespace: str,
    values: dict[str, Any],
    *,
    install_crds: bool = False,
    timeout: float = 300.0,
    workdir: Path,
) -> dict[str, Any]:
    """`helm upgrade --install` the chart with `values` (plus the API server's fabric address) and wait for
    the Deployment; returns the release's status as helm reports it."""
    api = [
        {"name": "KUBERNETES_SERVICE_HOST", "value": cluster.real.services.ip},
        {"name": "KUBERNETES_SERVICE_PORT", "value": str(API_PORT)},
    ]
    operator = dict(values.get("operator") or {})
    operator["extraEnv"] = [*api, *(operator.get("extraEnv") or [])]
    full = {**values, "operator": operator, "crds": {"install": install_crds}}
    workdir.mkdir(parents=True, exist_ok=True)
    values_file = workdir / f"{release}-values.json"
    values_file.write_text(json.dumps(full, indent=2))
    cluster.helm(
        "upgrade", "--install", release, str(CHART), "-n", namespace, "--create-namespace",
        "-f", str(values_file), "--wait", "--timeout", f"{int(timeout)}s",
        timeout=timeout + 30,
    )  # fmt: skip
    status: dict[str, Any] = json.loads(cluster.helm("status", release, "-n", namespace, "-o", "json").stdout)
    return status
