"""Kubeflow training-operator v1 (built from its Go module by bench/build_training_operator.sh), PyTorchJob
controller only, no gang scheduling, as a process on the same cluster: the workload as PyTorchJobs
(Master 1 + Worker W-1, same image, GPUs and tolerations)."""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from .apiclient import Api
from .measure import Workload, run_workload, wait_until
from .profile import component_pids
from .setup import REPO, RUN, apply_yaml, drop_namespace, flow_schema, namespace

TO_NAMESPACE = "kubeflow"  # the training-operator's own namespace (its webhook cert Secret lives there)
TO_SA = "training-operator"
TO_FLOW = "bench-training-operator"
CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")  # fixed in training-operator's pkg/cert
GPU_TOLERATIONS = [
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "lepton.ai/spot", "operator": "Exists", "effect": "NoSchedule"},
]


def pytorchjob_manifests(n: int, workers: int, gpus: int) -> list[dict[str, Any]]:
    def replica(count: int) -> dict[str, Any]:
        resources = {"limits": {"nvidia.com/gpu": gpus}} if gpus else {}
        container = {"name": "pytorch", "image": "lepton/trainer:test", "resources": resources}
        return {
            "replicas": count,
            "restartPolicy": "OnFailure",
            "template": {"spec": {"containers": [container], "tolerations": GPU_TOLERATIONS}},
        }

    specs = {"Master": replica(1), **({"Worker": replica(workers - 1)} if workers > 1 else {})}
    return [
        {
            "apiVersion": "kubeflow.org/v1",
            "kind": "PyTorchJob",
            "metadata": {"name": f"pj-{i:05d}"},
            "spec": {"pytorchReplicaSpecs": specs},
        }
        for i in range(n)
    ]


def build() -> tuple[Path, Path]:
    """The binary (built and cached) and the module's directory in the Go module cache (its CRDs)."""
    out = subprocess.run(
        [str(REPO / "bench" / "build_training_operator.sh")], check=True, text=True, stdout=subprocess.PIPE
    ).stdout
    binary = Path(out.strip().splitlines()[-1])
    gomod = REPO / "bench" / "go" / "training-operator"
    listing = subprocess.run(
        ["go", "list", "-m", "-json", "github.com/kubeflow/training-operator"],
        cwd=gomod,
        check=True,
        text=True,
        stdout=subprocess.PIPE,
        env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"},
    ).stdout
    return binary, Path(json.loads(listing)["Dir"])


class TrainingOperatorProcess:
    def __init__(self, cluster: Any, binary: Path, kubeconfig: Path, watch_namespace: str, threads: int) -> None:
        from lepton_cluster.operator import free_port

        self.cluster, self.certs_mounted = cluster, False
        self.metrics, self.probe, self.webhook = free_port(), free_port(), free_port()
        self.argv = [
            str(binary),
            "--enable-scheme=pytorchjob",
            f"--namespace={watch_namespace}",
            f"--metrics-bind-address=127.0.0.1:{self.metrics}",
            f"--health-probe-bind-address=127.0.0.1:{self.probe}",
            f"--webhook-server-port={self.webhook}",
            f"--controller-threads={threads}",
            "--zap-log-level=info",
            "--zap-devel=false",
        ]
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "MY_POD_NAMESPACE": TO_NAMESPACE}
        self.log = RUN / f"training-operator-{os.getpid()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        RUN.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)

        from lepton_cluster.testing import http_ok

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"training-operator exited; see {self.log}")
            return http_ok(f"http://127.0.0.1:{self.probe}/readyz")

        if not wait_until(lambda: self._mount_certs() or ready(), timeout, "training-operator /readyz", 0.2):
            raise RuntimeError(f"training-operator not ready; see {self.log}")

    def _mount_certs(self) -> bool:
        """Do what the kubelet's Secret volume does in its Deployment: put the rotated certs in its cert dir."""
        if self.certs_mounted:
            return False
        got = self.cluster.kubectl(
            "get", "secret", "training-operator-webhook-cert", "-n", TO_NAMESPACE, "-o", "json", check=False
        )
        data = json.loads(got.stdout).get("data") or {} if got.returncode == 0 else {}
        if not {"tls.crt", "tls.key", "ca.crt"} <= data.keys():
            return False
        CERT_DIR.mkdir(parents=True, exist_ok=True)
        for key in ("tls.crt", "tls.key", "ca.crt"):
            path = CERT_DIR / key
            path.write_bytes(base64.b64decode(data[key]))
            path.chmod(0o600)
        self.certs_mounted = True
        return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def set_up(cluster: Any, moddir: Path) -> Path:
    """Its CRD (from the module cache), a ServiceAccount with cluster-admin, its webhook Secret; a kubeconfig."""
    from lepton_cluster.chart import ensure_namespace, service_account_token, write_kubeconfig

    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(moddir / "manifests" / "base" / "crds" / "kubeflow.org_pytorchjobs.yaml"),
    )
    wait_until(
        lambda: cluster.kubectl("get", "pytorchjobs", "-A", check=False).returncode == 0, 60, "PyTorchJobs to be served"
    )
    ensure_namespace(cluster, TO_NAMESPACE)
    apply_yaml(
        cluster,
        [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": TO_SA, "namespace": TO_NAMESPACE}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "bench-training-operator"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": TO_SA, "namespace": TO_NAMESPACE}],
            },
            # The cert rotator fills this Secret and the (empty) webhook configuration; no webhook is registered.
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "training-operator-webhook-cert", "namespace": TO_NAMESPACE},
            },
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "validator.training-operator.kubeflow.org"},
            },
            flow_schema(TO_FLOW, TO_NAMESPACE, TO_SA),
        ],
    )
    token = service_account_token(cluster, TO_SA, TO_NAMESPACE)
    return write_kubeconfig(cluster, token, RUN / f"training-operator-{os.getpid()}.kubeconfig", "training-operator")


def run(cluster: Any, api: Api, args: argparse.Namespace, binary: Path, moddir: Path) -> dict[str, Any]:
    kubeconfig = set_up(cluster, moddir)
    ns = namespace(cluster, "bench-pytorchjob")
    to = TrainingOperatorProcess(cluster, binary, kubeconfig, ns, args.to_threads)
    try:
        to.start()
        assert to.proc is not None
        w = Workload(
            "training-operator",
            ns,
            f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs",
            pytorchjob_manifests(args.jobs, args.workers, args.gpus_per_worker),
            pid=to.proc.pid,
            flow=TO_FLOW,
            components=component_pids(cluster),
        )
        print(f"-- training-operator: {args.jobs} PyTorchJobs x {args.workers} pods in {ns}", flush=True)
        return run_workload(api, w, args)
    finally:
        to.stop()
        drop_namespace(cluster, ns, wait=True)
        kubeconfig.unlink(missing_ok=True)
