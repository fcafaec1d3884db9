"""Kubernetes Events about our objects (what `kubectl describe` shows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..constants import MANAGER
from ..timestamps import rfc3339
from .client import Kube


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


async def post_event(kube: Kube, obj: dict[str, Any], type_: str, reason: str, message: str, now: datetime) -> None:
    await kube.create(event_body(obj, type_, reason, message, now))
