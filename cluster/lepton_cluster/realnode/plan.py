"""The plan of the real nodes: names, addresses, ports, folders and cgroups (pure, no I/O).

Address plan (RFC 2544 range 198.18.0.0/15):
198.19.0.0/16 is cut into 16 blocks of /20, one per cluster *slot* (`LEPTON_PORT_OFFSET // 1000`
by default, so a second cluster beside the first gets its own block). Within a slot's /20, node i
owns the i+1-th /24: the node's InternalIP is its .1 (on the node's own bridge) and its pods get
.2-.254. Every bridge of a slot is joined to one fabric bridge, so the /20 is one L2 segment: pods
reach pods on other nodes without the host forwarding anything (IPv4 forwarding stays off) and
pods get no route but the /20's connected one. Nothing is masqueraded; no iptables rule is made.
The slot's first /24 holds the fabric bridge's own address, .1: the cluster services of the pods
(DNS on :53, the API server on :443) listen there, and nowhere else off loopback.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

#: 16 slots of /20 in here, one per cluster running beside another on the same machine.
SUPERNET = ipaddress.IPv4Network("198.19.0.0/16")
SLOTS = 16
MAX_NODES = 15
NODE_NAME_PREFIX = "real-node-"
#: Label and taint on every real node: pods opt in with a toleration (and a nodeSelector).
RUNTIME_LABEL = "lepton.ai/runtime"
RUNTIME_VALUE = "container"
RUNTIME_TOLERATION = {"key": RUNTIME_LABEL, "operator": "Equal", "value": RUNTIME_VALUE, "effect": "NoSchedule"}
#: Base ports (plus the cluster's port offset, plus the node index).
KUBELET_PORT = 12250
KUBELET_HEALTHZ_PORT = 12350
STREAM_PORT = 12450
#: CoreDNS's readiness endpoint on 127.0.0.1 (plus the port offset).
DNS_READY_PORT = 12550
#: On the fabric address: cluster DNS, and the relay to the API server (the pods' `kubernetes`).
DNS_PORT = 53
API_PORT = 443
CLUSTER_DOMAIN = "cluster.local"
#: The folder (under realnodes/) and cgroup suffix of the cluster services.
SERVICES = "services"
#: Local images imported into every node's containerd (built from Debian's busybox-static).
PAUSE_IMAGE = "localhost/lepton-pause:busybox-1.35"
BUSYBOX_IMAGE = "localhost/busybox:1.35"


@dataclass(frozen=True)
class RealNode:
    """One real node: a containerd and a kubelet of its own, a bridge, a pod range, a cgroup root."""

    index: int
    slot: int
    name: str
    dir: Path
    node_ip: str
    #: the slot's /20: the pods' on-link network
    fabric_cidr: str
    #: this node's /24 (node IP .1, pods .2-.254)
    node_cidr: str
    kubelet_port: int
    healthz_port: int
    stream_port: int

    # -- host-wide names (unique per slot and node) --------------------------------------
    @property
    def bridge(self) -> str:
        return f"lep{self.slot}n{self.index}"

    @property
    def uplink(self) -> str:
        """The veth end on the node's bridge; its peer `downlink` is on the fabric bridge."""
        return f"lep{self.slot}u{self.index}"

    @property
    def downlink(self) -> str:
        return f"lep{self.slot}d{self.index}"

    @property
    def cgroup_root(self) -> str:
        """The node's cgroup (in every v1 hierarchy): kubelet's cgroupRoot holds `kubepods`."""
        return f"/lepton-{self.slot}-{self.name}"

    @property
    def runtime_cgroup(self) -> str:
        """containerd and its shims (children of the root, beside `kubepods`)."""
        return f"{self.cgroup_root}/runtime"

    @property
    def network_name(self) -> str:
        """The CNI network name (also names host-local's and libcni's state files)."""
        return f"lepton-{self.slot}-{self.name}"

    @property
    def service_ip(self) -> str:
        """The fabric bridge's address: cluster DNS and the API server for this node's pods."""
        return fabric_ip(self.slot)

    @property
    def pod_range(self) -> tuple[str, str]:
        net = ipaddress.IPv4Network(self.node_cidr)
        return str(net.network_address + 2), str(net.broadcast_address - 1)

    # -- folders -------------------------------------------------------------------------
    @property
    def containerd_root(self) -> Path:
        return self.dir / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.dir / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.dir / "containerd.toml"

    @property
    def kubelet_root(self) -> Path:
        return self.dir / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.dir / "kubelet.yaml"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubelet.kubeconfig"

    @property
    def cni_conf_dir(self) -> Path:
        return self.dir / "cni" / "net.d"

    @property
    def ipam_dir(self) -> Path:
        return self.dir / "cni" / "ipam"

    @property
    def pod_logs_dir(self) -> Path:
        return self.dir / "pod-logs"

    @property
    def cert_name(self) -> str:
        """Base name of the node's certificates in the cluster's pki folder."""
        return f"kubelet-{self.name}"


def slot_for_offset(port_offset: int) -> int:
    return (port_offset // 1000) % SLOTS


def slot_network(slot: int) -> ipaddress.IPv4Network:
    if not 0 <= slot < SLOTS:
        raise ValueError(f"real-node slot {slot} is outside 0..{SLOTS - 1}")
    return list(SUPERNET.subnets(new_prefix=20))[slot]


def fabric_ip(slot: int) -> str:
    """The fabric bridge's address: .1 of the slot's first /24 (no node uses that /24)."""
    return str(slot_network(slot).network_address + 1)


def plan_nodes(count: int, *, slot: int, port_offset: int, run_dir: Path) -> list[RealNode]:
    """The real nodes of one cluster."""
    if not 0 <= count <= MAX_NODES:
        raise ValueError(f"{count} real nodes: 0..{MAX_NODES} fit in a slot")
    fabric = slot_network(slot)
    blocks = list(fabric.subnets(new_prefix=24))
    nodes = []
    for i in range(count):
        block = blocks[i + 1]
        name = f"{NODE_NAME_PREFIX}{i}"
        nodes.append(
            RealNode(
                index=i,
                slot=slot,
                name=name,
                dir=run_dir / "realnodes" / name,
                node_ip=str(block.network_address + 1),
                fabric_cidr=str(fabric),
                node_cidr=str(block),
                kubelet_port=KUBELET_PORT + port_offset + i,
                healthz_port=KUBELET_HEALTHZ_PORT + port_offset + i,
                stream_port=STREAM_PORT + port_offset + i,
            )
        )
    return nodes


def fabric_bridge(slot: int) -> str:
    """The bridge joining every node bridge of a slot (its address: `fabric_ip`; no uplink)."""
    return f"lep{slot}f"


def ports(nodes: list[RealNode]) -> dict[str, int]:
    """Every TCP port the real nodes and their services listen on, by what listens."""
    out: dict[str, int] = {"coredns ready": DNS_READY_PORT + nodes[0].kubelet_port - KUBELET_PORT} if nodes else {}
    for n in nodes:
        out[f"kubelet {n.name}"] = n.kubelet_port
        out[f"kubelet healthz {n.name}"] = n.healthz_port
        out[f"containerd streaming {n.name}"] = n.stream_port
    return out
