"""`make demo`: train a real model through the whole path on this machine (docs/demo.md).

control plane and its 2 real nodes up (reused when running) -> the images built and loaded into the nodes
-> CRDs -> `helm install` of the chart: the operator as a pod on a real node -> the 2-worker digits
TrainingJob of examples/trainingjob-digits-real.yaml, one worker per real node, with checkpoints in a fresh
folder under run/demo/ -> `kubectl get tj` as it trains -> an InferenceService of the trained model -> a
prediction. The cluster, the release and the finished job stay up for a look around; `make demo-down`
removes everything.
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

from .cluster import Cluster, KubectlError
from .incluster import install_operator, load_images, release_values
from .jobs import REPO, install_crds
from .realnode.plan import RUNTIME_LABEL, RUNTIME_TOLERATION
from .testing import create_namespace, delete_namespace, wait_for

NAMESPACE = "demo"
RELEASE, RELEASE_NAMESPACE = "lepton", "lepton-system"
JOB = "digits"
RUN = REPO / "run" / "demo"
MIN_ACCURACY = 0.95


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def job_manifest(checkpoints: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((REPO / "examples" / "trainingjob-digits-real.yaml").read_text())
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
    """One CPU replica of the trained model on a real node: it tolerates their taint, and every kwok node
    carries the GPU taint, so a `gpus: 0` server lands on a real node."""
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

    say(f"InferenceService {JOB}: the trained model, served from the trainer image on a real node")
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
    say("control plane and real nodes (reused when running)")
    cluster.up()
    if not cluster.real_node_names:
        say("FAILED: the demo runs on the real nodes; they are off (LEPTON_REAL_NODES=0?)")
        return 1
    print(cluster.kubectl("get", "nodes", "-L", RUNTIME_LABEL).stdout, flush=True)
    say("images: build (cached) and load into the real nodes' containerd")
    load_images(cluster, say=say)
    say("CRDs (kubectl apply --server-side -f crds/)")
    install_crds(cluster)
    RUN.mkdir(parents=True, exist_ok=True)
    say(f"namespace {NAMESPACE} (fresh)")
    delete_namespace(cluster, NAMESPACE, wait=True, timeout=120)
    create_namespace(cluster, NAMESPACE)
    # The job's checkpoints: a hostPath under run/demo/ (the only folder the release allows), writable by
    # the workers' user as a shared checkpoint volume's root must be (docs/deploy.md).
    say(f"helm install {RELEASE} charts/lepton-operator -n {RELEASE_NAMESPACE}: the operator as a pod")
    values = release_values([NAMESPACE], [str(RUN)])
    install_operator(cluster, RELEASE, RELEASE_NAMESPACE, values, workdir=RUN)
    selector = "app.kubernetes.io/component=operator"
    print(cluster.kubectl("get", "pods", "-n", RELEASE_NAMESPACE, "-l", selector, "-o", "wide").stdout, flush=True)
    checkpoints = RUN / f"checkpoints-{time.strftime('%Y%m%d-%H%M%S')}"
    checkpoints.mkdir(parents=True)
    checkpoints.chmod(0o1777)
    say(f"TrainingJob {JOB}: 2 CPU workers from the trainer image, one per real node; checkpoints in {checkpoints}")
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
    say("look around: export KUBECONFIG=" + str(cluster.kubeconfig) + f"; PATH={cluster.config.bin_dir}:$PATH")
    say(f"  kubectl get tj,lisvc,pods -n {NAMESPACE} -o wide; kubectl logs -n {NAMESPACE} -l lepton.ai/job-name={JOB}")
    say(f"  kubectl logs -n {RELEASE_NAMESPACE} deploy/{RELEASE}-lepton-operator   # the operator")
    say("clean up: make demo-down")
    return 0


def down() -> int:
    """The control plane with its real nodes (every process, mount, link and folder); 1 if anything is left."""
    cluster = Cluster.from_env()
    for line in cluster.down():
        say(line)
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
