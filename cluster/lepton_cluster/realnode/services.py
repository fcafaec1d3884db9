"""Cluster services for the pods of the real nodes: DNS and the way to the API server.

Both are host processes bound to the slot's fabric address only (`plan.fabric_ip`, on our fabric
bridge; pods reach it on-link), in a cgroup of their own (`/lepton-<slot>-services`), so teardown
kills them as it kills a node:

- CoreDNS (built by cluster/build.sh with the `kubernetes` plugin and no `forward` plugin) on :53
  answers the cluster zone from Services and EndpointSlices; the kubelets' `clusterDNS` points here.
- socat on :443 relays TCP to the API server on 127.0.0.1 (TLS end to end; the serving certificate
  names the fabric address): a pod sets `KUBERNETES_SERVICE_HOST` to the fabric address.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from ..config import kubeconfig
from ..pki import Pki
from ..spawn import spawn_logged
from . import cgroups, render
from .plan import DNS_READY_PORT, SERVICES, fabric_ip

#: The identity CoreDNS reads the API with, and what it may read (as CoreDNS's own manifests grant).
DNS_USER = "system:lepton:coredns"
DNS_RBAC = f"""apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "lepton:coredns"}}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "lepton:coredns"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "lepton:coredns"}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: "{DNS_USER}"}}]
"""
WHAT = ("coredns", "api-relay")


class Services:
    """CoreDNS and the API relay of one cluster's real nodes (slot `slot`)."""

    def __init__(self, *, slot: int, run_dir: Path, bin_dir: Path, log_dir: Path, port_offset: int) -> None:
        self.slot, self.bin_dir, self.log_dir = slot, bin_dir, log_dir
        self.dir = run_dir / "realnodes" / SERVICES
        self.ip = fabric_ip(slot)
        self.ready_port = DNS_READY_PORT + port_offset

    @property
    def cgroup(self) -> str:
        return f"/lepton-{self.slot}-{SERVICES}"

    @property
    def corefile(self) -> Path:
        return self.dir / "Corefile"

    def write_files(self, pki: Pki, apiserver_url: str) -> None:
        """CoreDNS's client certificate, kubeconfig and Corefile (fresh folder)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        pair = pki.issue("coredns", DNS_USER)
        kc = self.dir / "coredns.kubeconfig"
        kc.write_text(
            yaml.safe_dump(kubeconfig(apiserver_url, pki.ca_b64(), pair.cert_b64(), pair.key_b64(), DNS_USER))
        )
        kc.chmod(0o600)
        self.corefile.write_text(render.corefile(listen_ip=self.ip, ready_port=self.ready_port, kubeconfig=kc))

    def start(self, apiserver_port: int) -> None:
        """Both processes (the fabric bridge and its address exist; the API server answers)."""
        (self.dir / "slot").write_text(f"{self.slot}\n")  # teardown finds the cgroup by it
        cgroups.create(self.cgroup)
        socat = shutil.which("socat") or "socat"
        self._spawn("coredns", render.coredns_argv(self.bin_dir / "coredns", self.corefile))
        self._spawn("api-relay", render.api_relay_argv(socat, listen_ip=self.ip, apiserver_port=apiserver_port))

    def _spawn(self, what: str, argv: list[str]) -> None:
        spawn_logged(
            argv,
            log_path=self.log_dir / f"{what}.log",
            pid_file=self.dir / f"{what}.pid",
            cwd=self.dir,
            env={"PATH": "/usr/bin:/bin"},
            preexec_fn=cgroups.joiner(self.cgroup),
        )

    def pids(self) -> dict[str, int | None]:
        """CoreDNS's and the relay's pids (None: not running)."""
        live = cgroups.pids(self.cgroup) if self.dir.joinpath("slot").exists() else set()
        out: dict[str, int | None] = {}
        for what in WHAT:
            try:
                pid: int | None = int((self.dir / f"{what}.pid").read_text())
            except (OSError, ValueError):
                pid = None
            out[what] = pid if pid in live else None
        return out
