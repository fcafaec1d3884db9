"""Pure parts of the real nodes: address plan, containerd/kubelet/CNI configuration, images, parsers."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import tarfile
import tomllib
from pathlib import Path

import pytest
from lepton_cluster.config import ClusterConfig
from lepton_cluster.realnode import image, machine, plan, render
from lepton_cluster.realnode.cgroups import hierarchies, unescape
from lepton_cluster.realnode.mounts import mounts_under

RUN = Path("/srv/run")


def nodes(count: int = 2, slot: int = 1, offset: int = 1000) -> list[plan.RealNode]:
    return plan.plan_nodes(count, slot=slot, port_offset=offset, run_dir=RUN)


@pytest.mark.parametrize(
    ("env", "slot", "count", "kubelet_port"),
    [
        ({}, 0, 2, 12250),
        ({"LEPTON_PORT_OFFSET": "1000"}, 1, 2, 13250),
        ({"LEPTON_PORT_OFFSET": "2000", "LEPTON_REAL_NODES": "3"}, 2, 3, 14250),
        ({"LEPTON_PORT_OFFSET": "1000", "LEPTON_REAL_NODE_SLOT": "7"}, 7, 2, 13250),
        ({"LEPTON_REAL_NODES": "0"}, 0, 0, None),
    ],
)
def test_config_from_env(env: dict[str, str], slot: int, count: int, kubelet_port: int | None) -> None:
    cfg = ClusterConfig.from_env(env)
    planned = cfg.real_node_plan()
    assert cfg.slot == slot
    assert len(planned) == count
    if planned:
        assert planned[0].kubelet_port == kubelet_port
        assert planned[0].slot == slot


def test_addresses_stay_in_our_range_and_never_overlap() -> None:
    ours = ipaddress.IPv4Network("198.18.0.0/15")
    seen: set[ipaddress.IPv4Network] = set()
    for slot in range(plan.SLOTS):
        for n in nodes(plan.MAX_NODES, slot=slot):
            cidr = ipaddress.IPv4Network(n.node_cidr)
            assert cidr.subnet_of(ours)
            assert cidr.subnet_of(ipaddress.IPv4Network(n.fabric_cidr))
            assert ipaddress.IPv4Address(n.node_ip) in cidr
            first, last = (ipaddress.IPv4Address(a) for a in n.pod_range)
            assert first in cidr and last in cidr and ipaddress.IPv4Address(n.node_ip) < first
            assert cidr not in seen
            seen.add(cidr)


def test_host_names_fit_and_are_unique_per_slot_and_node() -> None:
    names: list[str] = []
    for slot in range(plan.SLOTS):
        names.append(plan.fabric_bridge(slot))
        for n in nodes(plan.MAX_NODES, slot=slot):
            names += [n.bridge, n.uplink, n.downlink]
    assert all(len(x) <= 15 for x in names)  # IFNAMSIZ - 1
    assert len(set(names)) == len(names)
    roots = [n.cgroup_root for slot in range(plan.SLOTS) for n in nodes(plan.MAX_NODES, slot=slot)]
    assert len(set(roots)) == len(roots)


def test_ports_are_unique_and_move_with_the_offset() -> None:
    base, moved = plan.ports(nodes(5, offset=0)), plan.ports(nodes(5, offset=1000))
    assert len(set(base.values())) == len(base)
    assert {k: v + 1000 for k, v in base.items()} == moved
    control_plane = {2379, 2380, 6443, 10247, 10257, 10259}
    assert not control_plane & set(base.values())


def test_plan_refuses_too_many_nodes_and_bad_slots() -> None:
    with pytest.raises(ValueError):
        nodes(plan.MAX_NODES + 1)
    with pytest.raises(ValueError):
        nodes(1, slot=plan.SLOTS)


def test_containerd_config_is_private_to_the_node() -> None:
    n = nodes()[1]
    doc = tomllib.loads(render.containerd_config(n))
    assert doc["version"] == 2
    assert doc["root"] == str(n.containerd_root) and doc["state"] == str(n.containerd_state)
    assert doc["grpc"]["address"] == str(n.containerd_socket)
    assert doc["metrics"]["address"] == "" and doc["debug"]["address"] == ""
    cri = doc["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"] == plan.PAUSE_IMAGE
    assert (cri["stream_server_address"], cri["stream_server_port"]) == ("127.0.0.1", str(n.stream_port))
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["cni"]["conf_dir"] == str(n.cni_conf_dir)
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["options"] == {"SystemdCgroup": False, "Root": str(n.containerd_state / "runc")}
    assert doc["plugins"]["io.containerd.internal.v1.opt"]["path"].startswith(str(n.dir))


def test_containerd_cannot_reach_a_registry() -> None:
    env = render.containerd_env("/usr/bin:/bin")
    assert env["HTTPS_PROXY"] == env["HTTP_PROXY"] == render.NO_REGISTRY_PROXY
    assert ipaddress.ip_address(render.NO_REGISTRY_PROXY.split("//")[1].split(":")[0]).is_loopback


def test_cni_is_a_bridge_without_gateway_masquerade_or_routes() -> None:
    n = nodes()[0]
    conf = render.cni_conflist(n)
    bridge, tuning, loopback = conf["plugins"]
    assert conf["name"] == n.network_name
    assert bridge["bridge"] == n.bridge
    assert not (bridge["isGateway"] or bridge["isDefaultGateway"] or bridge["ipMasq"])
    ipam = bridge["ipam"]
    assert ipam["routes"] == [] and ipam["dataDir"] == str(n.ipam_dir)
    (r,) = ipam["ranges"][0]
    assert r["subnet"] == n.fabric_cidr and (r["rangeStart"], r["rangeEnd"]) == n.pod_range
    assert tuning["type"] == "tuning" and loopback["type"] == "loopback"


def test_kubelet_config() -> None:
    n = nodes()[1]
    cfg = render.kubelet_config(n, ca_file=Path("/ca.crt"), cert_file=Path("/s.crt"), key_file=Path("/s.key"))
    assert (cfg["address"], cfg["port"], cfg["readOnlyPort"]) == (n.node_ip, n.kubelet_port, 0)
    assert (cfg["healthzBindAddress"], cfg["healthzPort"]) == ("127.0.0.1", n.healthz_port)
    assert cfg["failCgroupV1"] is False and cfg["cgroupDriver"] == "cgroupfs"
    assert cfg["cgroupRoot"] == n.cgroup_root
    assert cfg["authentication"]["anonymous"]["enabled"] is False
    assert cfg["authentication"]["x509"]["clientCAFile"] == "/ca.crt"
    assert cfg["authorization"]["mode"] == "Webhook"
    assert cfg["containerRuntimeEndpoint"] == f"unix://{n.containerd_socket}"
    assert cfg["registerWithTaints"] == [
        {"key": plan.RUNTIME_LABEL, "value": plan.RUNTIME_VALUE, "effect": "NoSchedule"}
    ]
    assert cfg["makeIPTablesUtilChains"] is False
    assert cfg["podLogsDir"].startswith(str(n.dir)) and cfg["volumePluginDir"].startswith(str(n.dir))
    argv = render.kubelet_argv(n, Path("/bin/kubelet"))
    assert f"--node-ip={n.node_ip}" in argv and f"--hostname-override={n.name}" in argv
    assert f"--node-labels={plan.RUNTIME_LABEL}={plan.RUNTIME_VALUE}" in argv
    assert all(str(RUN) in a for a in argv if a.startswith(("--root-dir", "--cert-dir", "--config", "--kubeconfig")))


def test_cluster_services_listen_on_the_fabric_address_only() -> None:
    ns = nodes(2, slot=3, offset=3000)
    ip = plan.fabric_ip(3)
    assert ip == "198.19.48.1" and ipaddress.ip_address(ip) in plan.slot_network(3)
    assert all(ipaddress.ip_address(ip) not in ipaddress.ip_network(n.node_cidr) for n in ns)
    cfg = render.kubelet_config(ns[0], ca_file=Path("/ca"), cert_file=Path("/c"), key_file=Path("/k"))
    assert (cfg["clusterDNS"], cfg["clusterDomain"], cfg["resolvConf"]) == ([ip], "cluster.local", "")
    core = render.corefile(listen_ip=ip, ready_port=15550, kubeconfig=Path("/srv/dns.kubeconfig"))
    assert f"bind {ip}\n" in core and "ready 127.0.0.1:15550" in core
    assert "forward" not in core and core.startswith("cluster.local:53 in-addr.arpa:53 {")
    relay = render.api_relay_argv("socat", listen_ip=ip, apiserver_port=9443)
    assert relay[1:] == [f"TCP4-LISTEN:443,bind={ip},reuseaddr,fork", "TCP4:127.0.0.1:9443"]
    assert plan.ports(ns)["coredns ready"] == 15550 and plan.ports([]) == {}


def test_toml_values() -> None:
    assert render.toml({"a.b": {"x": [1, "y"], "t": True}}, {"v": 2}) == 'v = 2\n\n[a.b]\nx = [1, "y"]\nt = true\n'
    with pytest.raises(TypeError):
        render.toml({}, {"bad": 1.5})


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_layer_has_busybox_applets_and_is_reproducible() -> None:
    layer = image.rootfs_layer(b"\x7fELF fake", ["sh", "sleep", "busybox", "ls"])
    assert layer == image.rootfs_layer(b"\x7fELF fake", ["ls", "sleep", "sh"])
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        by_name = {m.name: m for m in tar.getmembers()}
    assert by_name["bin/sh"].issym() and by_name["bin/sh"].linkname == "busybox"
    assert "bin/busybox" in by_name and by_name["bin/busybox"].mode == 0o755
    assert all(m.mtime == 0 and m.uid == 0 for m in by_name.values())


def test_oci_archive_names_both_images_and_every_blob_matches_its_digest() -> None:
    archive = image.oci_archive(image.rootfs_layer(b"bb", ["sh"]))
    files = _members(archive)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    index = json.loads(files["index.json"])
    refs = {}
    for desc in index["manifests"]:
        manifest = json.loads(files[f"blobs/sha256/{desc['digest'].split(':')[1]}"])
        config = json.loads(files[f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"])
        refs[desc["annotations"]["io.containerd.image.name"]] = config["config"]
        assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]
    assert refs[plan.PAUSE_IMAGE]["Entrypoint"][0] == "/bin/sleep"
    assert refs[plan.BUSYBOX_IMAGE]["Cmd"] == ["sh"]
    assert archive == image.oci_archive(image.rootfs_layer(b"bb", ["sh"]))


MOUNTINFO = """\
25 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
31 25 0:27 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
32 25 0:28 / /sys/fs/cgroup/name\\040x rw - cgroup cgroup rw,name=x
40 25 0:50 / /srv/run/realnodes/n0/containerd/state/x/rootfs rw - overlay overlay rw
41 25 0:51 / /srv/run/realnodes/n0/kubelet/pods/u/volumes/v rw - tmpfs tmpfs rw
42 25 0:52 / /srv/run/realnodes-other/a rw - tmpfs tmpfs rw
43 40 0:53 / /srv/run/realnodes/n0/containerd/state/x/rootfs/dev rw - tmpfs tmpfs rw
"""


def test_parsers_of_mountinfo() -> None:
    assert unescape("a\\040b") == "a b"
    assert hierarchies(MOUNTINFO) == [
        Path("/sys/fs/cgroup/cpu"),
        Path("/sys/fs/cgroup/unified"),
        Path("/sys/fs/cgroup/name x"),
    ]
    got = mounts_under(Path("/srv/run/realnodes"), MOUNTINFO)
    assert got[0] == "/srv/run/realnodes/n0/containerd/state/x/rootfs/dev"  # deepest first
    assert set(got) == {
        "/srv/run/realnodes/n0/containerd/state/x/rootfs",
        "/srv/run/realnodes/n0/kubelet/pods/u/volumes/v",
        "/srv/run/realnodes/n0/containerd/state/x/rootfs/dev",
    }


def test_machine_record_restores_settings_and_removes_only_new_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sys_dir, old, new = tmp_path / "sys", tmp_path / "old", tmp_path / "new"
    (sys_dir / "vm").mkdir(parents=True)
    (sys_dir / "vm" / "overcommit_memory").write_text("0\n")
    old.mkdir()
    monkeypatch.setattr(machine, "PROC_SYS", sys_dir)
    monkeypatch.setattr(machine, "KERNEL_SETTINGS", ("vm/overcommit_memory",))
    monkeypatch.setattr(machine, "FOLDERS", (old, new, new / "sub"))
    monkeypatch.setattr(machine, "KUBELET_DEVICE_SOCKET", new / "kubelet.sock")
    record = tmp_path / "run" / "record.json"
    machine.save(record)
    # the kubelet changes a setting and makes folders; a second save keeps the first record
    (sys_dir / "vm" / "overcommit_memory").write_text("1\n")
    (new / "sub").mkdir(parents=True)
    (new / "kubelet.sock").write_text("")
    machine.save(record)
    done = machine.restore(record)
    assert (sys_dir / "vm" / "overcommit_memory").read_text() == "0"
    assert old.exists() and not new.exists()
    assert not record.parent.exists()
    assert "vm.overcommit_memory=0" in done
    assert machine.restore(record) == []


def test_machine_record_of_an_older_checkout_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys_dir = tmp_path / "sys"
    (sys_dir / "kernel").mkdir(parents=True)
    (sys_dir / "kernel" / "panic").write_text("10\n")
    monkeypatch.setattr(machine, "PROC_SYS", sys_dir)
    monkeypatch.setattr(machine, "KERNEL_SETTINGS", ("kernel/panic",))
    monkeypatch.setattr(machine, "FOLDERS", ())
    record = tmp_path / "run" / "record.json"
    legacy = record.with_name(machine.LEGACY_RECORD.name)
    legacy.parent.mkdir()
    legacy.write_text('{"kernel/panic": "1"}')
    assert machine.restore(record) == ["kernel.panic=1"]  # only the legacy record
    assert (sys_dir / "kernel" / "panic").read_text() == "1" and not legacy.exists()
    (sys_dir / "kernel" / "panic").write_text("10\n")
    legacy.parent.mkdir()
    legacy.write_text('{"kernel/panic": "1"}')
    machine.save(record)  # after an older checkout's kubelet changed it: the legacy value wins
    assert json.loads(record.read_text())["kernel"] == {"kernel/panic": "1"}
