"""metav1.Condition bookkeeping: lastTransitionTime moves only when status flips."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..api.base import Condition

MAX_MESSAGE = 4096  # Condition.message's bound in the CRD


@dataclass(frozen=True)
class Transition:
    """A condition that changed status (or appeared) in this pass."""

    type: str
    status: str
    reason: str
    message: str


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    now: str,
    generation: int | None,
) -> Transition | None:
    """Upsert a condition in place; return the transition when it is new or its status flipped.

    The message is cut to the schema's bound: it may quote what a pod or the scheduler said.
    """
    message = message[:MAX_MESSAGE]
    value: Literal["True", "False"] = "True" if status else "False"
    for i, cond in enumerate(conditions):
        if cond.type == type_:
            flipped = cond.status != value
            conditions[i] = Condition(
                type=type_,
                status=value,
                reason=reason,
                message=message,
                last_transition_time=now if flipped else cond.last_transition_time,
                observed_generation=generation,
            )
            return Transition(type_, value, reason, message) if flipped else None
    conditions.append(
        Condition(
            type=type_,
            status=value,
            reason=reason,
            message=message,
            last_transition_time=now,
            observed_generation=generation,
        )
    )
    return Transition(type_, value, reason, message)


def is_true(conditions: list[Condition] | None, type_: str) -> bool:
    return any(c.type == type_ and c.status == "True" for c in conditions or [])


def get(conditions: list[Condition] | None, type_: str) -> Condition | None:
    return next((c for c in conditions or [] if c.type == type_), None)


def ready_summary(ready: int, desired: int) -> str:
    """`ready/desired` replicas, the READY column of `kubectl get` for both kinds."""
    return f"{ready}/{desired}"
