"""Training progress for status: the trainer's final result (termination message) or its live document.

What a pod sends is untrusted: every field is validated on its own against the status model's bounds; a bad
field is left out and named in `problems` (the plan reports them in a condition), never raised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..api.trainingjob_status import Progress
from ..constants import COND_BAD_PROGRESS
from ..untrusted import loads
from .status import JobPass
from .views import PodView

_FIELDS = {
    "step": "step",
    "totalSteps": "total_steps",
    "epoch": "epoch",
    "loss": "loss",
    "samplesPerSecond": "samples_per_second",
    "etaSeconds": "eta_seconds",
    "lastCheckpointStep": "last_checkpoint_step",
    "testAccuracy": "test_accuracy",
    "exportPath": "export_path",
}
_INTS = ("step", "total_steps", "epoch", "last_checkpoint_step")
MAX_STATE = 32


@dataclass(frozen=True)
class Report:
    """What rank 0 reported: the valid part, and what was wrong with the rest."""

    progress: Progress | None = None
    problems: list[str] = field(default_factory=list)


def parse_json(text: str | None) -> dict[str, Any] | None:
    """A JSON object from a termination message, or None when it is plain text."""
    if not text or not text.lstrip().startswith("{"):
        return None
    try:
        doc = loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _summary(p: Progress, state: str | None) -> str:
    if p.test_accuracy is not None:
        return f"done acc={p.test_accuracy:.3f}"
    if state == "Failed":
        return "failed"
    if p.step is not None and p.total_steps:
        pct = 100 * p.step // max(p.total_steps, 1)
        loss = f" loss {p.loss:.3g}" if p.loss is not None else ""
        return f"{pct}% step {p.step}/{p.total_steps}{loss}"
    return state.lower() if state else ""


def _field(key: str, attr: str, raw: Any) -> tuple[Any, str | None]:
    """One field, validated alone: (value, None) or (None, what is wrong)."""
    if isinstance(raw, float) and not math.isfinite(raw):
        return None, f"{key}: not a finite number"
    if attr in _INTS and isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if attr == "export_path" and isinstance(raw, str):
        raw = raw[:1024]
    try:
        return getattr(Progress.model_validate({attr: raw}), attr), None
    except ValidationError as exc:
        return None, f"{key}: {exc.errors()[0]['msg']}"


def from_document(doc: dict[str, Any], source: str) -> Report:
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, attr in _FIELDS.items():
        if doc.get(key) is None:
            continue
        value, problem = _field(key, attr, doc[key])
        if problem:
            problems.append(problem)
        else:
            values[attr] = value
    state = doc.get("state")
    if state is not None and not (isinstance(state, str) and len(state) <= MAX_STATE):
        problems.append(f"state: not a string of at most {MAX_STATE} characters")
        state = None
    p = Progress(source=source, **values)
    p.summary = _summary(p, state)
    return Report(p, [f"{source}: {x}" for x in problems])


def progress(current: list[PodView], live: dict[str, Any] | None) -> Report:
    """Rank 0's final result when it has one, else the live document from its endpoint."""
    rank0 = next((q for q in current if q.rank == 0), None)
    if rank0 is not None and rank0.phase in ("Succeeded", "Failed"):
        result = parse_json(rank0.message)
        if result is not None:
            return from_document(result, "termination-message")
    return from_document(live, "endpoint") if live else Report()


def report_progress(p: JobPass, current: list[PodView]) -> None:
    """Progress into status. Bad data from the trainer is left out and reported in a condition and a Warning
    Event (once); the rest of the pass goes on."""
    found = progress(current, p.seen.live_progress)
    if found.progress is not None:
        p.status.progress = found.progress
    problems = [*found.problems, *filter(None, [p.seen.live_progress_error])]
    if problems:
        text = "; ".join(problems)[:1024]
        p.cond(COND_BAD_PROGRESS, True, "InvalidProgress", f"progress fields left out: {text}", warning=True)
    else:
        p.drop(COND_BAD_PROGRESS, "ValidProgress", "the trainer's progress reports are valid")
