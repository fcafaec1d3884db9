"""Node-wide bookkeeping shared by the pod workers: addresses, GPUs, /etc/hosts files, volume files."""

from __future__ import annotations

import base64
import ipaddress
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .hostsfile import PodAddress, render_hosts, write_in_place
from .kubeapi import KubeApi
from .podspec import PodSpecError, VolumeSource, field_value


class Ipam:
    """Addresses of the pod range (gateway excluded), handed out round-robin so a freed one rests a while."""

    def __init__(self, network: ipaddress.IPv4Network, gateway: ipaddress.IPv4Address) -> None:
        self.pool = [str(a) for a in network.hosts() if a != gateway]
        self.owner: dict[str, str] = {}
        self.next = 0
        self.lock = threading.Lock()

    def adopt(self, uid: str, address: str) -> None:
        with self.lock:
            self.owner[address] = uid

    def allocate(self, uid: str) -> str:
        with self.lock:
            for address, owner in self.owner.items():
                if owner == uid:
                    return address
            for i in range(len(self.pool)):
                address = self.pool[(self.next + i) % len(self.pool)]
                if address not in self.owner:
                    self.owner[address] = uid
                    self.next = (self.next + i + 1) % len(self.pool)
                    return address
        raise RuntimeError("the pod address range is exhausted")

    def release(self, uid: str) -> None:
        with self.lock:
            for address in [a for a, o in self.owner.items() if o == uid]:
                del self.owner[address]


class GpuAllocator:
    def __init__(self, indices: list[int]) -> None:
        self.free = list(indices)
        self.held: dict[str, list[int]] = {}
        self.lock = threading.Lock()

    def adopt(self, uid: str, gpus: list[int]) -> None:
        with self.lock:
            self.held[uid] = list(gpus)
            self.free = [g for g in self.free if g not in gpus]

    def allocate(self, uid: str, count: int) -> list[int]:
        with self.lock:
            if uid in self.held:
                return self.held[uid]
            if count > len(self.free):
                raise RuntimeError(f"{count} GPUs requested, {len(self.free)} free")
            self.held[uid], self.free = self.free[:count], self.free[count:]
            return self.held[uid]

    def release(self, uid: str) -> None:
        with self.lock:
            self.free = sorted(self.free + self.held.pop(uid, []))


class HostsRegistry:
    """The addresses of the node's live pods; every change rewrites every pod's hosts file."""

    def __init__(self) -> None:
        self.pods: dict[str, tuple[PodAddress, Path]] = {}
        self.lock = threading.Lock()

    def register(self, uid: str, address: PodAddress, path: Path) -> None:
        with self.lock:
            if self.pods.get(uid) == (address, path) and path.exists() and path.stat().st_size:
                return
            self.pods[uid] = (address, path)
            self._rewrite()

    def unregister(self, uid: str) -> None:
        with self.lock:
            if self.pods.pop(uid, None) is not None:
                self._rewrite()

    def _rewrite(self) -> None:
        everyone = [a for a, _ in self.pods.values()]
        for own, path in self.pods.values():
            if path.parent.exists():
                write_in_place(path, render_hosts(own, everyone))


class VolumeFiles:
    """configMap, secret, downwardAPI and projected volumes written as files (once, at container start)."""

    def __init__(self, api: KubeApi, node_ip: str) -> None:
        self.api, self.node_ip = api, node_ip

    def _object_data(self, namespace: str, kind: str, name: str) -> dict[str, bytes]:
        path = f"/api/v1/namespaces/{namespace}/{'configmaps' if kind == 'configMap' else 'secrets'}/{name}"
        obj = self.api.get(path)
        out = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
        if kind == "secret":
            out = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return out

    def _write(self, target: Path, data: Mapping[str, bytes], items: list[dict[str, Any]] | None) -> None:
        chosen = {i["key"]: i["path"] for i in items} if items else {k: k for k in data}
        for key, rel in chosen.items():
            if key not in data:
                raise PodSpecError(f"key {key!r} is missing")
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data[key])

    def _downward(self, target: Path, pod: Mapping[str, Any], items: list[dict[str, Any]], ip: str) -> None:
        for item in items:
            if "fieldRef" not in item:
                raise PodSpecError("downwardAPI: only fieldRef items are supported")
            dest = target / item["path"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(field_value(pod, item["fieldRef"]["fieldPath"], {"podIP": ip, "hostIP": self.node_ip}))

    def populate(self, namespace: str, pod: Mapping[str, Any], vol: VolumeSource, target: Path, ip: str = "") -> None:
        sources: list[tuple[str, Mapping[str, Any]]]
        if vol.kind == "projected":
            sources = [(k, v) for s in vol.spec.get("sources") or [] for k, v in s.items()]
        else:
            sources = [(vol.kind, vol.spec)]
        for kind, spec in sources:
            if kind in ("configMap", "secret"):
                name = spec.get("name") or spec.get("secretName") or ""
                self._write(target, self._object_data(namespace, kind, name), spec.get("items"))
            elif kind == "downwardAPI":
                self._downward(target, pod, spec.get("items") or [], ip)
            else:
                raise PodSpecError(f"projected source {kind!r} is not supported")
