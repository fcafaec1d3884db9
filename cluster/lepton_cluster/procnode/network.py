"""The agent's network: one bridge with a /24 of its own, a network namespace and veth pair per pod.

Nothing routes off the machine: the bridge has no uplink, IPv4 forwarding is off on it (a packet a pod
sends to any other address is dropped by the host), pods get only the bridge's connected route (no
default route) and IPv6 is disabled on every interface we make. The agent refuses a range the machine
already routes or uses.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from .hostsfile import RESOLV_CONF
from .settings import AgentSettings

NETNS_ETC = Path("/etc/netns")


class NetworkError(RuntimeError):
    pass


def ip(*args: str, check: bool = True) -> str:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and res.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {res.stderr.strip() or res.returncode}")
    return res.stdout


def _sysctl(path: str, value: str, netns: str | None = None) -> None:
    if netns is None:
        Path(path).write_text(value)
    else:
        subprocess.run(["ip", "netns", "exec", netns, "sh", "-c", f"echo {value} > {path}"], check=True, timeout=30)


def range_conflicts(network: ipaddress.IPv4Network, bridge: str) -> list[str]:
    """Routes or addresses of this machine (other than our bridge's) that overlap `network`."""
    found = []
    for route in json.loads(ip("-j", "-4", "route", "show", "table", "all") or "[]"):
        dst, dev = route.get("dst", ""), route.get("dev", "")
        if dst in ("default", "") or dev == bridge:
            continue
        try:
            net = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
        except ValueError:
            continue
        if net.overlaps(network):
            found.append(f"route {dst} dev {dev}")
    for link in json.loads(ip("-j", "-4", "addr") or "[]"):
        if link.get("ifname") == bridge:
            continue
        for a in link.get("addr_info", []):
            iface = ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")
            if iface.network.overlaps(network):
                found.append(f"address {iface} on {link.get('ifname')}")
    return found


def link_exists(name: str) -> bool:
    return bool(ip("-j", "link", "show", "dev", name, check=False).strip())


def ensure_bridge(s: AgentSettings) -> None:
    conflicts = range_conflicts(s.network, s.bridge)
    if conflicts:
        raise NetworkError(f"pod range {s.network} is already in use on this machine: {'; '.join(conflicts)}")
    if not link_exists(s.bridge):
        ip("link", "add", s.bridge, "type", "bridge")
    _sysctl(f"/proc/sys/net/ipv6/conf/{s.bridge}/disable_ipv6", "1")
    _sysctl(f"/proc/sys/net/ipv4/conf/{s.bridge}/forwarding", "0")
    gateway = f"{s.gateway}/{s.network.prefixlen}"
    if gateway not in ip("-4", "-o", "addr", "show", "dev", s.bridge):
        ip("addr", "add", gateway, "dev", s.bridge)
    ip("link", "set", s.bridge, "up")


def delete_bridge(s: AgentSettings) -> None:
    if link_exists(s.bridge):
        ip("link", "del", s.bridge)


def list_netns(prefix: str) -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.startswith(prefix)]


def create_sandbox(s: AgentSettings, netns: str, veth: str, address: str) -> None:
    """netns with loopback up and eth0 = our end of a veth whose peer sits in the bridge."""
    delete_sandbox(netns, veth)
    etc = NETNS_ETC / netns
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(RESOLV_CONF)
    (etc / "hosts").touch()
    ip("netns", "add", netns)
    _sysctl("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1", netns)
    _sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1", netns)
    ip("-n", netns, "link", "set", "lo", "up")
    peer = f"{veth}p"
    ip("link", "add", veth, "type", "veth", "peer", "name", peer)
    _sysctl(f"/proc/sys/net/ipv6/conf/{veth}/disable_ipv6", "1")
    ip("link", "set", peer, "netns", netns)
    ip("-n", netns, "link", "set", peer, "name", "eth0")
    ip("-n", netns, "addr", "add", f"{address}/{s.network.prefixlen}", "dev", "eth0")
    ip("-n", netns, "link", "set", "eth0", "up")
    ip("link", "set", veth, "master", s.bridge, "up")


def netns_pids(netns: str) -> list[int]:
    """Every process whose network namespace is `netns` (containers whose pids were never recorded too)."""
    return [int(p) for p in ip("netns", "pids", netns, check=False).split() if p.isdigit()]


def kill_netns_processes(netns: str, timeout: float = 10.0) -> list[int]:
    """SIGKILL whatever still runs in the pod's namespace; returns the pids that were killed.

    A pod's processes are stopped gracefully through their shims first; this is the backstop for what no
    record names (a shim that died before writing run.json left its container running, orphaned).
    """
    pids = netns_pids(netns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while netns_pids(netns) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids


def delete_sandbox(netns: str, veth: str | None) -> None:
    """Remove the namespace (killing what still runs in it), the veth pair and /etc/netns/<netns>."""
    if netns in ip("netns", "list"):
        kill_netns_processes(netns)
        ip("netns", "del", netns, check=False)
    if veth and link_exists(veth):
        ip("link", "del", veth, check=False)
    etc = NETNS_ETC / netns
    if etc.exists():
        for f in etc.iterdir():
            f.unlink()
        with contextlib.suppress(OSError):
            etc.rmdir()


def netns_routes(netns: str) -> list[str]:
    """Destinations a namespace routes to (tests: only the bridge's range)."""
    return [r.get("dst", "") for r in json.loads(ip("-n", netns, "-j", "-4", "route", "show", "table", "all") or "[]")]
