"""Pure parts of the local control plane: node manifests, kwok stages, config, port check."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest
import yaml
from lepton_cluster import config as cfg
from lepton_cluster.cluster import Cluster
from lepton_cluster.config import ClusterConfig, NodePool, Ports


def test_default_pool_is_half_h100_half_a100_with_a_quarter_spot() -> None:
    nodes = cfg.default_nodes(NodePool())
    assert [n["metadata"]["name"] for n in nodes] == [f"gpu-node-0{i}" for i in range(8)]
    products = [n["metadata"]["labels"]["nvidia.com/gpu.product"] for n in nodes]
    assert products == [cfg.H100.product] * 4 + [cfg.A100.product] * 4
    spot = [n["metadata"]["name"] for n in nodes if n["metadata"]["labels"]["lepton.ai/capacity-type"] == "spot"]
    assert spot == ["gpu-node-03", "gpu-node-07"]


@pytest.mark.parametrize(
    ("pool", "expected_spot"),
    [(NodePool(count=3, spot_every=0), 0), (NodePool(count=16), 4), (NodePool(count=1, spot_every=1), 1)],
)
def test_spot_count(pool: NodePool, expected_spot: int) -> None:
    nodes = cfg.default_nodes(pool)
    assert len(nodes) == pool.count
    assert sum(n["metadata"]["labels"]["lepton.ai/capacity-type"] == "spot" for n in nodes) == expected_spot


def test_node_manifest_resources_taints_and_loopback_addresses() -> None:
    node = cfg.node_manifest(3, pool=NodePool(), gpu=cfg.A100, spot=True)
    meta, spec, status = node["metadata"], node["spec"], node["status"]
    assert status["capacity"] == status["allocatable"]
    assert status["capacity"] == {
        "cpu": "96",
        "memory": "1024Gi",
        "pods": "110",
        "ephemeral-storage": "2Ti",
        "nvidia.com/gpu": "8",
    }
    labels = meta["labels"]
    assert labels[cfg.KWOK_MANAGED_LABEL] == cfg.KWOK_MANAGED_VALUE
    assert labels["lepton.ai/capacity-type"] == labels["karpenter.sh/capacity-type"] == "spot"
    assert labels["nvidia.com/gpu.count"] == "8"
    assert labels["node.kubernetes.io/instance-type"] == "p4de.24xlarge"
    assert labels["kubernetes.io/hostname"] == meta["name"] == "gpu-node-03"
    assert {(t["key"], t["value"], t["effect"]) for t in spec["taints"]} == {
        ("nvidia.com/gpu", "present", "NoSchedule"),
        ("lepton.ai/spot", "true", "NoSchedule"),
    }
    (ip,) = [a["address"] for a in status["addresses"] if a["type"] == "InternalIP"]
    assert ipaddress.ip_address(ip).is_loopback
    assert ipaddress.ip_network(spec["podCIDR"]).is_loopback
    assert spec["podCIDRs"] == [spec["podCIDR"]]


def test_node_addresses_and_cidrs_are_unique_and_stay_out_of_the_service_range() -> None:
    service = ipaddress.ip_network(cfg.SERVICE_CIDR)
    ips = {cfg.node_ip(i) for i in range(5000)}
    cidrs = {cfg.node_pod_cidr(i) for i in range(5000)}
    assert len(ips) == len(cidrs) == 5000
    for c in (cfg.node_pod_cidr(0), cfg.node_pod_cidr(16383)):
        net = ipaddress.ip_network(c)
        assert net.is_loopback and not net.overlaps(service)
    assert ipaddress.ip_address(cfg.node_ip(0)) not in service
    with pytest.raises(ValueError):
        cfg.node_pod_cidr(16384)


def test_gpu_less_node_has_no_gpu_taint() -> None:
    node = cfg.node_manifest(0, pool=NodePool(), gpu=cfg.H100, spot=False, gpus=0)
    assert node["spec"]["taints"] == []
    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "false"


def test_kwok_stages_never_complete_pods_and_only_start_pending_ones() -> None:
    docs = cfg.kwok_documents(Ports())
    text = cfg.render_yaml_documents(docs)
    assert list(yaml.safe_load_all(text)) == docs
    config, *stages = docs
    assert config["kind"] == "KwokConfiguration"
    assert config["options"]["podPlayStageParallelism"] >= 16
    assert config["options"]["serverAddress"].startswith("127.0.0.1:")
    assert ipaddress.ip_network(config["options"]["cidr"], strict=False).is_loopback
    names = {s["metadata"]["name"]: s for s in stages}
    assert set(names) == {"node-initialize", "node-heartbeat-with-lease", "pod-ready", "pod-delete"}
    ready = names["pod-ready"]["spec"]["selector"]["matchExpressions"]
    assert {"key": ".status.phase", "operator": "In", "values": ["Pending"]} in ready
    assert "phase: Running" in names["pod-ready"]["spec"]["next"]["statusTemplate"]


def test_config_from_env(tmp_path: Path) -> None:
    env = {
        "LEPTON_RUN_DIR": str(tmp_path / "run"),
        "LEPTON_NODES": "3",
        "LEPTON_GPUS_PER_NODE": "4",
        "LEPTON_PORT_OFFSET": "100",
    }
    c = ClusterConfig.from_env(env)
    assert c.run_dir == tmp_path / "run"
    assert c.admin_kubeconfig == tmp_path / "run" / "admin.kubeconfig"
    assert (c.nodes.count, c.nodes.gpus_per_node) == (3, 4)
    assert c.ports.apiserver == 6543 and c.ports.etcd == 2479
    assert ClusterConfig.from_env(env, count=5, gpus_per_node=None).nodes == NodePool(count=5, gpus_per_node=4)


def test_gang_scheduling_gates_on_every_control_plane_component_unless_turned_off(tmp_path: Path) -> None:
    """GenericWorkload on apiserver, scheduler and controller-manager, the v1beta1 API served; the alpha topology
    gate where it matters (API fields, scheduler plugins); LEPTON_GANG=0: the stock flags."""
    c = ClusterConfig.from_env({"LEPTON_RUN_DIR": str(tmp_path)})
    both = "--feature-gates=GenericWorkload=true,TopologyAwareWorkloadScheduling=true"
    assert c.feature_gates("kube-apiserver") == [both, "--runtime-config=scheduling.k8s.io/v1beta1=true"]
    assert c.feature_gates("kube-scheduler") == [both]
    assert c.feature_gates("kube-controller-manager") == ["--feature-gates=GenericWorkload=true"]
    off = ClusterConfig.from_env({"LEPTON_RUN_DIR": str(tmp_path), "LEPTON_GANG": "0"})
    assert [off.feature_gates(n) for n in ("kube-apiserver", "kube-scheduler", "kube-controller-manager")] == [[]] * 3


def test_scheduler_config_raises_client_limits_and_disables_leader_election(tmp_path: Path) -> None:
    sc = cfg.scheduler_config(tmp_path / "s.kubeconfig")
    assert sc["clientConnection"]["qps"] == 1000 and sc["clientConnection"]["burst"] == 2000
    assert sc["leaderElection"] == {"leaderElect": False}


def test_taken_port_is_named() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not cfg.port_free(port)
        (msg,) = [m for m in cfg.taken_ports(Ports(apiserver=port)) if f"port {port} " in m]
        assert "kube-apiserver" in msg and "already in use" in msg
    assert cfg.port_free(port)


def test_missing_tools_are_listed(tmp_path: Path) -> None:
    (tmp_path / "etcd").write_text("#!/bin/sh\n")
    (tmp_path / "etcd").chmod(0o755)
    missing = cfg.missing_tools(tmp_path)
    assert "etcd" not in missing and "kube-apiserver" in missing and "helm" in missing


def test_service_ip_is_first_of_the_range() -> None:
    assert cfg.service_ip("127.96.0.0/16") == "127.96.0.1"


def test_profiling_is_off_unless_asked_for() -> None:
    assert not ClusterConfig.from_env({}).profiling
    assert ClusterConfig.from_env({"LEPTON_PROFILING": "1"}).profiling
    assert not ClusterConfig.from_env({"LEPTON_PROFILING": "0"}).profiling


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, True),  # real nodes by default: their pods' DNS reads EndpointSlices
        ({"LEPTON_REAL_NODES": "0"}, False),  # kwok pods only: the controller would only fail and retry
        ({"LEPTON_ENDPOINTSLICES": "0"}, False),
        ({"LEPTON_REAL_NODES": "0", "LEPTON_ENDPOINTSLICES": "1"}, True),
    ],
)
def test_endpointslice_controller_runs_with_real_nodes_unless_told(env: dict[str, str], on: bool) -> None:
    c = Cluster(ClusterConfig.from_env(env))
    args = [a for a in c.argv("kube-controller-manager") if "controllers" in a or "endpointslice" in a]
    assert c.config.endpointslice_controller is on
    assert ("-endpointslice-controller" not in args[0]) is on and "-endpoints-controller" in args[0]
    assert ("--endpointslice-updates-batch-period=1s" in args) is on
