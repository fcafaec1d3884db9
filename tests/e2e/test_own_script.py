"""Bring your own training script, on the real nodes: examples/own-script/trainingjob.yaml and its ConfigMap of
train.py (`kubectl kustomize examples/own-script`, applied as is but for the checkpoint folder), a plain torchrun
DDP script that imports nothing of lepton_trainer: it trains on 2 workers (one per real node) with DataLoader
worker processes, its progress file shows in status.progress and its termination message gives the result;
SIGTERM (a suspend) makes it save and exit, and the resumed job starts from that checkpoint.
(A template setting an owned field is refused naming it: tests/e2e/test_pod_template.py.)"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import REPO, get_job, patch_job, status, wait_phase
from lepton_cluster.realnode.drills import epoch_pods
from lepton_cluster.testing import wait_for

from .checkpoints import checkpoint_dir, job_checkpoints

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator", "trainer_image")]
EXAMPLE = REPO / "examples" / "own-script"  # kustomization.yaml: own-script/trainingjob.yaml + train.py
TRAINER_UID = 1000
SIGTERM_SAVED = re.compile(r"rank \d: SIGTERM at step \d+: saved epoch (\d+), exiting")


def apply_example(cluster: Cluster, ns: str, args: list[str] | None = None) -> tuple[dict[str, Any], Path]:
    """The example as kustomize renders it, its checkpoint root a fresh folder under run/; returns the job and
    its own checkpoint folder."""
    docs = list(yaml.safe_load_all(cluster.kubectl("kustomize", str(EXAMPLE)).stdout))
    job = next(d for d in docs if d["kind"] == "TrainingJob")
    job["spec"]["checkpoint"]["volume"]["hostPath"] = str(checkpoint_dir(ns))
    if args:
        job["spec"]["args"] = args
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump_all(docs))
    created = get_job(cluster, ns, "own-script")
    return created, job_checkpoints(job, ns, created)


def logs(cluster: Cluster, ns: str, pod: dict[str, Any]) -> str:
    return cluster.kubectl("-n", ns, "logs", pod["metadata"]["name"]).stdout


@pytest.mark.timeout(900)
def test_a_plain_torchrun_script_from_a_configmap_trains_on_both_real_nodes(cluster: Cluster, namespace: str) -> None:
    ns = namespace
    t0 = time.monotonic()
    _, ckpt = apply_example(cluster, ns)
    wait_phase(cluster, ns, "own-script", "Running", timeout=180)

    def live() -> dict[str, Any] | None:  # rank 0's progress file, served by the launcher, polled by the operator
        p = status(cluster, ns, "own-script").get("progress") or {}
        return p if p.get("source") == "endpoint" and p.get("step") else None

    seen = wait_for(live, 120, interval=1, message="status.progress from the script's progress file")
    assert seen is not None and seen["totalSteps"] == 15 * 23 and "% step " in seen["summary"], seen
    st = wait_phase(cluster, ns, "own-script", "Succeeded", timeout=600)
    took = time.monotonic() - t0
    assert st["restarts"] == 0, st
    progress = st["progress"]
    assert progress["source"] == "termination-message" and progress["step"] == progress["totalSteps"], progress
    assert progress["testAccuracy"] >= 0.9 and progress["summary"].startswith("done acc="), progress

    pods = epoch_pods(cluster, ns, "own-script", 0)
    assert {p["spec"]["nodeName"] for p in pods} == set(cluster.real_node_names), [p["spec"]["nodeName"] for p in pods]
    for pod in pods:
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["script"]["configMap"]["name"] == "own-script", volumes
        assert volumes["dshm"]["emptyDir"]["medium"] == "Memory", volumes  # the DataLoader workers' shared memory
    out = "\n".join(logs(cluster, ns, pod) for pod in pods)
    for rank in (0, 1):
        assert f"rank {rank}/2: 1437 samples, 2 DataLoader workers, epochs 0.." in out, out[-3000:]
    assert out.count("test accuracy") == 2, out[-3000:]
    saved = ckpt / "model.pt"
    assert saved.exists() and saved.stat().st_uid == TRAINER_UID, list(ckpt.parent.rglob("*"))
    print(json.dumps({"apply -> Succeeded s": round(took, 1), "progress": progress}))


@pytest.mark.timeout(900)
def test_sigterm_saves_and_the_resumed_job_starts_from_that_checkpoint(cluster: Cluster, namespace: str) -> None:
    ns = namespace
    args = ["/scripts/train.py", "--epochs", "15", "--step-sleep", "0.2"]
    _, ckpt = apply_example(cluster, ns, args)
    wait_phase(cluster, ns, "own-script", "Running", timeout=180)
    wait_for(lambda: (ckpt / "model.pt").exists(), 300, interval=0.5, message="a first checkpoint")
    rank0 = epoch_pods(cluster, ns, "own-script", 0)[0]
    followed: list[str] = []  # the pod is gone once its container ends: follow its log until then
    follow = threading.Thread(
        target=lambda: followed.append(
            cluster.kubectl("-n", ns, "logs", "-f", rank0["metadata"]["name"], check=False, timeout=120).stdout
        )
    )
    follow.start()
    patch_job(cluster, ns, "own-script", {"spec": {"suspend": True}})  # the operator deletes the pods: SIGTERM
    wait_phase(cluster, ns, "own-script", "Suspended", timeout=120)
    follow.join(150)
    found = SIGTERM_SAVED.search(followed[0]) if followed else None
    assert found is not None, followed[0][-3000:] if followed else "no log"
    stopped = int(found.group(1))

    patch_job(cluster, ns, "own-script", {"spec": {"suspend": False}})
    st = wait_phase(cluster, ns, "own-script", "Succeeded", timeout=600)
    assert st["progress"]["testAccuracy"] >= 0.9, st["progress"]
    pods = epoch_pods(cluster, ns, "own-script", st["restartEpoch"])
    out = "\n".join(logs(cluster, ns, pod) for pod in pods)
    for rank in (0, 1):
        assert f"rank {rank}: resumed from /checkpoints/model.pt at epoch {stopped}" in out, out[-3000:]
    print(json.dumps({"suspended at epoch": stopped, "restartEpoch": st["restartEpoch"]}))
