"""`down`: stop the agent and remove everything it made (pods' processes, namespaces, bridge, Node)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time

from .agent import remove_empty_dirs
from .containers import Attempt
from .kubeapi import ApiError, KubeApi, load_kubeconfig
from .network import delete_bridge, delete_sandbox, list_netns
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


def down(s: AgentSettings) -> None:
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
