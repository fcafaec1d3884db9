"""The Node and Lease objects of the agent (pure: rendered from settings, capacity and the time)."""

from __future__ import annotations

from typing import Any

from ..config import GPU_RESOURCE
from .settings import RUNTIME_LABEL, RUNTIME_TAINT, RUNTIME_VALUE, AgentSettings

LEASE_NAMESPACE = "kube-node-lease"
REASONS = {
    "MemoryPressure": "KubeletHasSufficientMemory",
    "DiskPressure": "KubeletHasNoDiskPressure",
    "PIDPressure": "KubeletHasSufficientPID",
}


def capacity(cpus: int, memory: int, gpus: int, pods: int = 110) -> dict[str, str]:
    return {
        "cpu": str(cpus),
        "memory": f"{memory // 1024}Ki",
        "pods": str(pods),
        "ephemeral-storage": "100Gi",
        GPU_RESOURCE: str(gpus),
    }


def ready_condition(now: str, transition: str) -> dict[str, str]:
    return {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "lepton process node agent is posting ready status",
        "lastHeartbeatTime": now,
        "lastTransitionTime": transition,
    }


def pressure_conditions(now: str, transition: str) -> list[dict[str, str]]:
    return [
        {
            "type": t,
            "status": "False",
            "reason": REASONS[t],
            "message": "",
            "lastHeartbeatTime": now,
            "lastTransitionTime": transition,
        }
        for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
    ]


def node_status(s: AgentSettings, resources: dict[str, str], now: str, transition: str, kernel: str) -> dict[str, Any]:
    return {
        "capacity": dict(resources),
        "allocatable": dict(resources),
        "conditions": [*pressure_conditions(now, transition), ready_condition(now, transition)],
        "addresses": [{"type": "InternalIP", "address": s.node_ip}, {"type": "Hostname", "address": s.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": s.kubelet_port}},
        "nodeInfo": {
            "architecture": "amd64",
            "operatingSystem": "linux",
            "kubeletVersion": "lepton-procnode",
            "containerRuntimeVersion": "process://lepton-procnode",
            "kernelVersion": kernel,
            "osImage": "host processes",
            "kubeProxyVersion": "",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
    }


def node_manifest(s: AgentSettings, resources: dict[str, str], now: str, kernel: str) -> dict[str, Any]:
    """The Node: our runtime label (never kwok's), the pod range, and Ready status from the start."""
    labels = {
        "kubernetes.io/hostname": s.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        RUNTIME_LABEL: RUNTIME_VALUE,
        "nvidia.com/gpu.present": "true" if resources.get(GPU_RESOURCE, "0") != "0" else "false",
        "nvidia.com/gpu.count": resources.get(GPU_RESOURCE, "0"),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": s.name, "labels": labels},
        "spec": {
            "podCIDR": s.pod_cidr,
            "podCIDRs": [s.pod_cidr],
            "taints": [dict(RUNTIME_TAINT)] if s.taint else [],
        },
        "status": node_status(s, resources, now, now, kernel),
    }


def lease_manifest(s: AgentSettings, now_micro: str) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": s.name, "namespace": LEASE_NAMESPACE},
        "spec": {"holderIdentity": s.name, "leaseDurationSeconds": s.lease_seconds, "renewTime": now_micro},
    }
