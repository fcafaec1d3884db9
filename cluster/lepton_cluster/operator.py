"""The operator as a real process against the local control plane (tests, benchmarks, the demo)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .testing import http_ok, wait_for


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
        self.port = self.metrics_port = 0
        self.log_path = log_dir / f"operator-{os.getpid()}.log"  # one file per test session or benchmark

    def start(self, timeout: float = 30.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port, self.metrics_port = free_port(), free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "LEPTON_LIVENESS_PORT": str(self.port),
            "LEPTON_METRICS_PORT": str(self.metrics_port),
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
        return http_ok(f"http://127.0.0.1:{self.port}/healthz")

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

    def metrics(self) -> str:
        """The operator's /metrics page."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            text: str = resp.read().decode()
            return text
