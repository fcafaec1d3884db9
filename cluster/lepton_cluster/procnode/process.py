"""The node agent as a child process (e2e tests and the demo): start, wait until Ready, stop, kill, down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..config import ClusterConfig
from ..testing import wait_for
from .procfs import alive
from .settings import default_state_dir


class NodeAgentProcess:
    def __init__(self, cluster: ClusterConfig, name: str = "local-0", log_path: Path | None = None) -> None:
        self.cluster, self.name = cluster, name
        self.state_dir = default_state_dir(cluster.run_dir, name)
        self.log_path = log_path or self.state_dir.parent / f"{self.state_dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _argv(self, command: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "lepton_cluster.procnode",
            command,
            "--name",
            self.name,
            "--kubeconfig",
            str(self.cluster.admin_kubeconfig),
        ]

    def running_pid(self) -> int | None:
        """The pid of an agent already running with this state folder (ours or someone else's)."""
        try:
            pid = int((self.state_dir / "agent.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if alive(pid, None) and "lepton_cluster.procnode" in _cmdline(pid) else None

    def start(self, timeout: float = 30.0, *, detach: bool = False) -> None:
        """Start and wait for "agent ready". `detach`: its own session, so it outlives a Ctrl-C of the caller."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {**os.environ, "LEPTON_RUN_DIR": str(self.cluster.run_dir)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self._argv("run"), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=detach
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"node agent exited {self.proc.returncode}:\n{self.tail()}")
            return b"agent ready" in self.log_path.read_bytes()[offset:]

        wait_for(ready, timeout, message=lambda: f"node agent {self.name} ready; log:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM: the agent leaves, its pods keep running (a kubelet restart)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: an agent crash."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        pid = self.proc.pid if self.proc is not None and self.proc.poll() is None else self.running_pid()
        if pid is None:
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + 15
        while alive(pid, None) and time.monotonic() < deadline:
            if self.proc is not None:
                self.proc.poll()
            time.sleep(0.05)

    def down(self) -> None:
        """Stop the agent and remove its pods' processes, namespaces, bridge and Node; raises
        `AssertionError` naming whatever is left behind."""
        env = {**os.environ, "LEPTON_RUN_DIR": str(self.cluster.run_dir)}
        res = subprocess.run(self._argv("down"), env=env, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise AssertionError(f"node agent {self.name} down failed ({res.returncode}):\n{res.stderr.strip()}")
        if self.proc is not None:
            self.proc.wait(10)

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no agent log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
