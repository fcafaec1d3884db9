"""Kueue on the local control plane (cluster/lepton_cluster/kueue.py): configuration and manifests, pure."""

from __future__ import annotations

from pathlib import Path

from lepton_cluster import kueue

HOOKS = [
    {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "mutating-webhook-configuration"},
        "webhooks": [
            {
                "name": "mworkload.kb.io",
                "clientConfig": {
                    "service": {"name": "webhook-service", "path": "/mutate-kueue-x-k8s-io-v1beta2-workload"}
                },
                "rules": [{"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads"]}],
            },
            {
                "name": "mpod.kb.io",
                "clientConfig": {"service": {"name": "webhook-service", "path": "/mutate--v1-pod"}},
                "rules": [{"apiGroups": [""], "resources": ["pods"]}],
            },
        ],
    }
]


def test_ports_move_with_the_offset_and_stay_on_loopback() -> None:
    ports = kueue.KueuePorts.for_offset(3000)
    assert (ports.webhook, ports.health, ports.metrics) == (13270, 13271, 13272)
    conf = kueue.configuration(ports, Path("/run/k/webhook-certs"))
    assert conf["webhook"] == {"host": "127.0.0.1", "port": 13270, "certDir": "/run/k/webhook-certs"}
    assert conf["health"]["healthProbeBindAddress"] == "127.0.0.1:13271"
    assert conf["metrics"]["bindAddress"] == "127.0.0.1:13272"
    assert conf["internalCertManagement"] == {"enable": False} and conf["leaderElection"] == {"leaderElect": False}
    assert conf["integrations"]["externalFrameworks"] == ["TrainingJob.v1alpha1.lepton.ai"]


def test_only_kueues_own_webhooks_are_kept_and_call_loopback() -> None:
    (doc,) = kueue.webhook_configurations(HOOKS, 13270, "Q0E=")
    assert doc["metadata"]["name"] == "kueue-mutating-webhook-configuration"
    assert [h["name"] for h in doc["webhooks"]] == ["mworkload.kb.io"]
    assert doc["webhooks"][0]["clientConfig"] == {
        "url": "https://127.0.0.1:13270/mutate-kueue-x-k8s-io-v1beta2-workload",
        "caBundle": "Q0E=",
    }
    assert HOOKS[0]["webhooks"][0]["clientConfig"].get("service")  # the input is left alone


def test_converted_crds_call_convert_on_loopback() -> None:
    crds = [{"spec": {"names": {"plural": p}}} for p in ("workloads", "resourceflavors")]
    wl, rf = kueue.crds(crds, 13270, "Q0E=")
    assert wl["spec"]["conversion"]["webhook"]["clientConfig"]["url"] == "https://127.0.0.1:13270/convert"
    assert "conversion" not in rf["spec"]


def test_argv_bind_mounts_the_metrics_certs_in_a_private_mount_namespace() -> None:
    argv = kueue.argv(Path("/bin"), Path("/run/c"))
    assert argv[:3] == ["unshare", "--mount", "--propagation=private"]
    assert "/run/c/kueue/metrics-certs" in argv and "/bin/kueue" in argv
    assert "--kubeconfig=/run/c/kueue.kubeconfig" in argv


def test_kueue_is_started_only_when_asked() -> None:
    from lepton_cluster.config import ClusterConfig

    assert ClusterConfig.from_env({}).kueue is False
    assert ClusterConfig.from_env({"LEPTON_KUEUE": "1"}).kueue is True
    assert ClusterConfig.from_env({"LEPTON_KUEUE": "0"}).kueue is False
    assert ClusterConfig.from_env({}, kueue=True).kueue is True


def test_workload_slices_are_on_and_the_visibility_server_off() -> None:
    gates = kueue.configuration(kueue.KueuePorts.for_offset(0), Path("/c"))["featureGates"]
    assert gates == {"VisibilityOnDemand": False, "ElasticJobsViaWorkloadSlices": True}
