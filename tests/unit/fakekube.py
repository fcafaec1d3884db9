"""A fake of kube.client.Kube for controller tests: stores what is written, records calls, fails on demand."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from lepton_operator.config import OperatorConfig
from lepton_operator.handlers.trainingjob import TrainingJobController
from lepton_operator.kube.errors import Conflict
from lepton_operator.reconcile.views import PodView

Fault = Callable[[str, dict[str, Any]], Exception | None]  # (verb, object or patch) -> an error to raise, or None


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, written independently of the operator's own diff."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply_merge_patch(out.get(key), value)
    return out


class FakeKube:
    """Jobs by (namespace, name); every call in `calls`; `fault` decides which calls fail."""

    def __init__(self, fault: Fault | None = None) -> None:
        self.stored: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []  # (verb, name or event reason)
        self.patches: list[dict[str, Any]] = []
        self.fault: Fault = fault or (lambda verb, obj: None)
        self.progress: dict[str, Any] | bytes | None = None
        self.pods: dict[str, dict[str, Any]] = {}  # pods that exist, by name
        self.created: dict[tuple[str, str], dict[str, Any]] = {}  # every object created, by (kind, name)
        self.patched: dict[tuple[str, str], list[dict[str, Any]]] = {}  # merge patches of objects, by (plural, name)
        self.discovery: dict[str, dict[str, Any]] = {}  # GET /apis/<group>/<version> answers by path; else 404

    def _check(self, verb: str, obj: dict[str, Any]) -> None:
        if (error := self.fault(verb, obj)) is not None:
            raise error

    async def create(self, obj: dict[str, Any]) -> bool:
        name = obj["reason"] if obj["kind"] == "Event" else obj["metadata"]["name"]
        self.calls.append((f"create {obj['kind']}", name))
        self._check("create", obj)
        if obj["kind"] == "Pod":
            self.pods[name] = copy.deepcopy(obj)
        self.created[(obj["kind"], name)] = copy.deepcopy(obj)
        return True

    async def patch(
        self, api_version: str, plural: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        self.calls.append((f"patch {plural}", name))
        self._check("patch", patch)
        self.patched.setdefault((plural, name), []).append(copy.deepcopy(patch))
        return {}

    async def delete(self, api_version: str, plural: str, namespace: str, name: str, **opts: Any) -> bool:
        self.calls.append((f"delete {plural}", name))
        self._check("delete", {"metadata": {"name": name}})
        if plural == "pods":
            self.pods.pop(name, None)
        return True

    async def patch_status(
        self,
        api_version: str,
        plural: str,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        """A merge patch of .status, refused (409) when `resource_version` is given and not the stored one."""
        self.calls.append(("patch status", name))
        self.patches.append(patch)
        self._check("patch status", patch)
        body = self.stored[(namespace, name)]
        if resource_version is not None and resource_version != body["metadata"]["resourceVersion"]:
            raise Conflict(409, "PATCH", name, '{"message": "the object has been modified"}')
        updated = apply_merge_patch(body, {"status": patch})
        updated["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 1)
        self.stored[(namespace, name)] = updated
        return copy.deepcopy(updated)

    async def request(self, method: str, path: str, *, ok: tuple[int, ...] = ()) -> tuple[int, dict[str, Any]]:
        """Discovery only: the document in `discovery`, else 404 (an API group the cluster does not serve)."""
        self.calls.append((method, path))
        return (200, copy.deepcopy(self.discovery[path])) if path in self.discovery else (404, {})

    async def fetch_json(self, url: str, seconds: float = 1.0) -> dict[str, Any] | None:
        return self.progress if isinstance(self.progress, dict) else None

    async def list(self, api_version: str, plural: str, namespace: str | None = None, **params: str) -> list[Any]:
        return []


def controller(
    kube: FakeKube, body: dict[str, Any], pods: list[PodView] | None = None, service: bool = True
) -> TrainingJobController:
    """A TrainingJob controller whose indexes hold `body` (stored in `kube` too) and `pods`."""
    ctl = TrainingJobController(kube, OperatorConfig())  # type: ignore[arg-type]
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    kube.stored[key] = copy.deepcopy(body)
    ctl.idx.jobs.put(key, meta["name"], body)
    for view in pods or []:
        ctl.idx.pods.put(key, view.name, view)
    if service:
        ctl.idx.services.put(key, meta["name"], meta["name"])
    return ctl
