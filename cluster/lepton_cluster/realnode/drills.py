"""Faults and observations on the workers of a TrainingJob running on real nodes (tests and bench/)."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from ..cluster import Cluster
from ..jobs import job_pods
from .render import NO_REGISTRY_PROXY

#: the trainer's log line at its first optimizer step of an attempt, with the wall clock (trainer.py)
FIRST_STEP = re.compile(r"first step after start: step=(\d+) wall=([\d.]+)")


def epoch_pods(cluster: Cluster, ns: str, job: str, epoch: int) -> list[dict[str, Any]]:
    """The job's pods of `epoch`, by rank."""
    pods = [p for p in job_pods(cluster, ns, job) if p["metadata"]["labels"]["lepton.ai/restart-epoch"] == f"{epoch}"]
    return sorted(pods, key=lambda p: int(p["metadata"]["labels"]["lepton.ai/replica-index"]))


def first_step_wall(cluster: Cluster, ns: str, pod: str) -> float | None:
    """The wall-clock time of the pod's first training step (None before it, or without logs)."""
    found = FIRST_STEP.search(cluster.kubectl("-n", ns, "logs", pod, check=False).stdout)
    return float(found.group(2)) if found else None


def stepping_walls(cluster: Cluster, ns: str, job: str, epoch: int, world: int) -> list[float] | None:
    """The first-step wall times of all `world` ranks of `epoch`, once every one of them has stepped."""
    pods = epoch_pods(cluster, ns, job, epoch)
    walls = [first_step_wall(cluster, ns, p["metadata"]["name"]) for p in pods if p["status"].get("phase")]
    found = [w for w in walls if w is not None]
    return found if len(found) == world else None


def kill_container(cluster: Cluster, pod: dict[str, Any]) -> None:
    """SIGKILL the worker's container through its node's containerd (exit 137, as an OOM kill)."""
    node = cluster.real.node(pod["spec"]["nodeName"])
    cid = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    argv = ["ctr", "--address", str(node.containerd_socket), "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", cid]
    env = {"PATH": "/usr/bin:/bin", "HTTP_PROXY": NO_REGISTRY_PROXY}
    subprocess.run(argv, check=True, capture_output=True, timeout=30, env=env)
