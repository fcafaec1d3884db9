"""The node agent: registers the Node, heartbeats, watches the pods bound to it and runs them.

Start-up order: lock the state folder (one agent per node), check and create the bridge, register the
Node, then reconcile what a previous agent left (adopt pods that still exist, clean up the rest and any
namespace of ours without a record), then list+watch `pods?fieldSelector=spec.nodeName=<name>`.
Stopping the agent (SIGTERM) leaves running pods alone, as a kubelet restart does; `down` removes all.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import threading
import time
import urllib.parse
from pathlib import Path
from typing import IO, Any

from ..config import KWOK_MANAGED_LABEL
from . import machine
from .containers import Attempt
from .kubeapi import ApiError, KubeApi, load_kubeconfig
from .network import delete_sandbox, ensure_bridge, list_netns
from .nodeobject import LEASE_NAMESPACE, capacity, lease_manifest, node_manifest, node_status
from .podworker import PodWorker
from .procfs import now_rfc3339, read_json
from .resources import GpuAllocator, HostsRegistry, Ipam, VolumeFiles
from .settings import AgentSettings

log = logging.getLogger("procnode")


def remove_empty_dirs(paths: set[str], in_use: set[str]) -> None:
    """rmdir each path (and empty folders below it) unless a mount path in `in_use` lies within."""
    for path in sorted(paths, key=len, reverse=True):
        if any(u == path or u.startswith(path.rstrip("/") + "/") for u in in_use):
            continue
        for leaf in sorted((str(p) for p in Path(path).rglob("*") if p.is_dir()), key=len, reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(leaf)
        with contextlib.suppress(OSError):
            os.rmdir(path)


class AgentError(RuntimeError):
    pass


def _micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Agent:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.api = KubeApi(load_kubeconfig(settings.kubeconfig, settings.state_dir / ".secrets"))
        self.ipam = Ipam(settings.network, settings.gateway)
        self.gpus = GpuAllocator(machine.gpu_indices())
        self.hosts = HostsRegistry()
        self.volume_files = VolumeFiles(self.api, settings.node_ip)
        self.workers: dict[str, PodWorker] = {}
        self.stopping = threading.Event()
        self.node_uid = ""
        self.started_at = now_rfc3339()
        self._lock_file: IO[str] | None = None

    # -- start-up ----------------------------------------------------------------------------------
    def lock(self) -> None:
        f = (self.settings.state_dir / "agent.lock").open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AgentError(f"another agent runs with state folder {self.settings.state_dir}") from None
        self._lock_file = f
        (self.settings.state_dir / "agent.pid").write_text(str(os.getpid()))

    def resources(self) -> dict[str, str]:
        return capacity(machine.cpu_count(), machine.memory_bytes(), len(machine.gpu_indices()))

    def register_node(self) -> None:
        s = self.settings
        manifest = node_manifest(s, self.resources(), now_rfc3339(), machine.kernel_version())
        try:
            existing = self.api.get(f"/api/v1/nodes/{s.name}")
        except ApiError as e:
            if e.status != 404:
                raise
            existing = self.api.create("/api/v1/nodes", manifest)
        else:
            if KWOK_MANAGED_LABEL in (existing["metadata"].get("labels") or {}):
                raise AgentError(f"node {s.name} exists and belongs to kwok ({KWOK_MANAGED_LABEL}); pick another name")
            if existing["spec"].get("podCIDR") not in (None, s.pod_cidr):
                raise AgentError(f"node {s.name} has podCIDR {existing['spec']['podCIDR']}, not {s.pod_cidr}")
            patch = {"metadata": {"labels": manifest["metadata"]["labels"]}, "spec": manifest["spec"]}
            existing = self.api.patch(f"/api/v1/nodes/{s.name}", patch)
        self.node_uid = existing["metadata"]["uid"]
        self.post_status()
        self.renew_lease()
        log.info("node %s registered (pod range %s on bridge %s)", s.name, s.pod_cidr, s.bridge)

    def post_status(self) -> None:
        s = self.settings
        node = self.api.get(f"/api/v1/nodes/{s.name}")
        ready = next((c for c in node.get("status", {}).get("conditions") or [] if c["type"] == "Ready"), None)
        now = now_rfc3339()
        since = ready["lastTransitionTime"] if ready and ready.get("status") == "True" else now
        status = node_status(s, self.resources(), now, since, machine.kernel_version())
        self.api.patch(f"/api/v1/nodes/{s.name}/status", {"status": status})

    def renew_lease(self) -> None:
        s = self.settings
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
        body = lease_manifest(s, _micro_now())
        body["metadata"]["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Node", "name": s.name, "uid": self.node_uid}
        ]
        try:
            current = self.api.get(f"{path}/{s.name}")
        except ApiError as e:
            if e.status != 404:
                raise
            self.api.create(path, body)
            return
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        self.api.replace(f"{path}/{s.name}", body)

    def heartbeat(self) -> None:
        s = self.settings
        last_status = time.monotonic()
        while not self.stopping.wait(s.lease_renew_interval):
            try:
                self.renew_lease()
                if time.monotonic() - last_status >= s.status_interval:
                    self.post_status()
                    last_status = time.monotonic()
            except (ApiError, OSError) as e:
                log.warning("heartbeat failed: %s", e)

    # -- adoption --------------------------------------------------------------------------------
    def list_pods(self) -> tuple[list[dict[str, Any]], str]:
        selector = urllib.parse.quote(f"spec.nodeName={self.settings.name}")
        lst = self.api.get(f"/api/v1/pods?fieldSelector={selector}")
        return lst.get("items") or [], lst["metadata"]["resourceVersion"]

    def adopt(self, pods: list[dict[str, Any]]) -> None:
        """Records of pods that still exist are adopted; everything else of ours is stopped and removed."""
        s = self.settings
        live = {p["metadata"]["uid"] for p in pods}
        s.pods_dir.mkdir(parents=True, exist_ok=True)
        known_netns = set()
        for pod_dir in s.pods_dir.iterdir():
            record = read_json(pod_dir / "pod.json") or {}
            if pod_dir.name in live:
                if record.get("ip") and record.get("phase") not in ("Succeeded", "Failed"):
                    self.ipam.adopt(pod_dir.name, record["ip"])
                    self.gpus.adopt(pod_dir.name, record.get("gpus") or [])
                if record.get("netns"):
                    known_netns.add(record["netns"])
                continue
            log.info(
                "cleaning up pod %s/%s (gone while the agent was away)", record.get("namespace"), record.get("name")
            )
            self._clean_orphan(pod_dir, record)
        for netns in list_netns(s.netns_prefix):
            if netns not in known_netns:
                log.info("removing orphaned network namespace %s", netns)
                delete_sandbox(netns, None)

    def _clean_orphan(self, pod_dir: Path, record: dict[str, Any]) -> None:
        import shutil

        created: set[str] = set()
        for attempt_dir in pod_dir.glob("containers/*/*"):
            attempt = Attempt(attempt_dir)
            attempt.stop(grace=2.0)
            created.update(attempt.mountpoints())
        if record.get("netns"):
            delete_sandbox(record["netns"], record.get("veth"))
        shutil.rmtree(pod_dir, ignore_errors=True)
        self.remove_mountpoints(pod_dir.name, created)

    def remove_mountpoints(self, uid: str, paths: set[str]) -> None:
        """Folders the pod's mounts created on the host, unless another live pod mounts there too."""
        remove_empty_dirs(paths, self._mounted_elsewhere(uid))

    def _mounted_elsewhere(self, uid: str) -> set[str]:
        in_use: set[str] = set()
        for other_uid, worker in self.workers.items():
            pod = worker.latest
            if other_uid == uid or pod is None or worker.finished or worker.removing or worker.ended:
                continue
            for c in pod["spec"]["containers"]:
                in_use.update(m["mountPath"] for m in c.get("volumeMounts") or [])
        return in_use

    # -- watch ---------------------------------------------------------------------------------------
    def dispatch(self, pod: dict[str, Any] | None, uid: str) -> None:
        worker = self.workers.get(uid)
        if worker is not None and worker.finished:
            self.workers.pop(uid, None)
            worker = None
            if (
                pod is not None
                and not (self.settings.pods_dir / uid).exists()
                and pod["metadata"].get("deletionTimestamp")
            ):
                return  # already cleaned up; our final delete is on its way
        if worker is None:
            if pod is None:
                return
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
            worker.start()
        else:
            worker.update(pod)

    def sync(self, pods: list[dict[str, Any]]) -> None:
        seen = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            self.dispatch(pod, uid)
        for uid in list(self.workers):
            if uid not in seen:
                self.dispatch(None, uid)

    def watch_pods(self) -> None:
        selector = urllib.parse.quote(f"spec.nodeName={self.settings.name}")
        pods: list[dict[str, Any]] | None = None
        while not self.stopping.is_set():
            try:
                if pods is None:
                    items, rv = self.list_pods()
                    self.sync(items)
                    pods = items
                for event in self.api.watch(f"/api/v1/pods?fieldSelector={selector}", rv):
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        pods = None  # 410 Gone and friends: list again
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    if event["type"] == "BOOKMARK":
                        continue
                    self.dispatch(None if event["type"] == "DELETED" else obj, obj["metadata"]["uid"])
                    if self.stopping.is_set():
                        break
            except (ApiError, OSError, ValueError) as e:
                log.warning("pod watch: %s; listing again", e)
                pods = None
                self.stopping.wait(1.0)

    # -- entry points --------------------------------------------------------------------------------
    def run(self) -> None:
        self.lock()
        ensure_bridge(self.settings)
        self.register_node()
        items, _ = self.list_pods()
        self.adopt(items)
        threading.Thread(target=self.heartbeat, name="heartbeat", daemon=True).start()
        log.info("agent ready: node %s, state %s", self.settings.name, self.settings.state_dir)
        self.watch_pods()

    def stop(self) -> None:
        self.stopping.set()
