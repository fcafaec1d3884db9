"""Running the operator as a real process, and TrainingJob helpers, for e2e tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from lepton_cluster.cluster import Cluster
from lepton_cluster.testing import wait_for

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "lepton.ai", "v1alpha1", "trainingjobs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class OperatorProcess:
    """`python -m lepton_operator` against the test cluster, its log in run/, restartable."""

    def __init__(self, kubeconfig: Path, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.kubeconfig, self.log_dir, self.extra_env = kubeconfig, log_dir, env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = log_dir / "operator.log"

    def start(self, timeout: float = 30.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "LEPTON_LIVENESS_PORT": str(self.port),
            **self.extra_env,
        }
        with self.log_path.open("ab") as log:
            log.write(f"\n===== operator start {time.strftime('%H:%M:%S')} =====\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lepton_operator"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(self.healthy, timeout, interval=0.1, message=lambda: f"operator /healthz; log:\n{self.tail()}")

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"operator exited; log:\n{self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no cleanup, like a node crash or an OOM kill."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no operator log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# -- TrainingJob helpers ---------------------------------------------------------------------
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

    result: dict[str, Any] = wait_for(
        reached,
        timeout,
        interval=0.2,
        message=lambda: f"{name} phase {phase}; status {status(cluster, namespace, name)}",
    )
    return result
