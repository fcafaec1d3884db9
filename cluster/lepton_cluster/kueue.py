"""Kueue (sigs.k8s.io/kueue, cmd/kueue) as a host process of the local control plane (docs/kueue.md).

cluster/build.sh builds the pinned release and copies its CRDs and webhook manifests next to the binary
(`<bin>/kueue-config/`). Here: Kueue's Configuration, its webhooks served on 127.0.0.1 with a certificate
of the cluster CA (the webhook configurations call `https://127.0.0.1:<port>/<path>` instead of a Service),
and the start/stop of the process. Kueue binds nothing but loopback and runs as a system:masters client.

Two things the upstream Deployment gets from its pod that a host process must supply:
- the metrics server reads its certificate from the fixed path /etc/kueue/metrics/certs (when Kueue's own
  cert management is off, cmd/kueue/main.go): the process runs in a private mount namespace where that
  path is a bind mount of this cluster's copy, so clusters side by side never share a file (the empty mount
  point is made on the host once);
- the namespace `kueue-system` (Configuration.namespace) exists.
"""

from __future__ import annotations

import copy
import os
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .pki import Pki

if TYPE_CHECKING:
    from .cluster import Cluster

NAME = "kueue"
NAMESPACE = "kueue-system"
GROUP = "kueue.x-k8s.io"
#: Base ports (plus the cluster's port offset), beside the other components' 102xx ports.
WEBHOOK_PORT = 10270
HEALTH_PORT = 10271
METRICS_PORT = 10272
METRICS_CERT_DIR = "/etc/kueue/metrics/certs"
#: CRDs that upstream patches with a conversion webhook (config/components/crd/kustomization.yaml).
CONVERTED = ("localqueues", "clusterqueues", "cohorts", "workloads", "multikueueclusters")
#: Off: the visibility API (an aggregated API server on all interfaces, needing an APIService + Service).
#: On: Workload slices (alpha), how an admitted elastic TrainingJob grows (docs/kueue.md).
FEATURE_GATES = {"VisibilityOnDemand": False, "ElasticJobsViaWorkloadSlices": True}


@dataclass(frozen=True)
class KueuePorts:
    webhook: int
    health: int
    metrics: int

    @classmethod
    def for_offset(cls, offset: int) -> KueuePorts:
        return cls(WEBHOOK_PORT + offset, HEALTH_PORT + offset, METRICS_PORT + offset)


def configuration(ports: KueuePorts, cert_dir: Path) -> dict[str, Any]:
    """Kueue's Configuration (apis/config/v1beta2). Integrations: `batch/job` only because an empty list is
    defaulted to it (apis/config/v1beta2/defaults.go); TrainingJob is an external framework: our operator
    is its job reconciler (docs/kueue.md)."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ports.health}"},
        "metrics": {"bindAddress": f"127.0.0.1:{ports.metrics}"},
        "webhook": {"host": "127.0.0.1", "port": ports.webhook, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "featureGates": FEATURE_GATES,
        "integrations": {
            "frameworks": ["batch/job"],
            "externalFrameworks": ["TrainingJob.v1alpha1.lepton.ai"],
        },
    }


def _url(port: int, path: str) -> str:
    return f"https://127.0.0.1:{port}{path}"


def webhook_configurations(docs: Iterable[dict[str, Any]], port: int, ca_b64: str) -> list[dict[str, Any]]:
    """Upstream's webhook configurations with only the webhooks of Kueue's own API (the job integrations'
    webhooks, on pods, Deployments and other frameworks' jobs, would fail closed for paths nobody serves),
    each calling 127.0.0.1 with our CA, and names prefixed `kueue-` as the release manifests do."""
    out = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        hooks = []
        for hook in doc.get("webhooks") or []:
            if not all(GROUP in rule.get("apiGroups", []) for rule in hook.get("rules", [])):
                continue
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": _url(port, path), "caBundle": ca_b64}
            hooks.append(hook)
        doc["webhooks"] = hooks
        doc["metadata"] = {"name": f"kueue-{doc['metadata']['name']}"}
        out.append(doc)
    return out


def crds(docs: Iterable[dict[str, Any]], port: int, ca_b64: str) -> list[dict[str, Any]]:
    """Upstream's CRDs; those it converts between v1beta1 and v1beta2 call Kueue's /convert on 127.0.0.1."""
    out = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        if doc["spec"]["names"]["plural"] in CONVERTED:
            doc["spec"]["conversion"] = {
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {"url": _url(port, "/convert"), "caBundle": ca_b64},
                    "conversionReviewVersions": ["v1"],
                },
            }
        out.append(doc)
    return out


def argv(bin_dir: Path, run_dir: Path) -> list[str]:
    """Kueue in a private mount namespace where /etc/kueue/metrics/certs is this cluster's copy."""
    home = run_dir / NAME
    mount = f'mkdir -p {METRICS_CERT_DIR} && mount --bind "$0" {METRICS_CERT_DIR} && exec "$@"'
    return [
        "unshare",
        "--mount",
        "--propagation=private",
        "sh",
        "-ec",
        mount,
        str(home / "metrics-certs"),
        str(bin_dir / NAME),
        f"--config={home / 'config.yaml'}",
        f"--kubeconfig={run_dir / 'kueue.kubeconfig'}",
        "--zap-log-level=info",
    ]


def _load_yaml_dir(folder: Path) -> list[dict[str, Any]]:
    return [d for f in sorted(folder.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def install(cluster: Cluster) -> None:
    """Certificates, kubeconfig, configuration, namespace, CRDs and webhook configurations (idempotent)."""
    from . import config as cfg

    c = cluster.config
    ports = KueuePorts.for_offset(c.port_offset)
    home = c.run_dir / NAME
    upstream = cluster.bin_dir / "kueue-config"
    if not (cluster.bin_dir / NAME).exists() or not upstream.is_dir():
        raise FileNotFoundError(f"{cluster.bin_dir / NAME} or {upstream} missing: run cluster/build.sh")
    pki = Pki(home / "pki")
    pki.load_ca(c.pki_dir)
    for name in ("webhook-certs", "metrics-certs"):
        pair = pki.issue(name, "kueue", ip_addresses=("127.0.0.1",), server=True, client=False)
        (home / name).mkdir(parents=True, exist_ok=True)
        os.replace(pair.cert, home / name / "tls.crt")
        os.replace(pair.key, home / name / "tls.key")
    client = pki.issue("client", "kueue", organizations=("system:masters",))
    kc = cfg.kubeconfig(c.apiserver_url, pki.ca_b64(), client.cert_b64(), client.key_b64(), NAME)
    path = c.kubeconfig_for(NAME)
    path.write_text(yaml.safe_dump(kc, sort_keys=False))
    path.chmod(0o600)
    (home / "config.yaml").write_text(yaml.safe_dump(configuration(ports, home / "webhook-certs"), sort_keys=False))
    ca = pki.ca_b64()
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        *crds(_load_yaml_dir(upstream / "crd"), ports.webhook, ca),
        *webhook_configurations(_load_yaml_dir(upstream / "webhook"), ports.webhook, ca),
    ]
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=cfg.render_yaml_documents(docs), timeout=120
    )
    names = [f"crd/{d['metadata']['name']}" for d in docs if d["kind"] == "CustomResourceDefinition"]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names, timeout=90)


def ready(port: int) -> bool:
    """Kueue's /readyz: its webhook server listens (cmd/kueue/main.go, setupProbeEndpoints)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException, ssl.SSLError):
        return False
    finally:
        conn.close()


def wait_ready(cluster: Cluster, pid_alive: Any, timeout: float) -> float:
    """Seconds until /readyz answers; raises RuntimeError when the process exits or time runs out."""
    port = KueuePorts.for_offset(cluster.config.port_offset).health
    t0 = time.monotonic()
    while not ready(port):
        if not pid_alive():
            raise RuntimeError(f"kueue exited during start-up; see {cluster.config.log_dir / 'kueue.log'}")
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"kueue not ready after {timeout:.0f} s; see {cluster.config.log_dir / 'kueue.log'}")
        time.sleep(0.1)
    return time.monotonic() - t0


def running_pid(cluster: Cluster) -> int | None:
    """Kueue's pid when its process of this cluster runs."""
    from .cluster import _proc_alive, _proc_cmdline

    try:
        pid = int((cluster.config.pid_dir / f"{NAME}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    cmd = _proc_cmdline(pid)
    return pid if _proc_alive(pid) and f"{cluster.config.run_dir}/" in " ".join(cmd) else None


def start(cluster: Cluster, timeout: float = 120.0) -> float:
    """Install and start Kueue on a running cluster (nothing when it already runs and answers); returns
    the seconds from install to /readyz."""
    from .spawn import spawn_logged

    c = cluster.config
    if running_pid(cluster) is not None and ready(KueuePorts.for_offset(c.port_offset).health):
        return 0.0
    t0 = time.monotonic()
    install(cluster)
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    proc = spawn_logged(
        argv(cluster.bin_dir, c.run_dir),
        log_path=c.log_dir / f"{NAME}.log",
        pid_file=c.pid_dir / f"{NAME}.pid",
        cwd=c.run_dir,
        env=env,
    )
    wait_ready(cluster, lambda: proc.poll() is None, timeout)
    return time.monotonic() - t0
