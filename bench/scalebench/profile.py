"""Where a burst's CPU goes: CPU seconds of every control-plane process (and the controller) over the burst, and
with `--profile DIR` a py-spy profile of the controller (collapsed stacks) and a pprof CPU profile of the API
server (the cluster started with LEPTON_PROFILING=1) over the same window."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .apiclient import Api


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def component_pids(cluster: Any) -> dict[str, int]:
    """The control plane's processes (apiserver, etcd, scheduler, controller-manager, kwok, ...) by name."""
    return {name: s.pid for name, s in cluster.status().items() if s.running and s.pid}


class BurstCpu:
    """CPU seconds each process used between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        out = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                out[name] = cpu_seconds(pid)
        return out

    def start(self) -> None:
        self.before = self._read()

    def stop(self) -> dict[str, float]:
        after = self._read()
        return {n: round(after[n] - self.before[n], 2) for n in sorted(after) if n in self.before}


def settle(pids: dict[str, int], cores: float = 0.5, window: float = 2.0, timeout: float = 120.0) -> float:
    """Wait until these processes together use less than `cores` over `window` seconds (the previous workload's
    clean-up, a fresh cluster's start, finished): a round starts on a quiet machine. Returns the last level."""
    deadline, level = time.monotonic() + timeout, float("inf")
    while time.monotonic() < deadline:
        cpu = BurstCpu(pids)
        cpu.start()
        time.sleep(window)
        level = sum(cpu.stop().values()) / window
        if level < cores:
            break
    return round(level, 2)


@contextlib.contextmanager
def profiled(api: Api, out: Path | None, label: str, pid: int | None, seconds: float) -> Iterator[None]:
    """py-spy on `pid` and the API server's /debug/pprof/profile for `seconds`, while the block runs."""
    if out is None:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    spy = None
    if pid is not None:
        py_spy = Path(sys.executable).with_name("py-spy")
        argv = [str(py_spy), "record", "-p", str(pid), "-f", "raw", "-r", "100", "--nonblocking"]
        spy = subprocess.Popen([*argv, "-o", str(out / f"{label}-operator.folded")], stdout=subprocess.DEVNULL)

    def pprof() -> None:
        url = f"{api.url}/debug/pprof/profile?seconds={int(seconds)}"
        try:
            with urllib.request.urlopen(url, context=api.ssl(), timeout=seconds + 30) as resp:
                (out / f"{label}-apiserver.pprof").write_bytes(resp.read())
        except OSError as exc:
            print(f"   apiserver profile not taken ({exc}): start the cluster with LEPTON_PROFILING=1", flush=True)

    thread = threading.Thread(target=pprof, daemon=True)
    thread.start()
    try:
        yield
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(30)
        thread.join(seconds + 30)
