"""One thread per pod bound to the node: sandbox, containers, probes, restarts, status, deletion.

The pod's record (`<pods dir>/<uid>/pod.json`) keeps what a restarted agent needs to adopt it: the
namespace and address, and per container the current attempt, restart count and last termination.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .containers import Attempt, start
from .hostsfile import PodAddress
from .kubeapi import ApiError, pod_path
from .network import create_sandbox, delete_sandbox
from .podspec import PodSpecError, VolumeSource, container_launch, gpu_count, volume_sources
from .podstatus import ContainerView, pod_phase, pod_status, terminated_state, termination_message
from .probes import ProbeState, run_probe
from .procfs import now_rfc3339, read_json, write_json

if TYPE_CHECKING:
    from .agent import Agent

log = logging.getLogger("procnode")
TERMINAL = ("Succeeded", "Failed")
BACKOFF_START, BACKOFF_MAX = 1.0, 30.0
LOST_MESSAGE = "The container could not be located when the node agent restarted"


@dataclass
class ContainerRun:
    """The agent's live state of one container: its status view, current attempt and probes."""

    view: ContainerView
    attempt_no: int = -1
    attempt: Attempt | None = None
    restart_at: float = 0.0
    readiness: ProbeState | None = None
    liveness: ProbeState | None = None


class PodWorker(threading.Thread):
    def __init__(self, agent: Agent, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent, self.uid = agent, meta["uid"]
        self.namespace, self.pod_name = meta["namespace"], meta["name"]
        self.latest: dict[str, Any] | None = pod
        self.wake = threading.Event()
        self.dir = agent.settings.pods_dir / self.uid
        self.record: dict[str, Any] = read_json(self.dir / "pod.json") or {}
        self.runs: dict[str, ContainerRun] = {}
        self.written: dict[str, Any] | None = None
        self.finished = False
        self.removing = False  # its containers are gone: its mounts no longer hold any mount point

    @property
    def ended(self) -> bool:
        """All containers of a finished pod are gone (and with them their mounts)."""
        return self.record.get("phase") in TERMINAL

    # -- called by the agent's watch -----------------------------------------------------------
    def update(self, pod: dict[str, Any] | None) -> None:
        self.latest = pod
        self.wake.set()

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("pod %s/%s: worker crashed", self.namespace, self.pod_name)
        finally:
            self.finished = True

    def _loop(self) -> None:
        s = self.agent.settings
        self._restore()
        while not self.agent.stopping.is_set():
            pod = self.latest
            if pod is None:  # gone from the API (force-deleted): no one waits for a graceful end
                self._kill_all(grace=2.0)
                self._remove()
                return
            if pod["metadata"].get("deletionTimestamp"):
                self._kill_all(grace=float(pod["metadata"].get("deletionGracePeriodSeconds") or 0))
                self._remove()
                self._finalize_deletion()
                return
            if self.record.get("phase") not in TERMINAL:
                self._step(pod)
            self.wake.wait(s.poll_interval)
            self.wake.clear()

    # -- sandbox -----------------------------------------------------------------------------------
    def _restore(self) -> None:
        """Adopt what a previous agent left: attempts of each container, restart counts, terminations."""
        pod = self.latest
        assert pod is not None
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.record:
            self.record = {"namespace": self.namespace, "name": self.pod_name, "uid": self.uid, "containers": {}}
            seen = (pod.get("status") or {}).get("containerStatuses") or []
            if any("running" in (c.get("state") or {}) for c in seen):
                self.record["lost"] = True  # started by an agent whose state is gone
            self._save()
        for c in pod["spec"]["containers"]:
            saved = self.record["containers"].get(c["name"], {})
            view = ContainerView(c["name"], c.get("image", ""), restart_count=saved.get("restartCount", 0))
            view.last_terminated = saved.get("lastTerminated")
            run = ContainerRun(view, attempt_no=saved.get("attempt", -1))
            if run.attempt_no >= 0:
                run.attempt = Attempt(self._attempt_dir(c["name"], run.attempt_no))
                view.container_id = self._container_id(c["name"], run.attempt_no)
                info = run.attempt.run_info()
                if info:
                    view.started_at = info["startedAt"]
                if saved.get("terminated"):
                    view.terminated = saved["terminated"]
            elif self.record.get("lost"):
                now = now_rfc3339()
                view.terminated = terminated_state(137, LOST_MESSAGE, None, now, "", reason="ContainerStatusUnknown")
            self.runs[c["name"]] = run
        if self.record.get("phase") in TERMINAL:
            self._teardown_sandbox()

    def _save(self) -> None:
        for name, run in self.runs.items():
            self.record["containers"][name] = {
                "attempt": run.attempt_no,
                "restartCount": run.view.restart_count,
                "lastTerminated": run.view.last_terminated,
                "terminated": run.view.terminated,
            }
        write_json(self.dir / "pod.json", self.record)

    def _attempt_dir(self, container: str, n: int) -> Path:
        path: Path = self.dir / "containers" / container / str(n)
        return path

    def _container_id(self, container: str, n: int) -> str:
        return f"process://{self.uid}/{container}/{n}"

    def _ensure_sandbox(self, pod: Mapping[str, Any]) -> bool:
        s = self.agent.settings
        if not self.record.get("netns"):
            address = self.agent.ipam.allocate(self.uid)
            netns, veth = f"{s.netns_prefix}{self.uid[:8]}", f"lpv{self.uid[:8]}"
            gpus = self.agent.gpus.allocate(self.uid, sum(gpu_count(c) for c in pod["spec"]["containers"]))
            self.record.update(netns=netns, veth=veth, ip=address, gpus=gpus, startTime=now_rfc3339())
            self._save()
        netns = self.record["netns"]
        if not Path(f"/run/netns/{netns}").exists():
            create_sandbox(s, netns, self.record["veth"], self.record["ip"])
        for sub in ("tmp", "volumes"):
            (self.dir / sub).mkdir(exist_ok=True)
        (self.dir / "tmp").chmod(0o1777)
        self.agent.hosts.register(self.uid, self._address(pod), Path("/etc/netns") / netns / "hosts")
        return True

    def _address(self, pod: Mapping[str, Any]) -> PodAddress:
        spec = pod["spec"]
        return PodAddress(
            self.namespace,
            self.pod_name,
            spec.get("hostname") or self.pod_name,
            spec.get("subdomain") or "",
            self.record["ip"],
        )

    def _teardown_sandbox(self) -> None:
        self.agent.hosts.unregister(self.uid)
        if self.record.get("netns"):
            delete_sandbox(self.record["netns"], self.record.get("veth"))
        self.agent.ipam.release(self.uid)
        self.agent.gpus.release(self.uid)

    # -- volumes -----------------------------------------------------------------------------------
    def _prepare_volumes(self, pod: Mapping[str, Any]) -> dict[str, VolumeSource]:
        vols = volume_sources(pod, self.dir, self.agent.settings.claims_dir)
        for vol in vols.values():
            path = Path(vol.path)
            if vol.create:
                path.mkdir(parents=True, exist_ok=True)
            elif not path.exists():
                raise PodSpecError(f"hostPath {vol.path} of volume {vol.name!r} does not exist")
            if vol.populate:
                self.agent.volume_files.populate(self.namespace, pod, vol, path)
        return vols

    # -- containers --------------------------------------------------------------------------------
    def _step(self, pod: dict[str, Any]) -> None:
        try:
            ready = self._ensure_sandbox(pod)
        except Exception as e:  # reported in the pod's status, retried
            log.warning("pod %s/%s: sandbox: %s", self.namespace, self.pod_name, e)
            self._write_status(pod, sandbox_ready=False, message=f"sandbox: {e}")
            self.wake.wait(2.0)
            return
        policy = pod["spec"].get("restartPolicy") or "Always"
        for container in pod["spec"]["containers"]:
            self._step_container(pod, container, self.runs[container["name"]], policy)
        phase = pod_phase(policy, [r.view for r in self.runs.values()])
        if phase in TERMINAL:
            self.record["phase"] = phase
            self._save()
            self._teardown_sandbox()
        self._write_status(pod, sandbox_ready=ready and phase not in TERMINAL)

    def _step_container(self, pod: dict[str, Any], c: Mapping[str, Any], run: ContainerRun, policy: str) -> None:
        view, now = run.view, time.monotonic()
        if run.attempt is None and view.terminated is None:
            self._start_container(pod, c, run)
            return
        if run.attempt is not None and view.terminated is None:
            self._observe(c, run)
        if view.terminated is not None:
            code = view.terminated["exitCode"]
            restart = policy == "Always" or (policy == "OnFailure" and code != 0)
            if restart and run.restart_at == 0.0:
                delay = min(BACKOFF_MAX, BACKOFF_START * 2 ** min(view.restart_count, 10))
                run.restart_at = now + delay
                view.last_terminated, view.terminated = view.terminated, None
                view.started_at, view.ready = None, False
                view.waiting_reason, view.waiting_message = "CrashLoopBackOff", f"back-off {delay:.0f}s"
                self._save()
        if run.restart_at and now >= run.restart_at and view.terminated is None and not view.running:
            run.restart_at = 0.0
            view.restart_count += 1
            self._start_container(pod, c, run)

    def _start_container(self, pod: dict[str, Any], c: Mapping[str, Any], run: ContainerRun) -> None:
        s = self.agent.settings
        n = run.attempt_no + 1
        adir = self._attempt_dir(c["name"], n)
        try:
            volumes = self._prepare_volumes(pod)
            launch = container_launch(
                pod,
                c,
                volumes,
                {"podIP": self.record["ip"], "hostIP": s.node_ip},
                python_bin=s.python_bin,
                termination_file=adir / "termination-log",
                gpus=self.record.get("gpus", []),
            )
        except (PodSpecError, ApiError, OSError) as e:
            run.view.waiting_reason, run.view.waiting_message = "CreateContainerConfigError", str(e)
            return
        hostname = pod["spec"].get("hostname") or self.pod_name
        run.attempt = start(adir, self.record["netns"], launch, hostname=hostname, tmp_dir=self.dir / "tmp")
        run.attempt_no = n
        run.view.container_id = self._container_id(c["name"], n)
        run.view.started_at, run.view.ready, run.view.terminated = None, False, None
        run.view.waiting_reason, run.view.waiting_message = "ContainerCreating", ""
        run.readiness = ProbeState(launch.readiness) if launch.readiness else None
        run.liveness = ProbeState(launch.liveness) if launch.liveness else None
        self._save()
        log.info("pod %s/%s: container %s started (attempt %d)", self.namespace, self.pod_name, c["name"], n)

    def _observe(self, c: Mapping[str, Any], run: ContainerRun) -> None:
        attempt, view = run.attempt, run.view
        assert attempt is not None
        info = attempt.run_info()
        if info and view.started_at is None:
            view.started_at = info["startedAt"]
        end = attempt.exit_info()
        if end is None and info is not None and not attempt.shim_alive():
            if attempt.init_alive():
                attempt.stop(0)
            end = attempt.exit_info() or {"exitCode": 137, "finishedAt": now_rfc3339(), "lost": True}
        elif end is None and info is None and attempt.popen is not None and attempt.popen.poll() is not None:
            end = {"exitCode": 128, "finishedAt": now_rfc3339()}  # the shim failed before starting anything
        if end is not None:
            code = int(end["exitCode"])
            message = termination_message(
                attempt.termination_text(),
                attempt.log_tail(),
                code,
                c.get("terminationMessagePolicy") == "FallbackToLogsOnError",
            )
            reason = "ContainerStatusUnknown" if end.get("lost") else ""
            view.terminated = terminated_state(
                code, message, view.started_at, end["finishedAt"], view.container_id, reason=reason
            )
            view.ready = False
            self._save()
            log.info("pod %s/%s: container %s exited %d", self.namespace, self.pod_name, c["name"], code)
            return
        if view.running:
            self._probe(run)

    def _probe(self, run: ContainerRun) -> None:
        now = time.monotonic()
        init_pid = (run.attempt.run_info() or {}).get("initPid") if run.attempt else None
        ports = {
            p["name"]: int(p["containerPort"])
            for p in self._container_spec(run.view.name).get("ports") or []
            if p.get("name")
        }
        if run.readiness is None:
            run.view.ready = True
        elif run.readiness.due(now):
            run.readiness.record(run_probe(run.readiness.spec, self.record["ip"], ports, init_pid), now)
            run.view.ready = run.readiness.ok
        if run.liveness is not None and run.liveness.due(now):
            run.liveness.record(run_probe(run.liveness.spec, self.record["ip"], ports, init_pid), now)
            if run.liveness.failed and run.attempt is not None:
                log.info("pod %s/%s: %s failed its liveness probe", self.namespace, self.pod_name, run.view.name)
                run.attempt.stop(self._grace())

    def _container_spec(self, name: str) -> Mapping[str, Any]:
        pod = self.latest or {"spec": {"containers": []}}
        return next((c for c in pod["spec"]["containers"] if c["name"] == name), {})

    def _grace(self) -> float:
        pod = self.latest or {}
        return float((pod.get("spec") or {}).get("terminationGracePeriodSeconds") or 30)

    # -- status --------------------------------------------------------------------------------------
    def _write_status(self, pod: Mapping[str, Any], *, sandbox_ready: bool, message: str = "") -> None:
        base = dict(pod)
        if self.written is not None:
            base["status"] = self.written  # our last write wins over a watch that lags behind it
        phase = self.record.get("phase") or pod_phase(
            pod["spec"].get("restartPolicy") or "Always", [r.view for r in self.runs.values()]
        )
        status = pod_status(
            base,
            [r.view for r in self.runs.values()],
            phase=phase,
            sandbox_ready=sandbox_ready,
            pod_ip=self.record.get("ip"),
            host_ip=self.agent.settings.node_ip,
            start_time=self.record.get("startTime") or now_rfc3339(),
            now=now_rfc3339(),
            message=message,
        )
        if status == self.written:
            return
        try:
            self.agent.api.patch(pod_path(self.namespace, self.pod_name, "status"), {"status": status})
        except ApiError as e:
            if e.status != 404:
                log.warning("pod %s/%s: status write failed: %s", self.namespace, self.pod_name, e)
            return
        self.written = json.loads(json.dumps(status))

    # -- stopping and removal ------------------------------------------------------------------------
    def _kill_all(self, grace: float) -> None:
        threads = [
            threading.Thread(target=run.attempt.stop, args=(grace,))
            for run in self.runs.values()
            if run.attempt is not None
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _remove(self) -> None:
        """After the containers are gone: the network namespace, the address, the pod's folders."""
        self.removing = True
        self._teardown_sandbox()
        created = {p for run in self.runs.values() for p in self._all_mountpoints(run)}
        shutil.rmtree(self.dir, ignore_errors=True)
        self.agent.remove_mountpoints(self.uid, created)

    def _all_mountpoints(self, run: ContainerRun) -> list[str]:
        if run.attempt_no < 0:
            return []
        return [
            p for n in range(run.attempt_no + 1) for p in Attempt(self._attempt_dir(run.view.name, n)).mountpoints()
        ]

    def _finalize_deletion(self) -> None:
        """As a kubelet: once everything is cleaned up, remove the object for good (grace 0, same uid)."""
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}}
        try:
            self.agent.api.delete(pod_path(self.namespace, self.pod_name), body)
        except ApiError as e:
            if e.status not in (404, 409):
                log.warning("pod %s/%s: final delete failed: %s", self.namespace, self.pod_name, e)
        log.info("pod %s/%s: deleted", self.namespace, self.pod_name)
