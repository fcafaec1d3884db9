"""Kubernetes Events about our objects (what `kubectl describe` shows). Best-effort: status is the record."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import aiohttp

from ..constants import MANAGER
from ..timestamps import rfc3339
from .client import Kube
from .errors import ApiError

log = logging.getLogger("lepton_operator.events")


def event_body(obj: dict[str, Any], type_: str, reason: str, message: str, now: datetime) -> dict[str, Any]:
    meta = obj["metadata"]
    stamp = rfc3339(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": MANAGER},
        "reportingComponent": MANAGER,
        "reportingInstance": MANAGER,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


async def post_event(kube: Kube, obj: dict[str, Any], type_: str, reason: str, message: str, now: datetime) -> bool:
    """Post one Event; False when the API would not take it (logged: a lost Event must not fail or repeat a pass)."""
    try:
        await kube.create(event_body(obj, type_, reason, message, now))
    except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
        meta = obj["metadata"]
        log.warning("event %s for %s/%s not posted: %s", reason, meta.get("namespace"), meta["name"], exc)
        return False
    return True
