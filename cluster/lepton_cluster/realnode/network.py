"""Host links of the real nodes: a bridge per node, joined by veth pairs to one fabric bridge.

Each link we make carries the alias `lepton:<run_dir>`, so `down` removes exactly ours (and finds
them after a crash). Our bridges: IPv6 off, IPv4 forwarding off, `arp_filter=1` (the host answers
ARP for a node IP only on the bridge that routes back to the asker, so replies come back the way
they went). The CNI bridge plugin attaches pod veths to the node's bridge.

Pod addresses come back: host-local hands out a node's 253 addresses in turn, so a new pod can get
the address of a pod gone minutes ago, whose MAC the host still holds in its ARP table. With the
kernel's default timers the host keeps sending to the old MAC for 8 s (5 s before the first probe,
3 probes of 1 s) before it asks again: a connect took 7.1, 11.2 and 11.3 s, and a client with a
10 s connect timeout gives up (CI saw it: a GET of the demo operator's /healthz). Our bridges
re-check a stale entry after 1 s with probes of 200 ms: 2.0 s each time (tests/e2e/test_realnode.py);
the ARP traffic is the host's own, with its pods, on links of ours.

The slot's whole /20 also gets an `unreachable` route (protocol 77, ours): an address of a node
whose bridge is down, or of no node, fails at once on this machine; without it the default route
would send such packets out of the machine.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path
from typing import Any

from .plan import RealNode, fabric_bridge, fabric_ip, slot_network

#: The `proto` of the routes we add (unnamed in /etc/iproute2/rt_protos), so we delete only ours.
ROUTE_PROTO = "77"


class NetworkError(RuntimeError):
    pass


def ip(*args: str, check: bool = True) -> str:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and res.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {res.stderr.strip() or res.returncode}")
    return res.stdout


def alias_for(run_dir: Path) -> str:
    return f"lepton:{run_dir}"


def _links() -> list[dict[str, Any]]:
    return list(json.loads(ip("-j", "link", "show") or "[]"))


def owned_links(run_dir: Path) -> list[str]:
    """Names of the links carrying our alias."""
    mine = alias_for(run_dir)
    return [link["ifname"] for link in _links() if link.get("ifalias") == mine]


def conflicts(network: str, run_dir: Path) -> list[str]:
    """Addresses or routes of this machine inside `network` that are not on links of ours."""
    net = ipaddress.IPv4Network(network)
    ours = set(owned_links(run_dir))
    found = []
    for link in json.loads(ip("-j", "-4", "addr") or "[]"):
        if link.get("ifname") in ours:
            continue
        for a in link.get("addr_info", []):
            iface = ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")
            if iface.network.overlaps(net):
                found.append(f"address {iface} on {link.get('ifname')}")
    for route in json.loads(ip("-j", "-4", "route", "show", "table", "all") or "[]"):
        dst, dev = route.get("dst", ""), route.get("dev", "")
        if dst in ("default", "") or dev in ours or (dst == network and route.get("protocol") == ROUTE_PROTO):
            continue
        try:
            if ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False).overlaps(net):
                found.append(f"route {dst} dev {dev}")
        except ValueError:
            continue
    return found


def names_taken(names: list[str], run_dir: Path) -> list[str]:
    """Of `names`, those that exist on this machine without our alias."""
    mine = alias_for(run_dir)
    links = {link["ifname"]: link.get("ifalias") for link in _links()}
    return [f"link {n} exists ({links[n] or 'no alias'})" for n in names if n in links and links[n] != mine]


#: Neighbour timers of our bridges (/proc/sys/net/ipv4/neigh/<bridge>/): see the module's docstring.
NEIGH_TIMERS = {"delay_first_probe_time": "1", "retrans_time_ms": "200", "base_reachable_time_ms": "5000"}


def _sysctl(iface: str, family: str, key: str, value: str, table: str = "conf") -> None:
    Path(f"/proc/sys/net/{family}/{table}/{iface}/{key}").write_text(value)


def _add_link(name: str, run_dir: Path, *kind: str) -> None:
    if ip("-j", "link", "show", "dev", name, check=False).strip():
        return
    ip("link", "add", name, *kind)
    ip("link", "set", "dev", name, "alias", alias_for(run_dir))


def _bridge(name: str, run_dir: Path) -> None:
    _add_link(name, run_dir, "type", "bridge")
    _sysctl(name, "ipv6", "disable_ipv6", "1")
    _sysctl(name, "ipv4", "forwarding", "0")
    _sysctl(name, "ipv4", "arp_filter", "1")
    for key, value in NEIGH_TIMERS.items():
        _sysctl(name, "ipv4", key, value, table="neigh")


def ensure_fabric(slot: int, run_dir: Path) -> None:
    """The `unreachable` route that keeps the slot's /20 on this machine (first), and the fabric bridge
    with its address (where the pods' cluster services listen)."""
    ip("route", "replace", "unreachable", str(slot_network(slot)), "proto", ROUTE_PROTO)
    name = fabric_bridge(slot)
    _bridge(name, run_dir)
    addr = f"{fabric_ip(slot)}/24"
    if addr not in ip("-4", "-o", "addr", "show", "dev", name):
        ip("addr", "add", addr, "dev", name)
    ip("link", "set", "dev", name, "up")


def owned_routes() -> list[str]:
    """Destinations of the routes of ours (any cluster's: they carry no run folder)."""
    routes = json.loads(ip("-j", "-4", "route", "show", "proto", ROUTE_PROTO) or "[]")
    return [str(r["dst"]) for r in routes]


def delete_route(slot: int) -> bool:
    """Delete the slot's `unreachable` route; True when there was one."""
    net = str(slot_network(slot))
    if net not in owned_routes():
        return False
    ip("route", "del", "unreachable", net, "proto", ROUTE_PROTO)
    return True


def ensure_node(node: RealNode, run_dir: Path) -> None:
    """The node's bridge with its IP, joined to the fabric bridge by a veth pair; all up."""
    _bridge(node.bridge, run_dir)
    addr = f"{node.node_ip}/24"
    if addr not in ip("-4", "-o", "addr", "show", "dev", node.bridge):
        ip("addr", "add", addr, "dev", node.bridge)
    if not ip("-j", "link", "show", "dev", node.uplink, check=False).strip():
        ip("link", "add", node.uplink, "type", "veth", "peer", "name", node.downlink)
        for end in (node.uplink, node.downlink):
            ip("link", "set", "dev", end, "alias", alias_for(run_dir))
            _sysctl(end, "ipv6", "disable_ipv6", "1")
    ip("link", "set", "dev", node.uplink, "master", node.bridge)
    ip("link", "set", "dev", node.downlink, "master", fabric_bridge(node.slot))
    for name in (node.uplink, node.downlink, node.bridge):
        ip("link", "set", "dev", name, "up")


def set_node_link(node: RealNode, up: bool) -> None:
    """Cut (or restore) a node's network: its bridge and uplink down or up."""
    for name in (node.bridge, node.uplink):
        ip("link", "set", "dev", name, "up" if up else "down")


def delete_links(run_dir: Path) -> list[str]:
    """Delete every link of ours (a veth's peer goes with it); returns their names."""
    names = owned_links(run_dir)
    for name in names:
        ip("link", "del", "dev", name, check=False)
    return names
