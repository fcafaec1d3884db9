"""Pod status as a kubelet writes it, from the agent's view of each container (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MESSAGE_LIMIT = 4096  # bytes of a termination message, as the kubelet
LOG_FALLBACK_LINES, LOG_FALLBACK_BYTES = 80, 2048


@dataclass
class ContainerView:
    name: str
    image: str
    restart_count: int = 0
    container_id: str = ""
    started_at: str | None = None  # running since
    ready: bool = False
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    terminated: dict[str, Any] | None = None  # the current attempt ended (exitCode, reason, ...)
    last_terminated: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.started_at is not None and self.terminated is None

    def to_status(self) -> dict[str, Any]:
        if self.running:
            state: dict[str, Any] = {"running": {"startedAt": self.started_at}}
        elif self.terminated is not None:
            state = {"terminated": dict(self.terminated)}
        else:
            state = {"waiting": {"reason": self.waiting_reason}}
            if self.waiting_message:
                state["waiting"]["message"] = self.waiting_message
        out: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": f"process://{self.image}",
            "ready": self.ready and self.running,
            "started": self.running,
            "restartCount": self.restart_count,
            "state": state,
        }
        if self.container_id:
            out["containerID"] = self.container_id
        if self.last_terminated:
            out["lastState"] = {"terminated": dict(self.last_terminated)}
        return out


def terminated_state(
    exit_code: int, message: str, started_at: str | None, finished_at: str, container_id: str, reason: str = ""
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason or ("Completed" if exit_code == 0 else "Error"),
        "finishedAt": finished_at,
        "containerID": container_id,
    }
    if started_at:
        out["startedAt"] = started_at
    if message:
        out["message"] = message
    return out


def termination_message(file_text: str, log_tail: str, exit_code: int, fallback_to_logs: bool) -> str:
    """The file's content (at most 4 KiB); with FallbackToLogsOnError, the log's tail when the file is empty."""
    text = file_text.encode()[:MESSAGE_LIMIT].decode(errors="ignore")
    if text.strip() or not fallback_to_logs or exit_code == 0:
        return text
    lines = log_tail.splitlines()[-LOG_FALLBACK_LINES:]
    tail = "\n".join(lines).encode()[-LOG_FALLBACK_BYTES:]
    return tail.decode(errors="ignore")


def pod_phase(restart_policy: str, containers: Sequence[ContainerView]) -> str:
    if not containers:
        return "Pending"
    if any(c.running for c in containers):
        return "Running"
    done = [c.terminated for c in containers]
    if all(t is not None for t in done):
        codes = [t["exitCode"] for t in done if t is not None]
        if all(code == 0 for code in codes):
            return "Succeeded" if restart_policy in ("Never", "OnFailure") else "Running"
        return "Failed" if restart_policy == "Never" else "Running"
    started = any(c.restart_count or c.terminated for c in containers)
    return "Running" if started else "Pending"


def _condition(
    type_: str, ok: bool, now: str, previous: Mapping[str, Mapping[str, Any]], reason: str = ""
) -> dict[str, Any]:
    status = "True" if ok else "False"
    prev = previous.get(type_)
    since = (
        prev["lastTransitionTime"] if prev and prev.get("status") == status and prev.get("lastTransitionTime") else now
    )
    out = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason and not ok:
        out["reason"] = reason
    return out


def pod_status(
    pod: Mapping[str, Any],
    containers: Sequence[ContainerView],
    *,
    phase: str,
    sandbox_ready: bool,
    pod_ip: str | None,
    host_ip: str,
    start_time: str,
    now: str,
    message: str = "",
    reason: str = "",
) -> dict[str, Any]:
    """The whole status (a merge patch replaces lists whole: conditions and containerStatuses)."""
    old = pod.get("status") or {}
    previous = {c["type"]: c for c in old.get("conditions") or []}
    terminal = phase in ("Succeeded", "Failed")
    all_ready = bool(containers) and all(c.ready and c.running for c in containers)
    not_ready_reason = ("PodCompleted" if phase == "Succeeded" else "PodFailed") if terminal else "ContainersNotReady"
    conditions = [
        _condition("PodReadyToStartContainers", sandbox_ready and not terminal, now, previous),
        _condition("Initialized", True, now, previous),
        _condition("ContainersReady", all_ready, now, previous, not_ready_reason),
        _condition("Ready", all_ready, now, previous, not_ready_reason),
    ]
    if "PodScheduled" in previous:
        conditions.append(dict(previous["PodScheduled"]))
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "containerStatuses": [c.to_status() for c in containers],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}] if pod_ip else None,
        "message": message or None,
        "reason": reason or None,
    }
    return status
