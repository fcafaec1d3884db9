"""Reads of Kueue's cluster objects a queued TrainingJob needs (docs/kueue.md): the node labels and tolerations
of an admitted ResourceFlavor (what jobframework's RunWithPodSetsInfo injects), and the value of a
WorkloadPriorityClass (what ExtractPriority puts in a new Workload's spec.priority). Cached for a minute."""

from __future__ import annotations

import logging
import time
from typing import Any

from ..constants import KUEUE_API
from .client import Kube
from .errors import ApiError

log = logging.getLogger("lepton_operator.kueue")
TTL = 60.0  # seconds a flavor or priority class is remembered


class KueueObjects:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._cache: dict[tuple[str, str], tuple[float, dict[str, Any] | None]] = {}

    async def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        hit = self._cache.get((plural, name))
        if hit is not None and time.monotonic() - hit[0] < TTL:
            return hit[1]
        try:
            obj = await self.kube.get(KUEUE_API, plural, None, name)
        except ApiError as exc:  # e.g. 403 without the chart's kueue RBAC: nothing injected, said once a minute
            log.warning("cannot read %s %s: %s", plural, name, exc)
            obj = None
        self._cache[(plural, name)] = (time.monotonic(), obj)
        return obj

    async def flavor(self, name: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """A ResourceFlavor's spec.nodeLabels and spec.tolerations (empty when it is gone or unreadable)."""
        spec = ((await self._get("resourceflavors", name)) or {}).get("spec") or {}
        return dict(spec.get("nodeLabels") or {}), list(spec.get("tolerations") or [])

    async def priority(self, name: str) -> int | None:
        """A WorkloadPriorityClass's value, or None when it does not exist."""
        obj = await self._get("workloadpriorityclasses", name)
        value = obj.get("value") if obj else None
        return int(value) if isinstance(value, int) else None
