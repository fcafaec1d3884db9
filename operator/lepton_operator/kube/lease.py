"""coordination.k8s.io/v1 Leases: read one, create it, replace it conditionally on its resourceVersion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .client import Kube, object_path

API_VERSION = "coordination.k8s.io/v1"


def micro_time(now: datetime) -> str:
    """metav1.MicroTime as the API server writes it."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says: who holds it, for how long, and its version (for a conditional replace)."""

    holder: str
    duration_seconds: int
    renew_time: str
    acquire_time: str
    transitions: int
    resource_version: str

    @classmethod
    def of(cls, body: dict[str, Any]) -> LeaseRecord:
        spec = body.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            renew_time=spec.get("renewTime") or "",
            acquire_time=spec.get("acquireTime") or "",
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str((body.get("metadata") or {}).get("resourceVersion") or ""),
        )


class Leases:
    """One Lease by namespace/name on the operator's client."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name

    async def get(self) -> LeaseRecord | None:
        body = await self.kube.get(API_VERSION, "leases", self.namespace, self.name)
        return None if body is None else LeaseRecord.of(body)

    def _body(self, holder: str, seconds: int, acquired: str, renewed: str, transitions: int) -> dict[str, Any]:
        spec = {
            "holderIdentity": holder or None,
            "leaseDurationSeconds": seconds,
            "acquireTime": acquired or None,
            "renewTime": renewed or None,
            "leaseTransitions": transitions,
        }
        meta = {"name": self.name, "namespace": self.namespace}
        return {"apiVersion": API_VERSION, "kind": "Lease", "metadata": meta, "spec": spec}

    async def create(self, holder: str, seconds: int, now: datetime) -> bool:
        """Create the Lease held by `holder`; False when someone created it first."""
        t = micro_time(now)
        body = self._body(holder, seconds, t, t, 0)
        code, _ = await self.kube.request(
            "POST", object_path(API_VERSION, "leases", self.namespace), json=body, ok=(409,), decode=False
        )
        return code != 409

    async def replace(self, old: LeaseRecord, holder: str, seconds: int, acquired: str, renewed: str) -> bool:
        """Write the Lease if it is still at `old`'s version; False when it moved meanwhile (409)."""
        transitions = old.transitions + (1 if holder and holder != old.holder else 0)
        body = self._body(holder, seconds, acquired, renewed, transitions)
        body["metadata"]["resourceVersion"] = old.resource_version
        path = object_path(API_VERSION, "leases", self.namespace, self.name)
        code, _ = await self.kube.request("PUT", path, json=body, ok=(409,), decode=False)
        return code != 409
