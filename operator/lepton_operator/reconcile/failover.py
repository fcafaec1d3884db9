"""Map a failed worker to an action: restart the job (a new epoch), fail it, or ignore the failure."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .observe import PodView

# Pod-level reasons that mean the infrastructure, not the program, failed.
INFRA_REASONS = frozenset({"Evicted", "NodeLost", "Shutdown", "Terminated", "UnexpectedAdmissionError", "NodeAffinity"})


class Action(StrEnum):
    RESTART = "RestartJob"
    FAIL = "FailJob"
    IGNORE = "Ignore"


@dataclass(frozen=True)
class Verdict:
    action: Action
    counts: bool  # whether it spends the failurePolicy.maxRestarts budget
    reason: str
    message: str


def describe(pod: PodView) -> str:
    """One line naming the pod, node, exit code and reason, for Events and status."""
    parts = [f"pod {pod.name}"]
    if pod.node:
        parts.append(f"on node {pod.node}")
    if pod.exit_code is not None:
        parts.append(f"exit code {pod.exit_code}")
    if pod.reason:
        parts.append(f"reason {pod.reason}")
    if pod.disrupted:
        parts.append(f"disrupted ({pod.disrupted})")
    text = ", ".join(parts)
    return f"{text}: {pod.message.strip()[:512]}" if pod.message and pod.message.strip() else text


def classify(pod: PodView) -> Verdict:
    """Default rules: disruptions and node loss restart for free; 128+ and OOM restart; 1-127 fail."""
    what = describe(pod)
    if pod.disrupted:
        return Verdict(Action.RESTART, False, "Preempted" if "Preempt" in pod.disrupted else "Disrupted", what)
    if pod.reason in INFRA_REASONS:
        return Verdict(Action.RESTART, False, pod.reason or "NodeLost", what)
    if pod.reason == "OOMKilled":
        return Verdict(Action.RESTART, True, "OOMKilled", what)
    code = pod.exit_code
    if code is not None and 1 <= code <= 127:
        return Verdict(Action.FAIL, True, "WorkerFailed", what)
    return Verdict(Action.RESTART, True, "WorkerCrashed", what)
