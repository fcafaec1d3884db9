"""`make demo`: train a real model through the whole path on this machine (docs/demo.md).

control plane up (reused when running) -> CRDs -> the operator (with the Helm chart's identity) -> the
process node agent -> the 2-worker digits TrainingJob of examples/trainingjob-digits-process.yaml on it,
with checkpoints in a fresh folder under run/demo/ -> `kubectl get tj` as it trains -> the result.
The cluster, the node agent and the finished job stay up for a look around; `make demo-down` removes them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from lepton_operator.builders.trainingjob import checkpoint_folder

from .chart import operator_kubeconfig
from .cluster import Cluster, KubectlError
from .jobs import REPO, install_crds
from .operator import OperatorProcess
from .procnode.process import NodeAgentProcess
from .procnode.settings import RUNTIME_TOLERATION
from .testing import create_namespace, delete_namespace, wait_for

NAMESPACE = "demo"
JOB = "digits"
RUN = REPO / "run" / "demo"
MIN_ACCURACY = 0.95


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def job_manifest(checkpoints: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((REPO / "examples" / "trainingjob-digits-process.yaml").read_text())
    manifest["spec"]["checkpoint"]["volume"]["hostPath"] = str(checkpoints)
    return manifest


def watch_job(cluster: Cluster, timeout: float) -> dict[str, Any]:
    """Print `kubectl get tj` whenever it changes, until the job finishes; return its status."""
    deadline, last = time.monotonic() + timeout, ""
    header_shown = False
    while time.monotonic() < deadline:
        out = cluster.kubectl("get", "tj", JOB, "-n", NAMESPACE, check=False).stdout.strip().splitlines()
        if len(out) == 2:
            if not header_shown:
                print(out[0], flush=True)
                header_shown = True
            row = " ".join(out[1].split()[:-1])  # without AGE: print only real changes
            if row != last:
                print(out[1], flush=True)
                last = row
        status: dict[str, Any] = cluster.kubectl_json("get", "tj", JOB, "-n", NAMESPACE).get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            return status
        time.sleep(1.0)
    raise TimeoutError(f"{JOB} did not finish within {timeout:.0f} s")


def get_pod(cluster: Cluster, name: str) -> dict[str, Any]:
    """The pod, or {} when it does not exist (a failed epoch's pods may be gone)."""
    out = cluster.kubectl("get", "pod", name, "-n", NAMESPACE, "--ignore-not-found", "-o", "json").stdout
    pod: dict[str, Any] = json.loads(out) if out.strip() else {}
    return pod


def terminated_state(pod: dict[str, Any]) -> dict[str, Any]:
    """The trainer container's terminated state (empty while it runs or when the pod never started)."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    term: dict[str, Any] = ((statuses[0].get("state") or {}).get("terminated") or {}) if statuses else {}
    return term


def rank0_result(cluster: Cluster, epoch: int) -> dict[str, Any]:
    """Rank 0's termination message of the last epoch (its final result), or {} when there is none."""
    try:
        doc = json.loads(terminated_state(get_pod(cluster, f"{JOB}-{epoch}-0")).get("message") or "{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def explain_failed_job(cluster: Cluster, status: dict[str, Any]) -> None:
    """What a person needs when the job did not succeed: its message, last failure and that pod's end."""
    say(f"job {JOB} ended {status.get('phase')}: {status.get('message') or '(no message)'}")
    failure = status.get("lastFailure") or {}
    if failure:
        say(
            f"last failure: pod {failure.get('pod')} on {failure.get('node')}, reason {failure.get('reason')}, "
            f"exit code {failure.get('exitCode')}, action {failure.get('action')}"
        )
        message = terminated_state(get_pod(cluster, str(failure.get("pod")))).get("message") or failure.get("message")
        say(f"its termination message: {message or '(none)'}")
    say(f"events: kubectl get events -n {NAMESPACE} --field-selector involvedObject.name={JOB}")


def isvc_manifest() -> dict[str, Any]:
    """One CPU replica of the trained model on the process node (tolerates its taint; the kwok nodes all
    carry the GPU taint, so a `gpus: 0` server lands on local-0)."""
    return {
        "apiVersion": "lepton.ai/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": JOB},
        "spec": {
            "model": {"fromTrainingJob": JOB},
            "gpus": 0,
            "resources": {"cpu": "1", "memory": "2Gi"},
            "tolerations": [RUNTIME_TOLERATION],
            "minReplicas": 1,
            "maxReplicas": 1,
        },
    }


def serve(cluster: Cluster, timeout: float = 180.0) -> None:
    """Serve the export with an InferenceService and print a prediction for a held-out digit."""
    from sklearn.datasets import load_digits

    say(f"InferenceService {JOB}: the trained model, served on local-0")
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(isvc_manifest()))

    def ready_ip() -> str | None:
        st = cluster.kubectl_json("get", "lisvc", JOB, "-n", NAMESPACE).get("status") or {}
        if st.get("ready") != "True":
            return None
        pods = cluster.kubectl_json("get", "pods", "-n", NAMESPACE, "-l", f"lepton.ai/inferenceservice={JOB}")
        ips = [p["status"].get("podIP") for p in pods["items"] if p["status"].get("phase") == "Running"]
        return next((ip for ip in ips if ip), None)

    def server_state() -> str:
        st = cluster.kubectl_json("get", "lisvc", JOB, "-n", NAMESPACE).get("status") or {}
        conditions = "; ".join(
            f"{c.get('type')}={c.get('status')} {c.get('message') or ''}" for c in st.get("conditions") or []
        )
        pods = cluster.kubectl("get", "pods", "-n", NAMESPACE, "-l", f"lepton.ai/inferenceservice={JOB}", check=False)
        return f"InferenceService {JOB} Ready (conditions: {conditions or 'none'}; pods:\n{pods.stdout.strip()})"

    ip = wait_for(ready_ip, timeout, interval=1.0, message=server_state)
    print(cluster.kubectl("get", "lisvc", "-n", NAMESPACE).stdout, flush=True)
    digits = load_digits()
    row, label = [float(v) for v in digits.data[-1]], int(digits.target[-1])
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": row}]}
    url = f"http://{ip}:8080/v2/models/{JOB}/infer"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = json.loads(resp.read())
    say(f"POST {url} with the 8x8 image of a {label}:")
    print(json.dumps(answer), flush=True)
    predicted = next(o["data"][0] for o in answer["outputs"] if o["name"] == "label")
    say(f"prediction: {predicted} (true label {label})")


def up(timeout: float) -> int:
    cluster = Cluster.from_env()
    say("control plane (reused when it is running)")
    cluster.up()
    say("CRDs")
    install_crds(cluster)
    RUN.mkdir(parents=True, exist_ok=True)
    agent = NodeAgentProcess(cluster.config, "local-0", log_path=RUN / "node-agent.log")
    if agent.running_pid() is None:
        say(f"process node agent local-0 (log {agent.log_path})")
        agent.start(detach=True)
    else:
        say("process node agent local-0 already running")
    wait_for(lambda: cluster.node_ready(cluster.kubectl_json("get", "node", "local-0")), 30, message="local-0 Ready")
    print(cluster.kubectl("get", "nodes", "-L", "lepton.ai/runtime").stdout, flush=True)

    say(f"namespace {NAMESPACE} (fresh)")
    delete_namespace(cluster, NAMESPACE, wait=True, timeout=120)
    create_namespace(cluster, NAMESPACE)
    identity = operator_kubeconfig(cluster, RUN / "operator.kubeconfig")
    # The job's checkpoints: a hostPath under run/demo/ on the process node, the only folder allowed.
    env = {"LEPTON_NAMESPACES": json.dumps([NAMESPACE]), "LEPTON_ALLOWED_HOSTPATH_PREFIXES": json.dumps([str(RUN)])}
    operator = OperatorProcess(identity, RUN, env=env)
    say(f"operator, with the Helm chart's ServiceAccount (log {operator.log_path})")
    operator.start()
    try:
        checkpoints = RUN / f"checkpoints-{time.strftime('%Y%m%d-%H%M%S')}"
        checkpoints.mkdir(parents=True)
        say(f"TrainingJob {JOB}: 2 CPU workers on local-0, checkpoints in {checkpoints}")
        cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(job_manifest(checkpoints)))
        status = watch_job(cluster, timeout)
        print(cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide").stdout, flush=True)
        if status.get("phase") != "Succeeded":
            explain_failed_job(cluster, status)
            say(f"FAILED: TrainingJob {JOB} is {status.get('phase')}")
            return 1
        result = rank0_result(cluster, int(status.get("restartEpoch") or 0))
        say(f"rank 0's termination message: {json.dumps(result)}")
        accuracy = float((status.get("progress") or {}).get("testAccuracy") or result.get("testAccuracy") or 0)
        if accuracy < MIN_ACCURACY:
            say(f"FAILED: test accuracy {accuracy} is below {MIN_ACCURACY}")
            return 1
        mount = job_manifest(checkpoints)["spec"]["checkpoint"]["path"]
        job_meta = cluster.kubectl_json("get", "tj", JOB, "-n", NAMESPACE)["metadata"]
        folder = checkpoints / checkpoint_folder(job_meta)  # the job's own folder of the volume
        export = str(result.get("exportPath") or "").replace(mount, str(folder), 1)
        say(f"trained for real: test accuracy {accuracy:.4f}; model exported to {export}")
        serve(cluster)
    finally:
        operator.stop()
    say("look around: export KUBECONFIG=" + str(cluster.kubeconfig))
    say(f"  kubectl get tj,pods -n {NAMESPACE}; logs in {agent.state_dir}/pods/<uid>/containers/*/*/log")
    say("clean up: make demo-down")
    return 0


def down() -> int:
    """Node agent (its pods' processes, namespaces, bridge), then the control plane; 1 if anything is left."""
    cluster = Cluster.from_env()
    try:
        NodeAgentProcess(cluster.config, "local-0").down()
        agent_left = ""
    except AssertionError as e:
        agent_left = str(e)
    for line in cluster.down():
        say(line)
    if agent_left:
        say(f"FAILED: {agent_left}")
        return 1
    say("nothing of the demo is left running")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lepton_cluster.demo", description=__doc__)
    p.add_argument("command", nargs="?", choices=("up", "down"), default="up")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for training")
    args = p.parse_args(argv)
    try:
        return up(args.timeout) if args.command == "up" else down()
    except (KubectlError, TimeoutError, AssertionError, OSError) as e:
        say(f"FAILED: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
