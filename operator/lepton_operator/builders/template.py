"""Merge what the operator owns into spec.template (pure).

Which wins: the operator's own fields always (the API server refuses a template setting them); a flat field over
the template's same setting (command, args, env by name, cpu/memory by key, nodeSelector by key,
priorityClassName, schedulerName); the template over the operator's defaults (securityContext keys,
automountServiceAccountToken, enableServiceLinks, terminationGracePeriodSeconds, a /dev/shm mount of its own).
Lists are joined: tolerations, volumes, volumeMounts, ports, init containers and sidecars; the operator's node
affinity requirements are added to every required term of the template's.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from ..api.base import QUANTITY
from ..api.pod import Resources
from ..api.template import TRAINER

SHM_VOLUME = "dshm"
SHM_PATH = "/dev/shm"
_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
_PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"


def split(template: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A copy of the template as (metadata, pod spec without the trainer, the trainer container or {})."""
    tmpl = copy.deepcopy(dict(template or {}))
    spec = tmpl.get("spec") or {}
    containers = spec.get("containers") or []
    trainer: dict[str, Any] = next((c for c in containers if c.get("name") == TRAINER), {})
    spec["containers"] = [c for c in containers if c.get("name") != TRAINER]
    return tmpl.get("metadata") or {}, spec, trainer


def merge_env(ours: list[dict[str, Any]], template: list[dict[str, Any]], flat: list[dict[str, Any]]) -> list[Any]:
    """The contract, then the template's env, then the flat env (a flat name replaces the template's; a contract
    name in either, which only a CRD older than the operator lets through, is dropped: the later would win)."""
    contract = {e["name"] for e in ours}
    names = contract | {e["name"] for e in flat}
    return [
        *ours,
        *(e for e in template if e.get("name") not in names),
        *(e for e in flat if e["name"] not in contract),
    ]


def merge_resources(template: Mapping[str, Any] | None, ours: Mapping[str, Any]) -> dict[str, Any]:
    """The template's resources (e.g. rdma/hca, MIG) with the flat cpu/memory and the GPUs over them, by key."""
    out = copy.deepcopy(dict(template or {}))
    for part in ("limits", "requests"):
        if ours.get(part):
            out[part] = {**out.get(part, {}), **ours[part]}
    return out


def merge_affinity(template: Mapping[str, Any] | None, ours: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The template's affinity with the operator's node requirements in every required term, preferences added."""
    out = copy.deepcopy(dict(template or {}))
    node = (ours or {}).get("nodeAffinity") or {}
    if node:
        merged = out.setdefault("nodeAffinity", {})
        if required := node.get(_REQUIRED):
            exprs = required["nodeSelectorTerms"][0]["matchExpressions"]
            terms = (merged.get(_REQUIRED) or {}).get("nodeSelectorTerms") or []
            for term in terms:
                term["matchExpressions"] = [*term.get("matchExpressions", []), *exprs]
            if not terms:
                merged[_REQUIRED] = copy.deepcopy(required)
        if preferred := node.get(_PREFERRED):
            merged[_PREFERRED] = [*merged.get(_PREFERRED, []), *preferred]
    return out or None


def shm_volume(memory_limit: str | None) -> dict[str, Any]:
    """/dev/shm as memory (PyTorch DataLoader workers share tensors through it; a container gets 64 MiB),
    as large as the container's memory limit (it counts against it)."""
    source: dict[str, Any] = {"medium": "Memory"} | ({"sizeLimit": memory_limit} if memory_limit else {})
    return {"name": SHM_VOLUME, "emptyDir": source}


def add_shm(pod_spec: dict[str, Any], container: dict[str, Any]) -> None:
    """Mount /dev/shm unless the template's trainer mounts something there already (its own size wins)."""
    mounts = container.setdefault("volumeMounts", [])
    if any(m.get("mountPath") == SHM_PATH for m in mounts):
        return
    memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    pod_spec.setdefault("volumes", []).append(shm_volume(str(memory) if memory is not None else None))
    mounts.append({"name": SHM_VOLUME, "mountPath": SHM_PATH})


def pod_metadata(template: Mapping[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """The template's labels and annotations under the operator's name, namespace, labels and owner."""
    meta = dict(ours)
    meta["labels"] = {**(template.get("labels") or {}), **ours["labels"]}
    if annotations := template.get("annotations"):
        meta["annotations"] = dict(annotations)
    return meta


def trainer_resources(template: Mapping[str, Any] | None, flat: Resources | None) -> Resources | None:
    """The trainer's cpu and memory as cost accounting reads them: the flat field, else the template trainer's
    request (its limit when no request: what the API server defaults it to); a form pricing cannot read is left
    out rather than failing the pass."""
    resources = split(template)[2].get("resources") or {}
    picked: dict[str, str] = {}
    for key in ("cpu", "memory"):
        value = getattr(flat, key) if flat else None
        if value is None:
            raw = (resources.get("requests") or {}).get(key, (resources.get("limits") or {}).get(key))
            value = str(raw) if raw is not None and re.fullmatch(QUANTITY, str(raw)) else None
        if value is not None:
            picked[key] = value
    return Resources.model_validate(picked) if picked else None
