"""The workers' DNS: the EndpointSlices of a job's selector-less headless Service (builders/trainingjob.py).

They list the current epoch's live workers that have an address, at most SLICE_CAPACITY per slice and one
address family per slice, and are written only when that list changes: in a burst, once per job, when its
workers get their addresses. Addresses EndpointSlice validation refuses (loopback, link-local, multicast,
unspecified: kwok's simulated pods have loopback ones) get no record, so no write is refused.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from ..api.trainingjob import TrainingJob
from ..builders.names import slice_name
from ..builders.trainingjob import SLICE_CAPACITY, Endpoint, endpoint_slice
from .plan import Plan
from .views import PodView

#: What the informer saw: slice name -> the hash of its endpoints (an int per slice, not a copy of every
#: worker's name and address: the operator's memory at 10k pods, bench/scale.py).
Published = Mapping[str, int]
LIVE = ("Pending", "Running")
EMPTY = hash(())
#: An endpoint's hostname is a DNS label; our workers' names are (they are their pods' hostnames), a pod someone
#: else made with our labels may not be: it gets no record rather than a refused write.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def family(ip: str) -> int | None:
    """4 or 6 for an address an EndpointSlice may hold, None for one it may not (or not an address)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if addr.is_loopback or addr.is_link_local or addr.is_multicast or addr.is_unspecified:
        return None
    return addr.version


def wanted(pods: list[PodView], epoch: int, version: int) -> list[Endpoint]:
    """The epoch's live workers with an address of this family, by name."""
    live = [q for q in pods if q.epoch == epoch and q.phase in LIVE and not q.deleting and DNS_LABEL.fullmatch(q.name)]
    return [(q.name, q.ip, q.node) for q in sorted(live, key=lambda q: q.name) if q.ip and family(q.ip) == version]


def fingerprint(obj: dict[str, Any]) -> int:
    """What `publish` compares a slice the informer saw by: the hash of its endpoints in the form `wanted` makes
    them (anything malformed hashes as different, so the next pass rewrites it)."""
    found: list[Endpoint] = []
    for e in obj.get("endpoints") or []:
        addresses = e.get("addresses") or [""]
        found.append((str(e.get("hostname") or ""), str(addresses[0]), e.get("nodeName")))
    return hash(tuple(found))


def publish(job: TrainingJob, pods: list[PodView], epoch: int, published: Published, plan: Plan) -> None:
    """Create the slices that are missing and rewrite the ones whose endpoints changed; a slice no longer needed
    is emptied (the garbage collector deletes them all with the job)."""
    name, needed = job.metadata["name"], set()
    for version in (4, 6):
        endpoints = wanted(pods, epoch, version)
        for index, start in enumerate(range(0, len(endpoints), SLICE_CAPACITY)):
            chunk = tuple(endpoints[start : start + SLICE_CAPACITY])
            needed.add(sname := slice_name(name, index, version))
            if (current := published.get(sname)) is None:
                plan.create.append(endpoint_slice(job, index, version, chunk))
            elif current != hash(chunk):
                plan.endpoints[sname] = chunk
    for extra, current in published.items():
        if extra not in needed and current != EMPTY:
            plan.endpoints[extra] = ()
