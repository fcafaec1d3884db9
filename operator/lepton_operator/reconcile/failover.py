"""Map a failed worker to an action: restart the job (a new epoch), fail it, or ignore the failure."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..api.trainingjob import ExitCodes, FailurePolicy, FailureRule
from .progress import parse_json
from .views import PodView

DISRUPTIONS = ("Evicted", "Preempted", "Disrupted", "NodeLost", "PodLost")
# Pod-level reasons a kubelet gives when the node, not the program, ended the pod.
NODE_REASONS = frozenset({"NodeLost", "Shutdown", "Terminated", "UnexpectedAdmissionError", "NodeAffinity"})
USER_ERRORS = list(range(1, 128))  # exit codes of a program that gave up by itself
SEVERITY = {"FailJob": 2, "RestartJob": 1, "Ignore": 0}


class Action(StrEnum):
    RESTART = "RestartJob"
    FAIL = "FailJob"
    IGNORE = "Ignore"


@dataclass(frozen=True)
class Verdict:
    pod: PodView
    action: Action
    counts: bool  # whether it spends the failurePolicy.maxRestarts budget
    reason: str  # normalised failure reason (see FailureReason), or WorkerFailed / WorkerCrashed for exit codes
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
    result = parse_json(pod.message)
    detail = str(result.get("error") or "") if result is not None else (pod.message or "").strip()
    return f"{text}: {detail[:512]}" if detail else text


def failure_reason(pod: PodView, lost_nodes: frozenset[str] = frozenset()) -> str:
    """Normalise what happened to a worker into one of the FailureReason words."""
    if pod.disrupted:
        if "Preempt" in pod.disrupted:
            return "Preempted"
        return "Evicted" if "Evict" in pod.disrupted else "Disrupted"
    if pod.reason in ("Evicted", "PodLost"):
        return pod.reason
    if (pod.node and pod.node in lost_nodes) or pod.reason in NODE_REASONS:
        return "NodeLost"
    if pod.reason == "OOMKilled":
        return "OOMKilled"
    return "Error"


def _codes_match(codes: ExitCodes | None, code: int | None) -> bool:
    if codes is None:
        return True
    if code is None:
        return False
    return (code in codes.values) == (codes.operator == "In")


def default_rules(policy: FailurePolicy) -> list[FailureRule]:
    """The built-in rules, tried after the user's."""
    return [
        FailureRule(
            action="RestartJob",
            on_reasons=list(DISRUPTIONS),  # type: ignore[arg-type]
            counts_towards_max_restarts=policy.count_disruptions,
        ),
        FailureRule(action="RestartJob", on_reasons=["OOMKilled"]),
        # model_construct: the built-in range is wider than a user's rule may list.
        FailureRule(action="FailJob", on_exit_codes=ExitCodes.model_construct(operator="In", values=USER_ERRORS)),
    ]


def classify(pod: PodView, policy: FailurePolicy | None = None, lost_nodes: frozenset[str] = frozenset()) -> Verdict:
    """First matching rule wins; no match (a signal, 128+, no exit code) restarts and counts."""
    policy = policy or FailurePolicy()
    reason = failure_reason(pod, lost_nodes)
    for rule in [*(policy.rules or []), *default_rules(policy)]:
        if rule.on_reasons is not None and reason not in rule.on_reasons:
            continue
        if not _codes_match(rule.on_exit_codes, pod.exit_code):
            continue
        action = Action(rule.action)
        counts = action is Action.RESTART and rule.counts_towards_max_restarts is not False
        return Verdict(pod, action, counts, _label(reason, action), describe(pod))
    return Verdict(pod, Action.RESTART, True, _label(reason, Action.RESTART), describe(pod))


def _label(reason: str, action: Action) -> str:
    if reason != "Error":
        return reason
    return "WorkerFailed" if action is Action.FAIL else "WorkerCrashed"


def worst(verdicts: list[Verdict]) -> Verdict | None:
    """The verdict that decides the job: FailJob over RestartJob over Ignore; counted before free; lowest rank."""
    if not verdicts:
        return None
    return max(verdicts, key=lambda v: (SEVERITY[v.action], v.counts, -v.pod.rank))
