"""GPUs in use per node, from one cached LIST of the cluster's live pods (only elastic jobs ask)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..constants import GPU_RESOURCE
from .client import Kube
from .errors import ApiError

log = logging.getLogger("lepton_operator.usage")

LIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"
FORBIDDEN_RETRY = 300  # seconds before asking again after a 403 (namespaced mode)


class GpuUsage:
    """Snapshot shared by all jobs for `ttl` seconds; served from the API server's watch cache."""

    def __init__(self, kube: Kube, ttl: float = 2.0) -> None:
        self.kube, self.ttl = kube, ttl
        self._at = -1e9
        self._used: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._forbidden_until = -1.0

    async def used(self) -> dict[str, int] | None:
        """GPUs requested per node; None when this identity may not list pods cluster-wide (namespaced mode)."""
        async with self._lock:
            if time.monotonic() < self._forbidden_until:
                return None
            if time.monotonic() - self._at > self.ttl:
                try:
                    pods = await self.kube.list("v1", "pods", fieldSelector=LIVE_PODS, resourceVersion="0")
                except ApiError as exc:
                    if exc.status != 403:
                        raise
                    log.warning(
                        "cannot list pods cluster-wide: GPU capacity unknown for %ds (%s)", FORBIDDEN_RETRY, exc
                    )
                    self._forbidden_until = time.monotonic() + FORBIDDEN_RETRY
                    return None
                self._used, self._at = gpus_by_node(pods), time.monotonic()
            return self._used

    def invalidate(self) -> None:
        self._at = -1e9


def gpus_by_node(pods: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """GPUs requested by the given (non-terminal) pods, per node."""
    out: dict[str, int] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            continue
        for c in (pod.get("spec") or {}).get("containers") or []:
            res = c.get("resources") or {}
            gpus = (res.get("limits") or {}).get(GPU_RESOURCE) or (res.get("requests") or {}).get(GPU_RESOURCE)
            if gpus:
                out[node] = out.get(node, 0) + int(gpus)
    return out
