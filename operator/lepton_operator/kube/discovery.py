"""Whether the cluster serves the PodGroup API (scheduling.k8s.io/v1beta1, Kubernetes v1.37 with the
GenericWorkload feature): asked once, remembered for `ttl` seconds, so that a cluster upgraded (or a gate turned
on) later is noticed without a restart."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from ..constants import GangMode
from .errors import ApiError

log = logging.getLogger("lepton_operator.discovery")

GROUP_VERSION = "scheduling.k8s.io/v1beta1"
RESOURCE = "podgroups"
RETRY = 10.0  # seconds before asking again after a failed discovery


class Requester(Protocol):
    async def request(self, method: str, path: str, *, ok: tuple[int, ...] = ()) -> tuple[int, dict[str, object]]: ...


class GangDiscovery:
    """`mode()`: "podgroup" when PodGroups are served, "unserved" when not, "disabled" when the operator is told
    not to use them (LEPTON_GANG_SCHEDULING=off): then the API server is never asked."""

    def __init__(
        self, kube: Requester, enabled: bool = True, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.kube, self.enabled, self.ttl, self.clock = kube, enabled, ttl, clock
        self._mode: GangMode | None = None
        self._until = -1e9
        self._lock = asyncio.Lock()

    async def mode(self) -> GangMode:
        if not self.enabled:
            return "disabled"
        async with self._lock:
            if self._mode is None or self.clock() > self._until:
                mode, keep = await self._ask()
                if mode != self._mode:
                    log.info(
                        "gang scheduling: %s",
                        f"{GROUP_VERSION} {RESOURCE} served: every epoch's workers form one PodGroup"
                        if mode == "podgroup"
                        else f"{GROUP_VERSION} {RESOURCE} not served: workers are scheduled one by one",
                    )
                self._mode, self._until = mode, self.clock() + keep
            return self._mode

    async def _ask(self) -> tuple[GangMode, float]:
        """The mode and how long to keep it."""
        try:
            code, body = await self.kube.request("GET", f"/apis/{GROUP_VERSION}", ok=(404,))
        except ApiError as exc:  # e.g. 503 while an aggregated API is down: ask again at the next pass
            log.warning("discovery of %s failed (%s): workers are scheduled one by one for now", GROUP_VERSION, exc)
            return "unserved", RETRY
        resources = body.get("resources") if code != 404 else None
        names = {r.get("name") for r in resources if isinstance(r, dict)} if isinstance(resources, list) else set()
        return ("podgroup" if RESOURCE in names else "unserved"), self.ttl
