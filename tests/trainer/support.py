"""Helpers for trainer tests and benchmarks: torchrun agents as real processes, polling waits."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    check: Callable[[], T | None], timeout: float, interval: float = 0.05, message: str | Callable[[], str] = ""
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise TimeoutError(f"timed out after {timeout} s waiting for {text}")
        time.sleep(interval)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        return doc
    except (OSError, ValueError):
        return None


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
    return out


def process_env(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


class Agent:
    """One torchrun agent (what a pod runs), started through ``python -m lepton_trainer.launch``."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        *,
        endpoint: str,
        run_id: str,
        nnodes: str,
        train_args: Sequence[str],
        nproc: int = 1,
        max_restarts: int = 3,
        rdzv_conf: str = "",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.progress_file = workdir / f"progress-{name}.json"
        self.termination_log = workdir / f"termination-{name}.json"
        env = dict(os.environ)
        for key in list(env):
            if key.startswith(("PET_", "LEPTON_", "TORCHELASTIC_")) or key in ("RANK", "WORLD_SIZE"):
                del env[key]
        env.update(
            OMP_NUM_THREADS="1",
            LEPTON_PROGRESS_FILE=str(self.progress_file),
            LEPTON_PROGRESS_LISTEN="127.0.0.1:0",
            LEPTON_TERMINATION_LOG=str(self.termination_log),
            LEPTON_DATA_CACHE=str(workdir / "data-cache"),
            PET_NNODES=nnodes,
            PET_NPROC_PER_NODE=str(nproc),
            PET_RDZV_BACKEND="c10d",
            PET_RDZV_ENDPOINT=endpoint,
            PET_RDZV_ID=run_id,
            PET_MAX_RESTARTS=str(max_restarts),
            **({"PET_RDZV_CONF": rdzv_conf} if rdzv_conf else {}),
            **(extra_env or {}),
        )
        cmd = [PYTHON, "-m", "lepton_trainer.launch", "--local-addr", "127.0.0.1", "-m", "lepton_trainer.train"]
        self.proc = subprocess.Popen(
            [*cmd, *train_args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append((time.time(), line.rstrip("\n")))

    def log(self) -> str:
        with self._lock:
            return "\n".join(line for _, line in self.lines)

    def tail(self, n: int = 40) -> str:
        with self._lock:
            return "\n".join(line for _, line in self.lines[-n:])

    def matches(self, pattern: str) -> list[tuple[float, re.Match[str]]]:
        rx = re.compile(pattern)
        with self._lock:
            found = [(t, rx.search(line)) for t, line in self.lines]
        return [(t, m) for t, m in found if m]

    def progress(self) -> dict[str, Any] | None:
        return read_json(self.progress_file)

    def result(self) -> dict[str, Any] | None:
        return read_json(self.termination_log)

    def workers(self) -> dict[int, int]:
        """Global rank -> pid of this agent's live workers."""
        ranks = {}
        for pid in children(self.proc.pid):
            rank = process_env(pid).get("RANK")
            if rank is not None:
                ranks[int(rank)] = pid
        return ranks

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"agent {self.name} still running after {timeout} s; log:\n{self.tail()}") from None

    def kill(self) -> None:
        """SIGKILL the agent and its workers (a lost node; torchrun puts workers in own sessions)."""
        for pid in [*children(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self.proc.wait(10)
        self._reader.join(5)
