"""The local control plane itself, against the real components (see docs/cluster.md)."""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from lepton_cluster import config as cfg
from lepton_cluster.cluster import Cluster, KubectlError
from lepton_cluster.testing import holds_for, pod_condition, pod_manifest, unique_name, wait_for

pytestmark = pytest.mark.e2e

START_NODES = [cfg.node_name(i) for i in range(cfg.NodePool().count)]


def get_pod(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return cluster.to_dict(cluster.core.read_namespaced_pod(name, ns))


def gone(read: Any, *args: Any) -> bool:
    try:
        read(*args)
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


def create_pod(cluster: Cluster, ns: str, **kw: Any) -> str:
    name = kw.pop("name", None) or unique_name("pod")
    cluster.core.create_namespaced_pod(ns, pod_manifest(name, **kw))
    return name


def wait_running(cluster: Cluster, ns: str, name: str, timeout: float = 30) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        pod = get_pod(cluster, ns, name)
        st = pod.get("status", {})
        return pod if st.get("phase") == "Running" and st.get("podIP") else None

    return wait_for(running, timeout, message=lambda: f"pod {ns}/{name} Running: {get_pod(cluster, ns, name)}")


@pytest.fixture
def test_node(cluster: Cluster, namespace: str) -> Iterator[str]:
    """One extra GPU node, tainted so only this test's pods land on it; deleted afterwards."""
    taint = {"key": "lepton.ai/e2e-node", "value": namespace, "effect": "NoSchedule"}
    (name,) = cluster.add_nodes(1, gpu=cfg.A100, taints=[taint], labels={"lepton.ai/e2e-node": namespace})
    try:
        yield name
    finally:
        try:
            cluster.delete_node(name)
        except ApiException as e:
            if e.status != 404:
                raise


def on_test_node(node: str, namespace: str) -> dict[str, Any]:
    return {
        "node_selector": {"kubernetes.io/hostname": node},
        "tolerations": [{"key": "lepton.ai/e2e-node", "operator": "Equal", "value": namespace}],
    }


@pytest.mark.timeout(60)
def test_nodes_listed_with_gpu_capacity_and_labels(cluster: Cluster) -> None:
    nodes = {n["metadata"]["name"]: n for n in cluster.kubectl_json("get", "nodes")["items"]}
    assert set(START_NODES) <= set(nodes)
    products = []
    for name in START_NODES:
        node = nodes[name]
        labels, status = node["metadata"]["labels"], node["status"]
        assert status["capacity"][cfg.GPU_RESOURCE] == "8"
        assert status["allocatable"][cfg.GPU_RESOURCE] == "8"
        assert status["capacity"]["cpu"] == "96"
        assert status["capacity"]["memory"] == "1Ti"
        assert status["capacity"]["pods"] == "110"
        assert labels["nvidia.com/gpu.count"] == "8"
        assert labels["lepton.ai/capacity-type"] in ("on-demand", "spot")
        assert labels["karpenter.sh/capacity-type"] == labels["lepton.ai/capacity-type"]
        assert labels["topology.kubernetes.io/zone"] in cfg.ZONES
        assert labels["kubernetes.io/hostname"] == name
        assert labels["node.kubernetes.io/instance-type"]
        products.append(labels["nvidia.com/gpu.product"])
        taints = {(t["key"], t.get("value"), t["effect"]) for t in node["spec"].get("taints", [])}
        assert ("nvidia.com/gpu", "present", "NoSchedule") in taints
        assert (("lepton.ai/spot", "true", "NoSchedule") in taints) == (labels["lepton.ai/capacity-type"] == "spot")
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in status["conditions"])
        # Everything the node advertises is on the loopback range.
        (ip,) = [a["address"] for a in status["addresses"] if a["type"] == "InternalIP"]
        assert ipaddress.ip_address(ip).is_loopback
        assert ipaddress.ip_network(node["spec"]["podCIDR"]).subnet_of(cfg.POD_CIDR_SUPERNET)
    assert products.count(cfg.H100.product) == 4
    assert products.count(cfg.A100.product) == 4
    spot = [n for n in START_NODES if nodes[n]["metadata"]["labels"]["lepton.ai/capacity-type"] == "spot"]
    assert len(spot) == 2

    table = cluster.kubectl("get", "nodes", "-L", "nvidia.com/gpu.product,lepton.ai/capacity-type").stdout
    for name in START_NODES:
        assert name in table
    assert cfg.H100.product in table and cfg.A100.product in table
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == version["clientVersion"]["gitVersion"]
    assert version["serverVersion"]["gitVersion"].startswith("v1.")


@pytest.mark.timeout(60)
def test_gpu_pod_is_scheduled_and_runs_with_a_loopback_ip(cluster: Cluster, namespace: str) -> None:
    name = create_pod(cluster, namespace, gpus=1)
    pod = wait_running(cluster, namespace, name)
    st = pod["status"]
    node = cluster.to_dict(cluster.core.read_node(pod["spec"]["nodeName"]))
    assert ipaddress.ip_address(st["podIP"]) in ipaddress.ip_network(node["spec"]["podCIDR"])
    assert st["podIP"].startswith("127.")
    internal_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    assert st["hostIP"] == internal_ip
    for cond in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
        assert (pod_condition(pod, cond) or {}).get("status") == "True", cond
    (cs,) = st["containerStatuses"]
    assert cs["ready"] is True and "running" in cs["state"]
    # The scheduler honoured the spot taint: the pod did not tolerate it.
    assert node["metadata"]["labels"]["lepton.ai/capacity-type"] == "on-demand"


@pytest.mark.timeout(60)
def test_pod_wanting_more_gpus_than_any_node_stays_pending(cluster: Cluster, namespace: str) -> None:
    name = create_pod(cluster, namespace, gpus=16)

    def unschedulable() -> dict[str, Any] | None:
        cond = pod_condition(get_pod(cluster, namespace, name), "PodScheduled")
        return cond if cond and cond["status"] == "False" else None

    cond = wait_for(unschedulable, 30, message="PodScheduled=False")
    assert cond["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in cond["message"]

    def failed_scheduling_event() -> Any:
        events = cluster.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
        return [e for e in events if e.reason == "FailedScheduling"]

    (event, *_) = wait_for(failed_scheduling_event, 30, message="a FailedScheduling event")
    assert event.type == "Warning"
    assert "default-scheduler" in (event.reporting_component or "", event.source.component or "")
    pod = get_pod(cluster, namespace, name)
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")


@pytest.mark.timeout(90)
def test_deployment_makes_replicaset_and_pods_and_deleting_it_collects_them(cluster: Cluster, namespace: str) -> None:
    labels = {"app": "web"}
    template = pod_manifest("unused", labels=labels)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {**template["spec"], "restartPolicy": "Always"},
            },
        },
    }
    cluster.apps.create_namespaced_deployment(namespace, deployment)

    def available() -> bool:
        d = cluster.apps.read_namespaced_deployment("web", namespace)
        return (d.status.available_replicas or 0) == 3

    wait_for(available, 60, message="3 available replicas")
    (rs,) = cluster.apps.list_namespaced_replica_set(namespace).items
    assert rs.metadata.owner_references[0].kind == "Deployment"
    pods = cluster.core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 3
    assert all(p.metadata.owner_references[0].name == rs.metadata.name for p in pods)
    assert all(p.status.phase == "Running" and p.status.pod_ip.startswith("127.") for p in pods)

    cluster.apps.delete_namespaced_deployment("web", namespace, propagation_policy="Background")
    wait_for(
        lambda: (
            not cluster.apps.list_namespaced_replica_set(namespace).items
            and not cluster.core.list_namespaced_pod(namespace).items
        ),
        60,
        message="the ReplicaSet and pods to be garbage-collected",
    )


@pytest.mark.timeout(60)
def test_deleting_an_owner_garbage_collects_its_children(cluster: Cluster, namespace: str) -> None:
    owner = cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}, "data": {}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    pod = pod_manifest("child-pod")
    pod["metadata"]["ownerReferences"] = [ref]
    cluster.core.create_namespaced_pod(namespace, pod)
    wait_running(cluster, namespace, "child-pod")

    cluster.core.delete_namespaced_config_map("owner", namespace)
    wait_for(
        lambda: (
            gone(cluster.core.read_namespaced_config_map, "child", namespace)
            and gone(cluster.core.read_namespaced_pod, "child-pod", namespace)
        ),
        45,
        message="children of the deleted owner to be collected",
    )


@pytest.mark.timeout(150)
def test_deleting_a_node_cleans_up_its_pods(cluster: Cluster, namespace: str, test_node: str) -> None:
    """The controller-manager's pod GC deletes pods bound to a node that no longer exists once the
    node has been gone for 40 s (its quarantine), checking every 20 s: expect 40-60 s."""
    name = create_pod(cluster, namespace, gpus=8, **on_test_node(test_node, namespace))
    pod = wait_running(cluster, namespace, name)
    assert pod["spec"]["nodeName"] == test_node

    t0 = time.monotonic()
    cluster.delete_node(test_node)
    wait_for(lambda: gone(cluster.core.read_namespaced_pod, name, namespace), 120, interval=0.5)
    took = time.monotonic() - t0
    print(f"pod on the deleted node removed after {took:.1f} s")
    assert took < 120


@pytest.mark.timeout(90)
def test_crd_with_status_printer_columns_and_cel_rule(cluster: Cluster, namespace: str) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.e2e.lepton.ai"
    rule_message = "minReplicas must not exceed maxReplicas"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wdg"]},
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Min", "type": "integer", "jsonPath": ".spec.minReplicas"},
                        {"name": "Max", "type": "integer", "jsonPath": ".spec.maxReplicas"},
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["minReplicas", "maxReplicas"],
                                    "properties": {
                                        "minReplicas": {"type": "integer", "minimum": 1},
                                        "maxReplicas": {"type": "integer", "minimum": 1},
                                    },
                                    "x-kubernetes-validations": [
                                        {"rule": "self.minReplicas <= self.maxReplicas", "message": rule_message}
                                    ],
                                },
                                "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                            },
                        }
                    },
                }
            ],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(crd))
    try:
        wait_for(
            lambda: (
                "True"
                in cluster.kubectl(
                    "get",
                    "crd",
                    f"widgets.{group}",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Established')].status}",
                ).stdout
            ),
            30,
            message="the CRD to be Established",
        )

        def widget(name: str, lo: int, hi: int) -> str:
            obj = {
                "apiVersion": f"{group}/v1alpha1",
                "kind": "Widget",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"minReplicas": lo, "maxReplicas": hi},
            }
            return yaml.safe_dump(obj)

        # Discovery of a new group can lag a moment behind Established.
        wait_for(
            lambda: cluster.kubectl("apply", "-f", "-", input=widget("good", 1, 3), check=False).returncode == 0,
            30,
            message="a valid Widget to be accepted",
        )
        cluster.kubectl(
            "patch", f"widgets.{group}", "good", "-n", namespace,
            "--subresource=status", "--type=merge", "-p", '{"status": {"phase": "Running"}}',
        )  # fmt: skip
        table = cluster.kubectl("get", f"widgets.{group}", "-n", namespace).stdout
        header, row = table.splitlines()[:2]
        assert header.split() == ["NAME", "MIN", "MAX", "PHASE"]
        assert row.split()[:4] == ["good", "1", "3", "Running"]

        with pytest.raises(KubectlError) as err:
            cluster.kubectl("apply", "-f", "-", input=widget("bad", 5, 2))
        assert rule_message in err.value.stderr
        assert "Invalid value" in err.value.stderr
    finally:
        cluster.kubectl("delete", "crd", f"widgets.{group}", "--wait=false", check=False)


@pytest.mark.timeout(30)
def test_helm_runs_from_the_cached_build(cluster: Cluster) -> None:
    out = cluster.helm("version", "--short").stdout.strip()
    assert out.startswith("v3.")
    assert str(cluster.bin_dir) in cluster._bin("helm")


@pytest.mark.timeout(60)
def test_fail_pod_sets_exit_code_and_reason_and_it_sticks(cluster: Cluster, namespace: str) -> None:
    name = create_pod(cluster, namespace, gpus=1)
    wait_running(cluster, namespace, name)
    cluster.fail_pod(namespace, name, exit_code=137, reason="OOMKilled", message="out of memory")

    def failed() -> bool:
        pod = get_pod(cluster, namespace, name)
        st = pod["status"]
        term = st["containerStatuses"][0]["state"].get("terminated") or {}
        return (
            st["phase"] == "Failed"
            and term.get("exitCode") == 137
            and term.get("reason") == "OOMKilled"
            and term.get("message") == "out of memory"
            and (pod_condition(pod, "Ready") or {}).get("status") == "False"
        )

    assert failed()
    holds_for(failed, 3.0, message="the Failed status (kwok must not overwrite it)")


@pytest.mark.timeout(60)
def test_complete_pod_and_fail_pending_pod(cluster: Cluster, namespace: str) -> None:
    done = create_pod(cluster, namespace, gpus=1)
    wait_running(cluster, namespace, done)
    cluster.complete_pod(namespace, done, message="step 100 loss 0.01")
    st = get_pod(cluster, namespace, done)["status"]
    assert st["phase"] == "Succeeded"
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed" and term["message"] == "step 100 loss 0.01"

    pending = create_pod(cluster, namespace, gpus=64)  # never schedulable
    cluster.fail_pod(namespace, pending, exit_code=2)
    holds_for(lambda: get_pod(cluster, namespace, pending)["status"]["phase"] == "Failed", 1.0)
    holds_for(lambda: get_pod(cluster, namespace, done)["status"]["phase"] == "Succeeded", 1.0)


@pytest.mark.timeout(60)
def test_evict_pod_marks_disruption_target(cluster: Cluster, namespace: str) -> None:
    name = create_pod(cluster, namespace, gpus=2)
    wait_running(cluster, namespace, name)
    cluster.evict_pod(namespace, name, disruption_reason="PreemptionByScheduler")
    pod = get_pod(cluster, namespace, name)
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "Evicted"
    cond = pod_condition(pod, "DisruptionTarget")
    assert cond is not None and cond["status"] == "True" and cond["reason"] == "PreemptionByScheduler"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137

    other = create_pod(cluster, namespace, gpus=1)
    wait_running(cluster, namespace, other)
    cluster.evict_pod(namespace, other, delete=True)
    wait_for(lambda: gone(cluster.core.read_namespaced_pod, other, namespace), 30, message="evicted pod deleted")


@pytest.mark.timeout(90)
def test_node_not_ready_and_back(cluster: Cluster, namespace: str, test_node: str) -> None:
    name = create_pod(cluster, namespace, gpus=1, **on_test_node(test_node, namespace))
    wait_running(cluster, namespace, name)

    cluster.set_node_not_ready(test_node)

    def node() -> dict[str, Any]:
        return cluster.to_dict(cluster.core.read_node(test_node))

    def ready_status() -> str:
        return str(next(c for c in node()["status"]["conditions"] if c["type"] == "Ready")["status"])

    def unreachable_taint() -> bool:
        taints = {(t["key"], t["effect"]) for t in node()["spec"].get("taints") or []}
        return ("node.kubernetes.io/unreachable", "NoExecute") in taints

    assert ready_status() == "Unknown"
    assert unreachable_taint()
    holds_for(lambda: ready_status() == "Unknown", 3.0, message="Ready=Unknown (kwok must not heartbeat it)")
    # The node lifecycle controller owns that taint now: it may swap it (remove and re-add) on its
    # 5 s monitor pass, so only "present again" is checked.
    wait_for(unreachable_taint, 15, message="the unreachable NoExecute taint")
    assert get_pod(cluster, namespace, name)["status"]["phase"] == "Running"  # last status kept
    # Nothing new lands on it: the scheduler respects the unreachable taint.
    late = create_pod(cluster, namespace, gpus=1, **on_test_node(test_node, namespace))
    cond = wait_for(
        lambda: (pod_condition(get_pod(cluster, namespace, late), "PodScheduled") or {}).get("reason"),
        30,
        message="the scheduler to refuse the NotReady node",
    )
    assert cond == "Unschedulable"

    cluster.set_node_ready(test_node)
    wait_for(lambda: cluster.node_ready(node()), 30, message="node Ready again")
    wait_running(cluster, namespace, late)
