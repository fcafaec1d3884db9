"""The agent's settings and the names it owns on this machine (bridge, namespaces, state folder)."""

from __future__ import annotations

import hashlib
import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import REPO_ROOT

RUNTIME_LABEL = "lepton.ai/runtime"
RUNTIME_VALUE = "process"
#: Pods opt in to the process node: they need this toleration (and usually a nodeSelector on the label).
RUNTIME_TAINT = {"key": RUNTIME_LABEL, "value": RUNTIME_VALUE, "effect": "NoSchedule"}
RUNTIME_TOLERATION = {"key": RUNTIME_LABEL, "operator": "Equal", "value": RUNTIME_VALUE, "effect": "NoSchedule"}

#: RFC 2544 benchmarking range (198.18.0.0/15): never used by a production network. The agent puts one
#: /24 of it on a bridge of its own and refuses to start when the machine already routes any of it.
DEFAULT_POD_CIDR = "198.18.0.0/24"
#: The node's address for the API server (kubelet API for `kubectl logs`): loopback, next to kwok's 127.8.x.
DEFAULT_NODE_IP = "127.9.0.1"
DEFAULT_KUBELET_PORT = 10250


@dataclass(frozen=True)
class AgentSettings:
    name: str
    kubeconfig: Path
    state_dir: Path
    pod_cidr: str = DEFAULT_POD_CIDR
    node_ip: str = DEFAULT_NODE_IP
    kubelet_port: int = DEFAULT_KUBELET_PORT
    taint: bool = True
    #: bin/ of the Python environment whose software stands in for every image
    python_bin: Path = Path(sys.executable).parent
    lease_seconds: int = 40
    lease_renew_interval: float = 10.0
    status_interval: float = 30.0
    poll_interval: float = 0.2

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.pod_cidr)

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The bridge's own address: the host side of every pod's veth."""
        return self.network.network_address + 1

    @property
    def tag(self) -> str:
        """A short, stable id of this agent (name + state folder) used in interface and namespace names."""
        return hashlib.sha1(f"{self.name}\0{self.state_dir}".encode()).hexdigest()[:4]

    @property
    def bridge(self) -> str:
        return f"lpbr-{self.tag}"  # <= 15 characters (IFNAMSIZ)

    @property
    def netns_prefix(self) -> str:
        return f"lp-{self.tag}-"

    @property
    def pods_dir(self) -> Path:
        return self.state_dir / "pods"

    @property
    def claims_dir(self) -> Path:
        """PersistentVolumeClaims become folders here, shared by the pods that use them and kept."""
        return self.state_dir / "claims"


def default_state_dir(cluster_run_dir: Path, name: str) -> Path:
    """`run/procnode/<cluster folder>-<name>`: beside the cluster's folder (which `up` renews), one per cluster."""
    return cluster_run_dir.parent / "procnode" / f"{cluster_run_dir.name}-{name}"


def default_kubeconfig() -> Path:
    return REPO_ROOT / "run" / "cluster" / "admin.kubeconfig"
