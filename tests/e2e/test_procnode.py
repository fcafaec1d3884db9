"""The process-runtime node: pods bound to it run as real local processes (lepton_cluster.procnode).

Needs root (network namespaces, mounts), iproute2 and util-linux: .ci/run installs them, and without them
these tests fail (they are never skipped). The module starts the node
agent (or reuses one already running for this cluster) and, if it started it, removes it at the end.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import REPO, create_job, get_job, job_pods, wait_phase
from lepton_cluster.procnode.network import netns_pids, netns_routes
from lepton_cluster.procnode.process import NodeAgentProcess
from lepton_cluster.procnode.procfs import alive, read_json
from lepton_cluster.procnode.settings import (
    DEFAULT_POD_CIDR,
    RUNTIME_LABEL,
    RUNTIME_TOLERATION,
    RUNTIME_VALUE,
    AgentSettings,
)
from lepton_cluster.procnode.teardown import leftovers
from lepton_cluster.testing import wait_for
from lepton_operator.reconcile.progress import parse_json

pytestmark = [pytest.mark.e2e]


def test_the_machine_can_run_a_process_node() -> None:
    assert os.geteuid() == 0, "the process node needs root (network namespaces, mounts)"
    assert shutil.which("ip") and shutil.which("nsenter"), "install iproute2 and util-linux"


NODE = "local-0"
POD_NET = ipaddress.IPv4Network(DEFAULT_POD_CIDR)

# A small HTTP server: GET / answers 200 (readiness), GET /exit/<code> writes the termination message
# and exits with that code. SIGTERM is ignored when IGNORE_TERM is set (to see the grace period's SIGKILL).
SERVER = r"""
import http.server, os, signal, socket, sys
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("hostname", socket.gethostname(), "fqdn", socket.getfqdn(), "pid", os.getpid(), flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/exit/"):
            code = int(self.path.rsplit("/", 1)[1])
            with open(os.environ["LEPTON_TERMINATION_LOG"], "w") as f:
                f.write(f"bye from {os.environ['POD_NAME']} with {code}")
            self.send_response(200); self.end_headers(); self.wfile.flush()
            os._exit(code)
        body = socket.gethostname().encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer(("0.0.0.0", 8080), H).serve_forever()
"""


@pytest.fixture(scope="module")
def agent(cluster: Cluster) -> Iterator[NodeAgentProcess]:
    proc = NodeAgentProcess(cluster.config, NODE)
    started = proc.running_pid() is None
    if started:
        proc.start()
    try:
        yield proc
    finally:
        if started:
            proc.down()


def server_pod(name: str, *, ignore_term: bool = False, grace: int = 5) -> dict[str, Any]:
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    if ignore_term:
        env.append({"name": "IGNORE_TERM", "value": "1"})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "procnode-e2e"}},
        "spec": {
            "nodeSelector": {RUNTIME_LABEL: RUNTIME_VALUE},
            "tolerations": [RUNTIME_TOLERATION],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": grace,
            "containers": [
                {
                    "name": "main",
                    "image": "python:3.11",
                    "command": ["python", "-c", SERVER],
                    "env": env,
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                }
            ],
        },
    }


def get_pod(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return cluster.to_dict(cluster.core.read_namespaced_pod(name, ns))


def ready_pod(cluster: Cluster, ns: str, name: str, timeout: float = 60) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        pod = get_pod(cluster, ns, name)
        st = pod.get("status") or {}
        cs = st.get("containerStatuses") or [{}]
        return pod if st.get("phase") == "Running" and cs[0].get("ready") and st.get("podIP") else None

    return wait_for(ready, timeout, message=f"pod {ns}/{name} Running and Ready")


def pod_record(agent: NodeAgentProcess, uid: str) -> dict[str, Any]:
    doc = read_json(agent.state_dir / "pods" / uid / "pod.json")
    assert isinstance(doc, dict), f"no record of pod {uid}"
    return doc


def run_info(agent: NodeAgentProcess, uid: str, container: str = "main", attempt: int = 0) -> dict[str, Any]:
    doc = read_json(agent.state_dir / "pods" / uid / "containers" / container / str(attempt) / "run.json")
    assert isinstance(doc, dict)
    return doc


def http_get(ip: str, path: str) -> str:
    with urllib.request.urlopen(f"http://{ip}:8080{path}", timeout=5) as resp:
        return str(resp.read().decode())


def gone(cluster: Cluster, ns: str, name: str) -> bool:
    return not any(p.metadata.name == name for p in cluster.core.list_namespaced_pod(ns).items)


@pytest.mark.timeout(120)
def test_pod_runs_ready_with_an_ip_and_fails_with_its_termination_message(
    cluster: Cluster, namespace: str, agent: NodeAgentProcess
) -> None:
    cluster.core.create_namespaced_pod(namespace, server_pod("web"))
    pod = ready_pod(cluster, namespace, "web")
    st = pod["status"]
    assert pod["spec"]["nodeName"] == NODE
    assert ipaddress.IPv4Address(st["podIP"]) in POD_NET
    assert st["containerStatuses"][0]["state"]["running"]["startedAt"]
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"
    assert http_get(st["podIP"], "/") == "web"  # its own UTS namespace: hostname = pod name
    # the container's mounts (its private /tmp) live in a mount namespace of its own: the shim, which
    # records run.json and exit.json under the agent's state folder, never sees them (that race was exit 128)
    run = run_info(agent, pod["metadata"]["uid"])
    shim_ns, init_ns = (os.readlink(f"/proc/{run[k]}/ns/mnt") for k in ("shimPid", "initPid"))
    assert shim_ns != init_ns

    def tmp_mounts(pid: int | str) -> int:
        return [line.split()[4] for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()].count("/tmp")

    assert tmp_mounts(run["shimPid"]) == tmp_mounts("self") < tmp_mounts(run["initPid"])

    http_get(st["podIP"], "/exit/3")

    def failed() -> dict[str, Any] | None:
        p = get_pod(cluster, namespace, "web")
        return p if p["status"].get("phase") == "Failed" else None

    term = wait_for(failed, 30, message="phase Failed")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3
    assert term["reason"] == "Error"
    assert term["message"] == "bye from web with 3"
    netns = pod_record(agent, pod["metadata"]["uid"])["netns"]
    wait_for(lambda: not Path(f"/run/netns/{netns}").exists(), 10, message="sandbox torn down after the exit")


@pytest.mark.timeout(120)
def test_deletion_sigterm_grace_sigkill_then_cleanup(cluster: Cluster, namespace: str, agent: NodeAgentProcess) -> None:
    cluster.core.create_namespaced_pod(namespace, server_pod("stubborn", ignore_term=True, grace=2))
    pod = ready_pod(cluster, namespace, "stubborn")
    uid = pod["metadata"]["uid"]
    record, run = pod_record(agent, uid), run_info(agent, uid)
    assert alive(run["initPid"], run["initTicks"])
    assert Path(f"/run/netns/{record['netns']}").exists()

    cluster.core.delete_namespaced_pod("stubborn", namespace)  # grace 2 s; SIGTERM is ignored -> SIGKILL
    wait_for(lambda: gone(cluster, namespace, "stubborn"), 30, message="the agent removes the pod object")
    assert not alive(run["initPid"], run["initTicks"]), "the container's processes survived deletion"
    assert not alive(run["shimPid"], run["shimTicks"])
    assert not Path(f"/run/netns/{record['netns']}").exists()
    assert not Path(f"/etc/netns/{record['netns']}").exists()
    assert not (agent.state_dir / "pods" / uid).exists()


@pytest.mark.timeout(150)
def test_agent_restart_adopts_running_pods_and_cleans_up_deleted_ones(
    cluster: Cluster, namespace: str, agent: NodeAgentProcess
) -> None:
    for name in ("keep", "drop"):
        cluster.core.create_namespaced_pod(namespace, server_pod(name))
    keep, drop = ready_pod(cluster, namespace, "keep"), ready_pod(cluster, namespace, "drop")
    keep_run, drop_run = run_info(agent, keep["metadata"]["uid"]), run_info(agent, drop["metadata"]["uid"])
    drop_netns = pod_record(agent, drop["metadata"]["uid"])["netns"]

    agent.kill()  # a crash: no cleanup at all
    cluster.core.delete_namespaced_pod("drop", namespace, grace_period_seconds=0)  # gone while no agent runs
    assert alive(keep_run["initPid"], keep_run["initTicks"]), "containers must outlive the agent"
    agent.start()

    wait_for(lambda: not alive(drop_run["initPid"], drop_run["initTicks"]), 30, message="orphan killed")
    wait_for(lambda: not Path(f"/run/netns/{drop_netns}").exists(), 30, message="orphan namespace removed")
    assert alive(keep_run["initPid"], keep_run["initTicks"]), "the adopted container was restarted"
    assert http_get(keep["status"]["podIP"], "/") == "keep"  # same process, same address
    http_get(keep["status"]["podIP"], "/exit/7")  # the new agent still learns the exit code

    def failed() -> dict[str, Any] | None:
        p = get_pod(cluster, namespace, "keep")
        return p if p["status"].get("phase") == "Failed" else None

    term = wait_for(failed, 30, message="keep Failed")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["message"]) == (7, "bye from keep with 7")


@pytest.mark.timeout(60)
def test_pod_traffic_stays_on_the_bridge(cluster: Cluster, namespace: str, agent: NodeAgentProcess) -> None:
    """Pod addresses come from the agent's range; a pod routes only that range; the bridge forwards nothing."""
    cluster.core.create_namespaced_pod(namespace, server_pod("net"))
    pod = ready_pod(cluster, namespace, "net")
    record = pod_record(agent, pod["metadata"]["uid"])
    routes = netns_routes(record["netns"])
    assert routes, "no routes read"
    for dst in routes:
        net = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
        assert net.subnet_of(POD_NET) or net.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")), dst
    bridges = [p for p in Path("/sys/class/net").iterdir() if p.name.startswith("lpbr-")]
    assert bridges
    for bridge in bridges:
        assert Path(f"/proc/sys/net/ipv4/conf/{bridge.name}/forwarding").read_text().strip() == "0"
    for p in cluster.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={NODE}").items:
        if p.status.pod_ip:
            assert ipaddress.IPv4Address(p.status.pod_ip) in POD_NET


@pytest.mark.timeout(300)
def test_killing_a_worker_restarts_the_epoch_and_resumes_from_the_checkpoint(
    cluster: Cluster, namespace: str, operator: object, agent: NodeAgentProcess, tmp_path: Path
) -> None:
    manifest = yaml.safe_load((REPO / "examples" / "trainingjob-digits-process.yaml").read_text())
    ckpt = tmp_path / "checkpoints"
    manifest["spec"]["checkpoint"]["volume"]["hostPath"] = str(ckpt)
    manifest["spec"]["args"] = [
        *("-m", "lepton_trainer.train", "--workload", "digits", "--epochs", "12"),
        *("--step-sleep", "0.05", "--checkpoint-every", "20", "--log-every", "10"),
    ]
    create_job(cluster, namespace, manifest)
    wait_phase(cluster, namespace, "digits", "Running", timeout=90)
    # in the job's own folder of the volume, <namespace>/<name>-<uid>
    wait_for(lambda: list(ckpt.rglob("step-*.ckpt")), 120, interval=0.2, message="a first checkpoint")

    victim = next(p for p in job_pods(cluster, namespace, "digits") if p["metadata"]["name"] == "digits-0-1")
    run = run_info(agent, victim["metadata"]["uid"], container="trainer")
    os.kill(run["initPid"], signal.SIGKILL)  # the whole container dies, as in an OOM kill: exit 137

    st = wait_phase(cluster, namespace, "digits", "Succeeded", timeout=240)
    # exactly one: the kill (a container that fails at start, as the shim's /tmp race did, would add more)
    assert (st["restarts"], st["restartEpoch"]) == (1, 1), st
    assert st["lastFailure"]["pod"] == "digits-0-1" and st["lastFailure"]["exitCode"] == 137
    result = parse_json(
        next(
            p["status"]["containerStatuses"][0]["state"]["terminated"].get("message")
            for p in job_pods(cluster, namespace, "digits")
            if p["metadata"]["labels"]["lepton.ai/restart-epoch"] == str(st["restartEpoch"])
            and p["metadata"]["labels"]["lepton.ai/replica-index"] == "0"
        )
    )
    assert result is not None and result["testAccuracy"] >= 0.95, result
    assert get_job(cluster, namespace, "digits")["status"]["progress"]["testAccuracy"] >= 0.95
    new_rank0 = next(
        p
        for p in job_pods(cluster, namespace, "digits")
        if p["metadata"]["labels"]["lepton.ai/restart-epoch"] == str(st["restartEpoch"])
        and p["metadata"]["labels"]["lepton.ai/replica-index"] == "0"
    )
    logs = "".join(
        f.read_text(errors="replace")
        for f in (agent.state_dir / "pods" / new_rank0["metadata"]["uid"]).glob("containers/*/*/log")
    )
    assert "resumed from checkpoint step=" in logs, logs[-3000:]
    print(json.dumps({"restarts": st["restarts"], "epoch": st["restartEpoch"], "accuracy": result["testAccuracy"]}))


@pytest.mark.timeout(180)
def test_down_leaves_nothing_behind(cluster: Cluster, namespace: str, agent: NodeAgentProcess) -> None:
    """`down` (make demo-down) removes every process, namespace, link and mount of the node, even a
    process in a pod's namespace that no record names (as a shim that died before run.json would leave).

    Runs last in this module: it takes the node down and brings it back for whoever comes after."""
    for name in ("a", "b"):
        cluster.core.create_namespaced_pod(namespace, server_pod(name, ignore_term=True, grace=30))
    pods = [ready_pod(cluster, namespace, name) for name in ("a", "b")]
    netns = pod_record(agent, pods[0]["metadata"]["uid"])["netns"]
    stray = subprocess.Popen(
        ["ip", "netns", "exec", netns, "sleep", "600"], start_new_session=True, stdin=subprocess.DEVNULL
    )
    wait_for(lambda: stray.pid in netns_pids(netns), 10, message="the stray process in the pod's namespace")
    settings = AgentSettings(name=NODE, kubeconfig=cluster.config.admin_kubeconfig, state_dir=agent.state_dir)
    assert leftovers(settings), "leftovers() sees nothing while the node runs"
    runs = [run_info(agent, pod["metadata"]["uid"]) for pod in pods]

    agent.down()  # raises if the node's own check finds anything left

    assert stray.wait(10) == -signal.SIGKILL
    assert leftovers(settings) == []
    for run in runs:
        assert not alive(run["initPid"], run["initTicks"]) and not alive(run["shimPid"], run["shimTicks"])
    agent.start()
