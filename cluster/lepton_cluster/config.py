"""Configuration of the local control plane and the pure renderers built from it.

Nothing here starts a process or talks to the API server: node manifests, kwok stages,
the scheduler's configuration, kubeconfigs and the port check are plain functions so that
unit tests can pin them down without a cluster.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .realnode.plan import RealNode, plan_nodes, slot_for_offset
from .realnode.plan import ports as real_ports

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Label (and value) that tells kwok which nodes it manages. `set_node_not_ready` flips the value.
KWOK_MANAGED_LABEL = "kwok.x-k8s.io/node"
KWOK_MANAGED_VALUE = "fake"
KWOK_UNMANAGED_VALUE = "unmanaged"
#: Annotation carrying a node's index: its IP and pod CIDR are derived from it.
NODE_INDEX_ANNOTATION = "lepton.ai/node-index"
NODE_NAME_PREFIX = "gpu-node-"

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"
SPOT_TAINT_KEY = "lepton.ai/spot"

#: Loopback ranges: nothing the cluster advertises ever points off this machine.
NODE_IP_BASE = ipaddress.IPv4Address("127.8.0.0")  # node i -> 127.8.0.0 + i + 1
POD_CIDR_SUPERNET = ipaddress.IPv4Network("127.128.0.0/10")  # node i -> i-th /24 in here
KWOK_FALLBACK_CIDR = "127.127.0.1/24"  # pods on a node without spec.podCIDR (never ours)
SERVICE_CIDR = "127.96.0.0/16"

GANG_GATES = ("GenericWorkload", "TopologyAwareWorkloadScheduling")
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
TOOLS = (*COMPONENTS, "kubectl", "helm")


@dataclass(frozen=True)
class GpuType:
    """One simulated GPU model and the instance type that carries eight of them."""

    product: str
    instance_type: str
    memory_mib: int


H100 = GpuType("NVIDIA-H100-80GB-HBM3", "p5.48xlarge", 81559)
A100 = GpuType("NVIDIA-A100-SXM4-80GB", "p4de.24xlarge", 81920)
ZONES = ("local-a", "local-b")


@dataclass(frozen=True)
class Ports:
    etcd: int = 2379
    etcd_peer: int = 2380
    apiserver: int = 6443
    scheduler: int = 10259
    controller_manager: int = 10257
    kwok: int = 10247

    def offset(self, by: int) -> Ports:
        return Ports(*(getattr(self, name) + by for name in self.__dataclass_fields__))

    def by_component(self) -> dict[str, int]:
        return {
            "etcd (client)": self.etcd,
            "etcd (peer)": self.etcd_peer,
            "kube-apiserver": self.apiserver,
            "kube-scheduler": self.scheduler,
            "kube-controller-manager": self.controller_manager,
            "kwok": self.kwok,
        }


@dataclass(frozen=True)
class NodePool:
    """The simulated GPU nodes made at start-up."""

    count: int = 8
    gpus_per_node: int = 8
    cpu: str = "96"
    memory: str = "1024Gi"
    pods: int = 110
    #: every `spot_every`-th node (1-based) is a spot node; 0 = none
    spot_every: int = 4


@dataclass(frozen=True)
class ClusterConfig:
    run_dir: Path = REPO_ROOT / "run" / "cluster"
    #: built binaries, keyed by version: outside the clone, shared by every clone
    cache_dir: Path = Path.home() / ".cache" / "lepton-operator"
    ports: Ports = field(default_factory=Ports)
    nodes: NodePool = field(default_factory=NodePool)
    service_cidr: str = SERVICE_CIDR
    #: seconds allowed from process start to "all ready"
    start_timeout: float = 120.0
    #: serve /debug/pprof on the apiserver, scheduler and controller-manager (LEPTON_PROFILING=1)
    profiling: bool = False
    #: LEPTON_PORT_OFFSET: already added to `ports`; real nodes add it to their own ports
    port_offset: int = 0
    #: nodes with a real kubelet and containerd (LEPTON_REAL_NODES; 0 = none)
    real_nodes: int = 2
    #: the real nodes' /20 of 198.19.0.0/16 (LEPTON_REAL_NODE_SLOT; default: port offset // 1000)
    real_node_slot: int | None = None
    #: run the controller-manager's EndpointSlice controller (LEPTON_ENDPOINTSLICES=0/1); None: when there
    #: are real nodes, whose pods' cluster DNS answers from EndpointSlices (kwok pods only make it retry)
    endpointslices: bool | None = None
    #: start Kueue (docs/kueue.md) with the control plane (LEPTON_KUEUE=0/1)
    kueue: bool = False
    #: serve the scheduling.k8s.io/v1beta1 Workload/PodGroup API and gang-schedule PodGroups (LEPTON_GANG=0/1)
    gang: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ClusterConfig:
        """Defaults, then `LEPTON_*` variables, then explicit overrides (None = keep)."""
        env = os.environ if env is None else env
        cfg = cls()
        if "LEPTON_RUN_DIR" in env:
            cfg = replace(cfg, run_dir=Path(env["LEPTON_RUN_DIR"]).resolve())
        if "LEPTON_CACHE_DIR" in env:
            cfg = replace(cfg, cache_dir=Path(env["LEPTON_CACHE_DIR"]).resolve())
        if env.get("LEPTON_PORT_OFFSET"):
            offset = int(env["LEPTON_PORT_OFFSET"])
            cfg = replace(cfg, ports=cfg.ports.offset(offset), port_offset=offset)
        if env.get("LEPTON_REAL_NODES"):
            cfg = replace(cfg, real_nodes=int(env["LEPTON_REAL_NODES"]))
        if env.get("LEPTON_REAL_NODE_SLOT"):
            cfg = replace(cfg, real_node_slot=int(env["LEPTON_REAL_NODE_SLOT"]))
        pool = cfg.nodes
        if env.get("LEPTON_NODES"):
            pool = replace(pool, count=int(env["LEPTON_NODES"]))
        if env.get("LEPTON_GPUS_PER_NODE"):
            pool = replace(pool, gpus_per_node=int(env["LEPTON_GPUS_PER_NODE"]))
        if env.get("LEPTON_SPOT_EVERY"):
            pool = replace(pool, spot_every=int(env["LEPTON_SPOT_EVERY"]))
        if env.get("LEPTON_ENDPOINTSLICES"):
            cfg = replace(cfg, endpointslices=env["LEPTON_ENDPOINTSLICES"] not in ("0", "false"))
        if env.get("LEPTON_GANG"):
            cfg = replace(cfg, gang=env["LEPTON_GANG"] not in ("0", "false"))
        if env.get("LEPTON_KUEUE"):
            cfg = replace(cfg, kueue=env["LEPTON_KUEUE"] not in ("0", "false"))
        if env.get("LEPTON_PROFILING"):
            cfg = replace(cfg, profiling=env["LEPTON_PROFILING"] not in ("0", "false"))
        cfg = replace(cfg, nodes=pool)
        node_overrides = {k: overrides.pop(k) for k in ("count", "gpus_per_node", "spot_every") if k in overrides}
        node_overrides = {k: v for k, v in node_overrides.items() if v is not None}
        if node_overrides:
            cfg = replace(cfg, nodes=replace(cfg.nodes, **node_overrides))
        overrides = {k: v for k, v in overrides.items() if v is not None}
        return replace(cfg, **overrides) if overrides else cfg

    # -- paths -----------------------------------------------------------------------------
    @property
    def pki_dir(self) -> Path:
        return self.run_dir / "pki"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def pid_dir(self) -> Path:
        return self.run_dir / "pids"

    @property
    def etcd_dir(self) -> Path:
        return self.run_dir / "etcd"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.run_dir / "admin.kubeconfig"

    def kubeconfig_for(self, identity: str) -> Path:
        return self.run_dir / f"{identity}.kubeconfig"

    @property
    def bin_dir(self) -> Path:
        return self.cache_dir / "bin" / "current"

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def slot(self) -> int:
        return slot_for_offset(self.port_offset) if self.real_node_slot is None else self.real_node_slot

    @property
    def endpointslice_controller(self) -> bool:
        return self.real_nodes > 0 if self.endpointslices is None else self.endpointslices

    def feature_gates(self, component: str) -> list[str]:
        """`--feature-gates` (and the apiserver's `--runtime-config`) for gang scheduling (see docs/cluster.md):
        GenericWorkload (beta, off by default) serves Workload/PodGroup, adds the scheduler's GangScheduling plugin
        and the controller-manager's podgroup-protection controller; TopologyAwareWorkloadScheduling (alpha) keeps
        a PodGroup's schedulingConstraints.topology and adds the scheduler's topology placement plugins."""
        if not self.gang:
            return []
        gates = GANG_GATES if component != "kube-controller-manager" else GANG_GATES[:1]
        flags = [f"--feature-gates={','.join(f'{g}=true' for g in gates)}"]
        if component == "kube-apiserver":
            flags.append("--runtime-config=scheduling.k8s.io/v1beta1=true")
        return flags

    def real_node_plan(self) -> list[RealNode]:
        """The real nodes (kubelet + containerd) of this cluster; see realnode/plan.py."""
        return plan_nodes(self.real_nodes, slot=self.slot, port_offset=self.port_offset, run_dir=self.run_dir)


# -- nodes ---------------------------------------------------------------------------------
def node_name(index: int) -> str:
    return f"{NODE_NAME_PREFIX}{index:02d}"


def node_ip(index: int) -> str:
    return str(NODE_IP_BASE + index + 1)


def node_pod_cidr(index: int) -> str:
    if index < 0 or index >= POD_CIDR_SUPERNET.num_addresses // 256:
        raise ValueError(f"node index {index} is outside the pod CIDR range {POD_CIDR_SUPERNET}")
    return f"{POD_CIDR_SUPERNET.network_address + index * 256}/24"


def node_manifest(
    index: int,
    *,
    pool: NodePool,
    gpu: GpuType,
    spot: bool,
    zone: str | None = None,
    name: str | None = None,
    extra_labels: Mapping[str, str] | None = None,
    extra_taints: list[dict[str, str]] | None = None,
    gpus: int | None = None,
) -> dict[str, Any]:
    """A Node object for kwok to manage, with GPU capacity, labels, taints and loopback addresses."""
    name = name or node_name(index)
    gpus = pool.gpus_per_node if gpus is None else gpus
    capacity_type = "spot" if spot else "on-demand"
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        KWOK_MANAGED_LABEL: KWOK_MANAGED_VALUE,
        "node.kubernetes.io/instance-type": gpu.instance_type,
        "topology.kubernetes.io/zone": zone or ZONES[index % len(ZONES)],
        "topology.kubernetes.io/region": "local",
        "lepton.ai/capacity-type": capacity_type,
        "karpenter.sh/capacity-type": capacity_type,
        "nvidia.com/gpu.present": "true" if gpus else "false",
        "nvidia.com/gpu.product": gpu.product,
        "nvidia.com/gpu.count": str(gpus),
        "nvidia.com/gpu.memory": str(gpu.memory_mib),
    }
    labels.update(extra_labels or {})
    taints: list[dict[str, str]] = []
    if gpus:
        taints.append({"key": GPU_TAINT_KEY, "value": "present", "effect": "NoSchedule"})
    if spot:
        taints.append({"key": SPOT_TAINT_KEY, "value": "true", "effect": "NoSchedule"})
    taints.extend(extra_taints or [])
    resources = {
        "cpu": pool.cpu,
        "memory": pool.memory,
        "pods": str(pool.pods),
        "ephemeral-storage": "2Ti",
        GPU_RESOURCE: str(gpus),
    }
    cidr = node_pod_cidr(index)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "kwok.x-k8s.io/node": "fake",
                NODE_INDEX_ANNOTATION: str(index),
            },
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr], "taints": taints},
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "addresses": [
                {"type": "InternalIP", "address": node_ip(index)},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "kwok",
                "containerRuntimeVersion": "kwok",
                "kernelVersion": "kwok",
                "osImage": "kwok",
                "kubeProxyVersion": "kwok",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


def default_nodes(pool: NodePool) -> list[dict[str, Any]]:
    """The start-up pool: half H100, half A100, every `spot_every`-th node of each half spot."""
    half = (pool.count + 1) // 2
    out = []
    for i in range(pool.count):
        gpu, pos = (H100, i) if i < half else (A100, i - half)
        spot = pool.spot_every > 0 and (pos + 1) % pool.spot_every == 0
        out.append(node_manifest(i, pool=pool, gpu=gpu, spot=spot))
    return out


# -- kwok ----------------------------------------------------------------------------------
_POD_READY_STATUS = """\
{{ $now := Now }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: PodReadyToStartContainers
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: ContainersReady
{{ range .spec.readinessGates }}
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: {{ .conditionType | Quote }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  imageID: {{ printf "kwok://%s" .image | Quote }}
  containerID: {{ printf "kwok://%s" .name | Quote }}
  name: {{ .name | Quote }}
  ready: true
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- image: {{ .image | Quote }}
  imageID: {{ printf "kwok://%s" .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  restartCount: 0
  {{ if eq .restartPolicy "Always" }}
  started: true
  state:
    running:
      startedAt: {{ $now | Quote }}
  {{ else }}
  state:
    terminated:
      exitCode: 0
      finishedAt: {{ $now | Quote }}
      reason: Completed
      startedAt: {{ $now | Quote }}
  {{ end }}
{{ end }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) \
( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
phase: Running
startTime: {{ $now | Quote }}
"""

_NODE_STATUS = """\
{{ $now := Now }}
{{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $lastTransitionTime | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
addresses:
{{ with .status.addresses }}
{{ YAML . 0 }}
{{ else }}
- address: {{ NodeIP | Quote }}
  type: InternalIP
{{ end }}
{{ with NodePort }}
daemonEndpoints:
  kubeletEndpoint:
    Port: {{ . }}
{{ end }}
"""


def _stage(name: str, kind: str, selector: list[dict[str, Any]], nxt: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "resourceRef": {"apiGroup": "v1", "kind": kind},
        "selector": {"matchExpressions": selector},
        "next": nxt,
    }
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": name}, "spec": spec}


def kwok_documents(ports: Ports, *, pod_parallelism: int = 32, node_parallelism: int = 16) -> list[dict[str, Any]]:
    """KwokConfiguration plus our stages.

    Pods: Pending (bound, not being deleted) -> Running with conditions, container statuses and a
    pod IP from the node's loopback podCIDR. No stage completes a pod: tests do that through
    `Cluster.complete_pod`/`fail_pod`. Because the ready stage only matches `phase == Pending`, a
    status a test sets (Failed/Succeeded) is never overwritten. Deleted pods are removed at once.
    Nodes: initialised to Ready, then kept alive by Leases (heartbeat stage every ~10 min).
    """
    options = {
        "cidr": KWOK_FALLBACK_CIDR,
        "nodeIP": "127.0.0.1",
        "manageAllNodes": False,
        "manageNodesWithLabelSelector": f"{KWOK_MANAGED_LABEL}={KWOK_MANAGED_VALUE}",
        "serverAddress": f"127.0.0.1:{ports.kwok}",
        "enableDebuggingHandlers": False,
        "enableProfilingHandler": False,
        "podPlayStageParallelism": pod_parallelism,
        "nodePlayStageParallelism": node_parallelism,
        "nodeLeaseDurationSeconds": 40,
        "nodeLeaseParallelism": node_parallelism,
    }
    config = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        "options": options,
    }
    ready_node = {
        "key": '.status.conditions.[] | select( .type == "Ready" ) | .status',
        "operator": "In",
        "values": ["True"],
    }
    stages = [
        _stage(
            "node-initialize",
            "Node",
            [{**ready_node, "operator": "NotIn"}],
            {"statusTemplate": _NODE_STATUS + "phase: Running\n"},
        ),
        _stage(
            "node-heartbeat-with-lease",
            "Node",
            [{"key": ".status.phase", "operator": "In", "values": ["Running"]}, ready_node],
            {"statusTemplate": _NODE_STATUS},
        ),
        _stage(
            "pod-ready",
            "Pod",
            [
                {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
            ],
            {"statusTemplate": _POD_READY_STATUS},
        ),
        _stage(
            "pod-delete",
            "Pod",
            [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}],
            {"finalizers": {"empty": True}, "delete": True},
        ),
    ]
    # Leases are the heartbeat; node conditions are refreshed only every ~10 minutes.
    stages[1]["spec"]["delay"] = {"durationMilliseconds": 600000, "jitterDurationMilliseconds": 610000}
    return [config, *stages]


def render_yaml_documents(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


# -- scheduler -----------------------------------------------------------------------------
def scheduler_config(kubeconfig: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig), "qps": 1000, "burst": 2000},
        "leaderElection": {"leaderElect": False},
    }


# -- kubeconfig ----------------------------------------------------------------------------
def kubeconfig(server: str, ca_b64: str, cert_b64: str, key_b64: str, user: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lepton", "cluster": {"server": server, "certificate-authority-data": ca_b64}}],
        "users": [{"name": user, "user": {"client-certificate-data": cert_b64, "client-key-data": key_b64}}],
        "contexts": [{"name": "lepton", "context": {"cluster": "lepton", "user": user}}],
        "current-context": "lepton",
    }


# -- pre-flight ----------------------------------------------------------------------------
def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port (we can bind it ourselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def taken_ports(ports: Ports) -> list[str]:
    """Messages naming each port of `ports` that is already in use."""
    return [
        f"port {port} (for {component}) on 127.0.0.1 is already in use"
        for component, port in ports.by_component().items()
        if not port_free(port)
    ]


def taken_real_node_ports(nodes: list[RealNode]) -> list[str]:
    """Messages naming each loopback port of the real nodes and their services that is already in use
    (the kubelet's own port is on its node IP, the services' on the fabric address: no one else has them)."""
    return [
        f"port {port} (for {what}) on 127.0.0.1 is already in use"
        for what, port in real_ports(nodes).items()
        if not what.startswith("kubelet ") or what.startswith("kubelet healthz")
        if not port_free(port)
    ]


def missing_tools(bin_dir: Path, tools: tuple[str, ...] = TOOLS) -> list[str]:
    return [t for t in tools if not os.access(bin_dir / t, os.X_OK)]


def service_ip(cidr: str) -> str:
    """The first address of the service range: the `kubernetes` Service's ClusterIP."""
    return str(ipaddress.ip_network(cidr).network_address + 1)
