"""An object the operator cannot read (a spec its models refuse): one InvalidSpec condition and one Event.

Used by both kinds. The API server validates against the same models, so this happens only when they
disagree (a CRD older than the operator, a Python-only rule): the object waits for its spec to change.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import aiohttp
from pydantic import ValidationError

from ..constants import API_VERSION, COND_INVALID
from ..kube.client import Kube
from ..kube.errors import ApiError
from ..kube.events import post_event
from ..timestamps import rfc3339

log = logging.getLogger("lepton_operator.invalid")


def describe(exc: ValidationError, prefix: str = "") -> str:
    """The first five errors, each as `field.path: message` (camelCase, as the user wrote it)."""
    return "; ".join(f"{prefix}{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


async def report_invalid(
    kube: Kube,
    plural: str,
    body: dict[str, Any],
    errors: str,
    now: datetime,
    fields: dict[str, Any],
) -> None:
    """Set InvalidSpec=True with `errors` (and `fields`, e.g. phase) and post a Warning Event, once per message."""
    meta = body["metadata"]
    kind = body.get("kind") or plural
    status = body.get("status") or {}
    old = status.get("conditions") or []
    if any(c.get("type") == COND_INVALID and c.get("status") == "True" and c.get("message") == errors for c in old):
        return
    condition = {
        "type": COND_INVALID,
        "status": "True",
        "reason": "InvalidSpec",
        "message": errors[:4096],
        "lastTransitionTime": rfc3339(now),
    }
    log.warning("%s %s/%s: invalid spec: %s", kind, meta["namespace"], meta["name"], errors)
    patch = {"conditions": [*(c for c in old if c.get("type") != COND_INVALID), condition], **fields}
    try:
        await kube.patch_status(API_VERSION, plural, meta["namespace"], meta["name"], patch)
    except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("%s %s/%s: cannot report the invalid spec: %s", kind, meta["namespace"], meta["name"], exc)
        return
    await post_event(kube, body, "Warning", "InvalidSpec", errors, now)
