"""`down`: stop the agent and remove everything it made (pods' processes, namespaces, bridge, Node)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

from .agent import remove_empty_dirs
from .containers import Attempt
from .kubeapi import ApiError, KubeApi, load_kubeconfig
from .network import delete_bridge, delete_sandbox, link_exists, list_netns, netns_pids
from .nodeobject import LEASE_NAMESPACE
from .procfs import alive, read_json
from .settings import AgentSettings


def stop_agent(s: AgentSettings, timeout: float = 10.0) -> None:
    pid_file = s.state_dir / "agent.pid"
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return
    if not alive(pid, None):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid, None) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid, None):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _processes_naming(path: Path) -> list[str]:
    """Processes whose command line names `path` (the agent, shims: their argv holds the attempt folder)."""
    found, needle = [], str(path).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            argv = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
            found.append(f"process {entry.name}: {argv}")
    return found


def _mounts_under(path: Path) -> list[str]:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    prefix = str(path).rstrip("/") + "/"
    return [f"mount {m}" for line in lines if (m := line.split()[4]).startswith(prefix) or m == str(path)]


def leftovers(s: AgentSettings) -> list[str]:
    """What of this agent is still on the machine: processes, namespaces (and what runs in them), its
    bridge, mounts under its state folder, pod folders. Empty after a clean `down`."""
    found = _processes_naming(s.state_dir)
    with contextlib.suppress(OSError, ValueError):
        pid = int((s.state_dir / "agent.pid").read_text())
        if alive(pid, None) and "lepton_cluster.procnode" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
            found.append(f"node agent, pid {pid}")
    for netns in list_netns(s.netns_prefix):
        found.append(f"network namespace {netns} (pids {netns_pids(netns)})")
    if link_exists(s.bridge):
        found.append(f"link {s.bridge}")
    found += _mounts_under(s.state_dir)
    if s.pods_dir.exists() and any(s.pods_dir.iterdir()):
        found.append(f"pod folders in {s.pods_dir}")
    return found


def down(s: AgentSettings) -> list[str]:
    """Remove everything; returns what could not be removed (see `leftovers`)."""
    stop_agent(s)
    created: set[str] = set()
    if s.pods_dir.exists():
        for pod_dir in s.pods_dir.iterdir():
            for attempt_dir in pod_dir.glob("containers/*/*"):
                Attempt(attempt_dir).stop(grace=5.0)
                created.update(Attempt(attempt_dir).mountpoints())
            record = read_json(pod_dir / "pod.json") or {}
            if record.get("netns"):
                delete_sandbox(record["netns"], record.get("veth"))
    for netns in list_netns(s.netns_prefix):
        delete_sandbox(netns, None)
    delete_bridge(s)
    try:
        api = KubeApi(load_kubeconfig(s.kubeconfig, s.state_dir / ".secrets"), timeout=5)
        api.delete(f"/api/v1/nodes/{s.name}")
        api.delete(f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{s.name}")
    except (ApiError, OSError):
        pass  # the cluster may be gone already
    shutil.rmtree(s.pods_dir, ignore_errors=True)
    remove_empty_dirs(created, set())
    return leftovers(s)
