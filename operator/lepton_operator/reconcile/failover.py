"""Failover policy of a TrainingJob: map each failed worker to an action (restart the job in a new epoch, fail
it, or ignore the failure); the worst decides, within failurePolicy.maxRestarts, with backoff between restarts."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum

from ..api.trainingjob import ExitCodes, FailurePolicy, FailureRule, TrainingJob
from ..api.trainingjob_status import LastFailure
from ..builders.names import pod_name
from .elastic import fitting_size
from .plan import Plan
from .progress import parse_json
from .status import TERMINAL, JobPass
from .views import PodView

IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
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
    if (result := parse_json(pod.message)) is not None and result.get("peerLost") is True:
        return "PeerLost"
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
        # The trainer exits 1 when a collective breaks because a peer vanished (its node lost, its container
        # killed): that is the peer's failure, seen first here, not this worker's bug. Counted, so that a
        # peer's real bug that is never observed first still ends in Failed after maxRestarts.
        FailureRule(action="RestartJob", on_reasons=["PeerLost"]),
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


def backoff_seconds(job: TrainingJob, restarts: int) -> float:
    """Delay before the pods of the epoch started by the n-th counted restart: none for the first."""
    b = job.spec.failure_policy.backoff
    return 0.0 if restarts <= 1 else float(min(b.max_seconds, b.initial_seconds * (1 << min(restarts - 2, 20))))


def suspects(p: JobPass, current: list[PodView], world: int) -> list[PodView]:
    """Failed pods, live pods on lost nodes, and pods deleted or vanished from under a launched epoch (the
    operator itself deletes pods only when it leaves the epoch, or ranks beyond the world size)."""
    lost, epoch = p.seen.lost_nodes, p.status.restart_epoch or 0
    found = [q for q in current if q.phase == "Failed" or (q.node in lost and q.phase not in TERMINAL)]
    found += [
        replace(q, phase="Failed", reason=q.reason or "PodLost")
        for q in current
        if q.deleting and q.rank < world and q.phase not in TERMINAL and q.node not in lost
    ]
    if p.status.launched:
        have, name = {q.rank for q in current}, p.job.metadata["name"]
        found += [
            PodView(name=pod_name(name, epoch, r), epoch=epoch, rank=r, phase="Failed", reason="PodLost")
            for r in range(world)
            if r not in have
        ]
    return found


def handle_failures(p: JobPass, current: list[PodView], world: int) -> tuple[Plan | None, set[int]]:
    """The plan when a failure decides the pass (a failed job, or a new epoch), and the ranks whose failure
    the policy ignores."""
    spec = p.job.spec
    verdicts = [classify(q, spec.failure_policy, p.seen.lost_nodes) for q in suspects(p, current, world)]
    ignored = {v.pod.rank for v in verdicts if v.action is Action.IGNORE}
    decisive = worst([v for v in verdicts if v.action is not Action.IGNORE])
    if decisive is None:
        return None, ignored
    _record(p, decisive, current)
    if decisive.action is Action.FAIL:
        return p.finish(False, decisive.reason, decisive.message, current), ignored
    limit = spec.failure_policy.max_restarts
    if decisive.counts and (p.status.restarts or 0) >= limit:
        why = f"{limit} restarts used; last failure: {decisive.message}"
        return p.finish(False, "BackoffLimitExceeded", why, current), ignored
    size = fitting_size(p.job, p.seen.capacity)
    return p.new_epoch(decisive.reason, decisive.message, counts=decisive.counts, world=size), ignored


def peer_node(pod: PodView, current: list[PodView]) -> str | None:
    """The node of the peer a PeerLost worker names (gloo's "[198.19.17.6]:41234"), when that peer still looks
    alive to the API: its node has stopped answering but is not NotReady yet (that takes ~40 s)."""
    result = parse_json(pod.message) or {}
    addresses = set(IPV4.findall(str(result.get("error") or "")))
    for q in current:
        if q.ip in addresses and q.name != pod.name and q.phase not in TERMINAL and q.node and q.node != pod.node:
            return q.node
    return None


def _record(p: JobPass, v: Verdict, current: list[PodView]) -> None:
    p.status.last_failure = LastFailure(
        pod=v.pod.name,
        node=v.pod.node,
        reason=v.reason,
        exit_code=v.pod.exit_code,
        peer_node=peer_node(v.pod, current) if v.reason == "PeerLost" else None,
        message=(v.pod.message or "")[:1024] or None,
        action=v.action.value,
        counted=v.counts,
        time=p.stamp,
    )
