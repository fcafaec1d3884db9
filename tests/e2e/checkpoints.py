"""Checkpoint folders of the jobs the real-node e2e tests run (host folders both real nodes see)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import REPO, create_job


def checkpoint_dir(ns: str) -> Path:
    """A fresh hostPath root under run/ (the operator allows it) that the workers' user may write, as a shared
    checkpoint volume's root must be (docs/deploy.md): mode 1777, owned by root."""
    path = REPO / "run" / "e2e-real" / ns / "checkpoints"
    path.mkdir(parents=True)
    path.chmod(0o1777)
    return path


def start_job(cluster: Cluster, ns: str, manifest: dict[str, Any]) -> Path:
    """Create the job; returns its checkpoint folder `<hostPath>/<ns>/<name>-<uid>`, which nobody makes ahead:
    the kubelet creates it (the subPath) with the root's mode, and the non-root workers write in it."""
    job = create_job(cluster, ns, manifest)
    return job_checkpoints(manifest, ns, job)


def job_checkpoints(manifest: dict[str, Any], ns: str, job: dict[str, Any]) -> Path:
    """`<hostPath>/<ns>/<name>-<uid>`: the job's own folder under its checkpoint volume's root."""
    root = Path(manifest["spec"]["checkpoint"]["volume"]["hostPath"])
    return root / ns / f"{job['metadata']['name']}-{job['metadata']['uid']}"
