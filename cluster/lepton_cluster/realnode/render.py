"""Configuration files and command lines of a real node's containerd and kubelet (pure)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .plan import API_PORT, CLUSTER_DOMAIN, DNS_PORT, PAUSE_IMAGE, RUNTIME_LABEL, RUNTIME_VALUE, RealNode

#: CNI plugins from Debian's containernetworking-plugins.
CNI_BIN_DIR = Path("/usr/lib/cni")
#: containerd fetches through this proxy, where nothing listens: an image missing from the node fails
#: at once ("proxyconnect ... connection refused") instead of reaching for a registry off the machine.
NO_REGISTRY_PROXY = "http://127.0.0.1:9"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def toml(tables: dict[str, dict[str, object]], top: dict[str, object]) -> str:
    """A flat TOML document: top-level keys, then one `[table]` per entry (dotted names as given)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for name, body in tables.items():
        lines += ["", f"[{name}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


def containerd_config(node: RealNode) -> str:
    """containerd 1.6 (config version 2): own root, state, sockets, CNI config and runc root."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    top: dict[str, object] = {
        "version": 2,
        "root": str(node.containerd_root),
        "state": str(node.containerd_state),
        "disabled_plugins": [
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.snapshotter.v1.zfs",
            "io.containerd.tracing.processor.v1.otlp",
        ],
    }
    tables: dict[str, dict[str, object]] = {
        "grpc": {"address": str(node.containerd_socket)},
        "ttrpc": {"address": f"{node.containerd_socket}.ttrpc"},
        "debug": {"address": "", "level": "info"},
        "metrics": {"address": ""},
        'plugins."io.containerd.internal.v1.opt"': {"path": str(node.dir / "containerd" / "opt")},
        cri: {
            "sandbox_image": PAUSE_IMAGE,
            "stream_server_address": "127.0.0.1",
            "stream_server_port": str(node.stream_port),
            # No CAP_SYS_RESOURCE here: lowering oom_score_adj is denied and runc would fail.
            "restrict_oom_score_adj": True,
            "disable_apparmor": True,
            "enable_selinux": False,
            "netns_mounts_under_state_dir": True,
            "max_container_log_line_size": 16384,
        },
        f"{cri}.containerd": {"snapshotter": "overlayfs", "default_runtime_name": "runc"},
        f"{cri}.containerd.runtimes.runc": {"runtime_type": "io.containerd.runc.v2"},
        f"{cri}.containerd.runtimes.runc.options": {
            "SystemdCgroup": False,
            "Root": str(node.containerd_state / "runc"),
        },
        f"{cri}.cni": {
            "bin_dir": str(CNI_BIN_DIR),
            "conf_dir": str(node.cni_conf_dir),
            "max_conf_num": 1,
        },
    }
    return toml(tables, top)


def cni_conflist(node: RealNode) -> dict[str, Any]:
    """bridge + host-local + loopback: the node's bridge, addresses from its /24, on-link /20 only.

    No gateway on the bridge, no default route, no IP masquerade: a pod reaches its own /20 and
    nothing else. IPv6 is switched off inside the pod.
    """
    first, last = node.pod_range
    return {
        "cniVersion": "0.4.0",
        "name": node.network_name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": node.bridge,
                "isGateway": False,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": False,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(node.ipam_dir),
                    "ranges": [[{"subnet": node.fabric_cidr, "rangeStart": first, "rangeEnd": last}]],
                    "routes": [],
                },
            },
            {"type": "tuning", "sysctl": {"net.ipv6.conf.all.disable_ipv6": "1"}},
            {"type": "loopback"},
        ],
    }


def kubelet_config(node: RealNode, *, ca_file: Path, cert_file: Path, key_file: Path) -> dict[str, Any]:
    """KubeletConfiguration for a cgroup v1 machine without systemd, images only from the node."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.node_ip,
        "port": node.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": node.healthz_port,
        "tlsCertFile": str(cert_file),
        "tlsPrivateKeyFile": str(key_file),
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup_root,
        "cgroupsPerQOS": True,
        "failCgroupV1": False,
        "failSwapOn": False,
        "registerNode": True,
        "registerWithTaints": [{"key": RUNTIME_LABEL, "value": RUNTIME_VALUE, "effect": "NoSchedule"}],
        "podLogsDir": str(node.pod_logs_dir),
        "volumePluginDir": str(node.dir / "volume-plugins"),
        # Pods ask the cluster DNS only (the fabric address); the machine's resolvers stay out.
        "resolvConf": "",
        "clusterDNS": [node.service_ip],
        "clusterDomain": CLUSTER_DOMAIN,
        "hairpinMode": "none",
        "makeIPTablesUtilChains": False,
        "protectKernelDefaults": False,
        # Images are imported, never pulled: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": False,
        "maxPods": 110,
    }


def kubelet_argv(node: RealNode, kubelet: Path) -> list[str]:
    return [
        str(kubelet),
        f"--config={node.kubelet_config}",
        f"--kubeconfig={node.kubeconfig}",
        f"--root-dir={node.kubelet_root}",
        f"--cert-dir={node.kubelet_root / 'pki'}",
        f"--hostname-override={node.name}",
        f"--node-ip={node.node_ip}",
        f"--node-labels={RUNTIME_LABEL}={RUNTIME_VALUE}",
        "--v=1",
    ]


def containerd_argv(node: RealNode, containerd: Path) -> list[str]:
    return [str(containerd), f"--config={node.containerd_config}"]


def containerd_env(path: str) -> dict[str, str]:
    """containerd's whole environment: PATH for runc and the shim, and the dead-end proxy."""
    return {
        "PATH": path,
        "HTTP_PROXY": NO_REGISTRY_PROXY,
        "HTTPS_PROXY": NO_REGISTRY_PROXY,
        "NO_PROXY": "",
    }


def corefile(*, listen_ip: str, ready_port: int, kubeconfig: Path) -> str:
    """CoreDNS: the cluster's names (Services, EndpointSlices, pods by IP) on `listen_ip` only.

    Only the cluster zone and reverse lookups are served; any other name is refused (no forward
    plugin is built in: no query leaves the machine).
    """
    return f"""{CLUSTER_DOMAIN}:{DNS_PORT} in-addr.arpa:{DNS_PORT} {{
    bind {listen_ip}
    errors
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        ttl 5
    }}
}}
"""


def coredns_argv(coredns: Path, conf: Path) -> list[str]:
    return [str(coredns), "-conf", str(conf)]


def api_relay_argv(socat: str, *, listen_ip: str, apiserver_port: int) -> list[str]:
    """socat: TCP from the fabric address's :443 to the API server on 127.0.0.1 (TLS end to end)."""
    return [
        socat,
        f"TCP4-LISTEN:{API_PORT},bind={listen_ip},reuseaddr,fork",
        f"TCP4:127.0.0.1:{apiserver_port}",
    ]
