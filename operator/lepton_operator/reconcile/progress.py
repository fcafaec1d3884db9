"""Training progress for status: the trainer's final result (termination message) or its live document."""

from __future__ import annotations

import json
from typing import Any

from ..api.trainingjob import Progress
from .observe import PodView

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


def parse_json(text: str | None) -> dict[str, Any] | None:
    """A JSON object from a termination message, or None when it is plain text."""
    if not text or not text.lstrip().startswith("{"):
        return None
    try:
        doc = json.loads(text)
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


def from_document(doc: dict[str, Any], source: str) -> Progress:
    values = {attr: doc[key] for key, attr in _FIELDS.items() if doc.get(key) is not None}
    for attr in ("step", "total_steps", "epoch", "last_checkpoint_step"):
        if attr in values:
            values[attr] = int(values[attr])
    if isinstance(values.get("export_path"), str):
        values["export_path"] = values["export_path"][:1024]
    p = Progress(source=source, **values)
    p.summary = _summary(p, doc.get("state"))
    return p


def progress(current: list[PodView], live: dict[str, Any] | None) -> Progress | None:
    """Rank 0's final result when it has one, else the live document from its endpoint."""
    rank0 = next((q for q in current if q.rank == 0), None)
    if rank0 is not None and rank0.phase in ("Succeeded", "Failed"):
        result = parse_json(rank0.message)
        if result is not None:
            return from_document(result, "termination-message")
    return from_document(live, "endpoint") if live else None
