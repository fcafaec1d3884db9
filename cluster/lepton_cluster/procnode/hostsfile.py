"""Cluster DNS without a DNS server: each pod's /etc/hosts names every pod of the node by its DNS names.

Rendezvous dials `<pod>.<subdomain>.<ns>.svc:29400`, so those names (and the `.cluster.local` forms) map
to pod addresses; the pod's own hostname maps to its own address (torchrun advertises `getfqdn()`).
A headless Service's own name `<svc>.<ns>.svc` lists the pods under it. resolv.conf points at the
namespace's own loopback, where nothing answers: unknown names fail fast and no query leaves the pod.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CLUSTER_DOMAIN = "cluster.local"
RESOLV_CONF = (
    "# lepton process node: names come from /etc/hosts only\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
)


@dataclass(frozen=True, order=True)
class PodAddress:
    namespace: str
    name: str
    hostname: str
    subdomain: str
    ip: str

    def service_names(self) -> list[str]:
        if not self.subdomain:
            return []
        short = f"{self.hostname}.{self.subdomain}.{self.namespace}.svc"
        return [f"{short}.{CLUSTER_DOMAIN}", short]


def render_hosts(own: PodAddress, pods: Iterable[PodAddress]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines.append("\t".join([own.ip, *own.service_names(), own.hostname]))
    services: dict[str, list[str]] = {}
    for pod in sorted(set(pods)):
        if pod == own or not pod.subdomain:
            continue
        lines.append("\t".join([pod.ip, *pod.service_names()]))
    for pod in sorted(set(pods) | {own}):
        if pod.subdomain:
            services.setdefault(f"{pod.subdomain}.{pod.namespace}.svc", []).append(pod.ip)
    for name, ips in sorted(services.items()):
        lines.extend(f"{ip}\t{name}.{CLUSTER_DOMAIN} {name}" for ip in ips)
    return "\n".join(lines) + "\n"


def write_in_place(path: Path, text: str) -> None:
    """Rewrite keeping the inode: `ip netns exec` bind-mounted this very file over the pod's /etc/hosts."""
    if not path.exists():
        path.write_text(text)
        return
    with path.open("r+") as f:
        if f.read() == text:
            return
        f.seek(0)
        f.write(text)
        f.truncate()
        f.flush()
        os.fsync(f.fileno())
