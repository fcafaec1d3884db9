"""Start, stop and tear down the real nodes of one cluster (the process side of `realnode`).

Per node: a cgroup root (`kubepods` of the kubelet, `runtime` for containerd and its shims,
`kubelet`), a bridge on the fabric, a containerd, the local images imported, a kubelet. Stopping a
node is a power cut: everything in its cgroup is killed, its mounts and containerd's state (a
tmpfs on a real machine) are gone; its disk (containerd's root, kubelet's folder) stays.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from ..config import kubeconfig
from ..pki import Pki
from ..spawn import spawn_logged
from . import cgroups, image, machine, mounts, network, render
from .plan import RealNode, fabric_bridge, slot_network
from .services import Services

#: Debian packages the real nodes need (apt-get install ...).
PACKAGES = (
    "containerd",
    "runc",
    "containernetworking-plugins",
    "busybox-static",
    "iproute2",
    "util-linux",
    "socat",
)
HOST_TOOLS = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "ip": "iproute2",
    "umount": "util-linux",
    "socat": "socat",
}
CNI_PLUGINS = ("bridge", "host-local", "loopback", "tuning")
CNI_CACHE = Path("/var/lib/cni/results")
#: The kubelet links every container's log here (hard-coded); ours point into the node's folder.
CONTAINER_LOG_LINKS = Path("/var/log/containers")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RealNodeError(RuntimeError):
    pass


def missing_host_parts() -> list[str]:
    """What the machine lacks for real nodes, each with the Debian package that brings it."""
    out = [f"{tool} ({pkg})" for tool, pkg in HOST_TOOLS.items() if shutil.which(tool, path=PATH) is None]
    out += [
        f"{render.CNI_BIN_DIR / p} (containernetworking-plugins)"
        for p in CNI_PLUGINS
        if not (render.CNI_BIN_DIR / p).exists()
    ]
    if not image.BUSYBOX.exists():
        out.append(f"{image.BUSYBOX} (busybox-static)")
    if os.geteuid() != 0:
        out.append("root (real nodes mount, make links and cgroups)")
    if not any(h.name == "memory" for h in cgroups.hierarchies()):
        out.append("a cgroup v1 memory hierarchy")
    return out


def write_files(node: RealNode, pki: Pki, apiserver_url: str) -> None:
    """Certificates, kubeconfig and configuration files of one node (fresh folder)."""
    if node.dir.exists():
        shutil.rmtree(node.dir)
    for d in (node.dir, node.cni_conf_dir, node.ipam_dir, node.pod_logs_dir, node.kubelet_root):
        d.mkdir(parents=True, exist_ok=True)
    (node.dir / "slot").write_text(f"{node.slot}\n")
    user = f"system:node:{node.name}"
    client = pki.issue(f"{node.cert_name}-client", user, organizations=("system:nodes",))
    serving = pki.issue(
        f"{node.cert_name}-serving",
        user,
        dns_names=(node.name,),
        ip_addresses=(node.node_ip,),
        server=True,
        client=False,
    )
    kc = kubeconfig(apiserver_url, pki.ca_b64(), client.cert_b64(), client.key_b64(), user)
    node.kubeconfig.write_text(yaml.safe_dump(kc, sort_keys=False))
    node.kubeconfig.chmod(0o600)
    config = render.kubelet_config(node, ca_file=pki.ca.cert, cert_file=serving.cert, key_file=serving.key)
    node.kubelet_config.write_text(yaml.safe_dump(config, sort_keys=False))
    node.containerd_config.write_text(render.containerd_config(node))
    (node.cni_conf_dir / "10-lepton.conflist").write_text(json.dumps(render.cni_conflist(node), indent=2) + "\n")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def shim_sockets(state: Path) -> list[Path]:
    """The shims' sockets (in containerd's fixed /run/containerd/s) named in a node's task folders."""
    found = set()
    for address in state.glob("io.containerd.runtime.v2.task/*/*/address"):
        text = _read(address).strip()
        if text.startswith("unix:///run/containerd/s/"):
            found.add(Path(text.removeprefix("unix://")))
    return sorted(found)


def build_images(dest: Path) -> Path:
    """The busybox/pause image archive, from this machine's busybox-static."""
    applets = subprocess.run([str(image.BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout
    layer = image.rootfs_layer(image.BUSYBOX.read_bytes(), applets.split())
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(image.oci_archive(layer))
    return dest


class RealNodes:
    """The real nodes of one cluster: their processes, links, cgroups and mounts."""

    def __init__(
        self, nodes: list[RealNode], *, run_dir: Path, bin_dir: Path, log_dir: Path, port_offset: int = 0
    ) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.run_dir = run_dir
        self.bin_dir = bin_dir
        self.log_dir = log_dir
        slot = nodes[0].slot if nodes else 0
        #: CoreDNS and the API relay of the pods (started with the kubelets)
        self.services = Services(slot=slot, run_dir=run_dir, bin_dir=bin_dir, log_dir=log_dir, port_offset=port_offset)

    @property
    def images_archive(self) -> Path:
        return self.run_dir / "realnodes" / "images.tar"

    def node(self, name: str) -> RealNode:
        try:
            return self.nodes[name]
        except KeyError:
            raise RealNodeError(f"no real node {name!r} (have: {', '.join(self.nodes)})") from None

    # -- pre-flight ------------------------------------------------------------------------
    def preflight(self) -> list[str]:
        """Problems that would stop the real nodes from starting (empty when none)."""
        if not self.nodes:
            return []
        problems = missing_host_parts()
        if problems:
            pkgs = " ".join(PACKAGES)
            return [f"real nodes need: {', '.join(problems)} (apt-get install {pkgs})"]
        first = next(iter(self.nodes.values()))
        names = [fabric_bridge(first.slot)]
        for n in self.nodes.values():
            names += [n.bridge, n.uplink, n.downlink]
        problems += network.names_taken(names, self.run_dir)
        problems += network.conflicts(first.fabric_cidr, self.run_dir)
        taken = set(cgroups.roots(f"lepton-{first.slot}-"))
        problems += [
            f"cgroup {root} exists (another cluster in slot {first.slot}?)"
            for root in [*(n.cgroup_root for n in self.nodes.values()), self.services.cgroup]
            if root in taken
        ]
        return problems

    # -- start -----------------------------------------------------------------------------
    def start_runtimes(self) -> None:
        """Images, links, cgroups and containerd (images imported) of every node, nodes in parallel.
        Needs no apiserver: `up` runs it while the control plane starts."""
        if not self.nodes:
            return
        for node in self.nodes.values():  # a fresh log per `up`, as the control plane's
            for what in ("containerd", "kubelet"):
                self._log_path(node, what).unlink(missing_ok=True)
        build_images(self.images_archive)
        first = next(iter(self.nodes.values()))
        network.ensure_fabric(first.slot, self.run_dir)
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            list(pool.map(self.start_runtime, self.nodes))

    def start_kubelets(self, apiserver_port: int) -> None:
        """The pods' cluster services, then every node's kubelet (after `start_runtimes`; the apiserver
        should answer by now)."""
        self.services.start(apiserver_port)
        for name in self.nodes:
            self.start_kubelet(name)

    def start(self, name: str) -> None:
        """Start (or restart after `stop`) one node's containerd and kubelet."""
        self.start_runtime(name)
        self.start_kubelet(name)

    def start_runtime(self, name: str) -> None:
        node = self.node(name)
        network.ensure_node(node, self.run_dir)
        for sub in ("runtime", "kubelet"):
            cgroups.create(f"{node.cgroup_root}/{sub}")
        containerd = Path(shutil.which("containerd", path=PATH) or "containerd")
        env = render.containerd_env(PATH)
        self._spawn(node, "containerd", render.containerd_argv(node, containerd), env, node.runtime_cgroup)
        self._wait_containerd(node, timeout=30.0)
        self._ctr(node, "images", "import", str(self.images_archive))

    def start_kubelet(self, name: str) -> None:
        node = self.node(name)
        machine.save()  # before the kubelet changes anything outside our folders
        argv = render.kubelet_argv(node, self.bin_dir / "kubelet")
        self._spawn(node, "kubelet", argv, {"PATH": PATH}, f"{node.cgroup_root}/kubelet")

    def load_image(self, archive: Path, names: list[str] | None = None) -> None:
        """Import an image archive (OCI or docker-archive tar) into the containerd of every node
        (or of `names`), as `kind load` does; nodes in parallel."""

        def load(name: str) -> None:
            self._ctr(self.node(name), "images", "import", str(archive), timeout=600.0)

        chosen = list(self.nodes) if names is None else names
        with ThreadPoolExecutor(max_workers=max(1, len(chosen))) as pool:
            list(pool.map(load, chosen))

    def _log_path(self, node: RealNode, what: str) -> Path:
        return self.log_dir / f"{node.name}-{what}.log"

    def _spawn(self, node: RealNode, what: str, argv: list[str], env: dict[str, str], cgroup: str) -> int:
        proc = spawn_logged(
            argv,
            log_path=self._log_path(node, what),
            pid_file=node.dir / f"{what}.pid",
            cwd=node.dir,
            env=env,
            append=True,
            preexec_fn=cgroups.joiner(cgroup),
        )
        return proc.pid

    def _ctr(self, node: RealNode, *args: str, timeout: float = 60.0) -> str:
        argv = ["ctr", "--address", str(node.containerd_socket), "--namespace", "k8s.io", *args]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env={"PATH": PATH})
        if res.returncode != 0:
            raise RealNodeError(f"{' '.join(argv)} exited {res.returncode}: {res.stderr.strip()}")
        return res.stdout

    def _wait_containerd(self, node: RealNode, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pid = int((node.dir / "containerd.pid").read_text())
        while True:
            if node.containerd_socket.exists():
                with contextlib.suppress(RealNodeError, subprocess.TimeoutExpired):
                    self._ctr(node, "version", timeout=5.0)
                    return
            if not cgroups.pids(node.runtime_cgroup) or not Path(f"/proc/{pid}").exists():
                raise RealNodeError(f"containerd of {node.name} exited; see {self._log_path(node, 'containerd')}")
            if time.monotonic() > deadline:
                raise RealNodeError(f"containerd of {node.name} did not answer within {timeout} s")
            time.sleep(0.1)

    def pids(self, name: str) -> dict[str, int | None]:
        """The node's containerd and kubelet pids (None: not running)."""
        node = self.node(name)
        live = cgroups.pids(node.cgroup_root)
        out: dict[str, int | None] = {}
        for what in ("containerd", "kubelet"):
            try:
                pid: int | None = int((node.dir / f"{what}.pid").read_text())
            except (OSError, ValueError):
                pid = None
            out[what] = pid if pid in live else None
        return out

    # -- stop ------------------------------------------------------------------------------
    def stop(self, name: str) -> None:
        """Power cut: kill everything of the node, drop its mounts and containerd's state."""
        node = self.node(name)
        sockets = shim_sockets(node.containerd_state)
        cgroups.kill_all(node.cgroup_root)
        mounts.unmount_all(node.dir)
        for sock in sockets:
            sock.unlink(missing_ok=True)
        shutil.rmtree(node.containerd_state, ignore_errors=True)
        for what in ("containerd", "kubelet"):
            (node.dir / f"{what}.pid").unlink(missing_ok=True)

    def set_link(self, name: str, up: bool) -> None:
        network.set_node_link(self.node(name), up)

    # -- teardown --------------------------------------------------------------------------
    def _owned(self) -> list[tuple[Path, int]]:
        """Node folders of this run folder that were started (their `slot` file), with the slot;
        and planned nodes whose cgroup exists while our fabric bridge does (the folder was lost)."""
        found = {}
        for slot_file in sorted((self.run_dir / "realnodes").glob("*/slot")):
            with contextlib.suppress(OSError, ValueError):
                found[slot_file.parent] = int(slot_file.read_text())
        links = set(network.owned_links(self.run_dir))
        for n in self.nodes.values():
            if fabric_bridge(n.slot) in links and n.cgroup_root in cgroups.roots(f"lepton-{n.slot}-"):
                found.setdefault(n.dir, n.slot)
        return sorted(found.items())

    def teardown(self, log: Callable[[str], None]) -> list[str]:
        """Remove everything the real nodes of this run folder made on the machine (safe twice):
        processes, mounts, network namespaces, links, cgroups, CNI cache files, log links; then the
        kernel settings the kubelet changed, when no other local cluster's kubelet runs."""
        done: list[str] = []
        base = self.run_dir / "realnodes"
        owned = self._owned()
        sockets = [s for node_dir, _ in owned for s in shim_sockets(node_dir / "containerd" / "state")]
        for node_dir, slot in owned:
            killed = cgroups.kill_all(f"/lepton-{slot}-{node_dir.name}")
            if killed:
                done.append(f"{killed} processes of {node_dir.name}")
        unmounted = mounts.unmount_all(base)
        if unmounted:
            done.append(f"{len(unmounted)} mounts")
        for node_dir, slot in owned:
            cgroups.remove(f"/lepton-{slot}-{node_dir.name}")
        # The route goes last: while any of our addresses is up, the slot's /20 stays unreachable.
        ours = set(network.owned_links(self.run_dir))
        unroute = sorted({slot for _, slot in owned if fabric_bridge(slot) in ours})
        links = network.delete_links(self.run_dir)
        if links:
            done.append(f"links {', '.join(links)}")
        for slot in unroute:
            if network.delete_route(slot):
                done.append(f"route {slot_network(slot)}")
        for sock in sockets:
            sock.unlink(missing_ok=True)
        cached = [f for f in CNI_CACHE.glob("*") if f"{base}/" in _read(f)]
        for f in cached:
            f.unlink(missing_ok=True)
        if sockets or cached:
            done.append(f"{len(sockets)} shim sockets, {len(cached)} CNI cache files")
        for link in CONTAINER_LOG_LINKS.glob("*.log"):
            with contextlib.suppress(OSError):
                if os.readlink(link).startswith(f"{base}/"):
                    link.unlink()
        if owned and not cgroups.roots("lepton-"):
            restored = machine.restore()
            if restored:
                done.append(f"machine state back as before the first real node ({', '.join(restored)})")
        for node_dir, _ in owned:
            (node_dir / "slot").unlink(missing_ok=True)
        for msg in done:
            log(f"real nodes: removed {msg}")
        return done

    def leftovers(self) -> list[str]:
        """What of ours is still on the machine (empty after a clean teardown)."""
        base = self.run_dir / "realnodes"
        left = [f"mount {m}" for m in mounts.mounts_under(base)]
        left += [f"link {n}" for n in network.owned_links(self.run_dir)]
        names = {n.cgroup_root for n in self.nodes.values()} | ({self.services.cgroup} if self.nodes else set())
        names |= {f"/lepton-{slot}-{d.name}" for d, slot in self._owned()}
        left += [f"cgroup {r}" for r in cgroups.roots("lepton-") if r in names]
        slots = {n.slot for n in self.nodes.values()} | {slot for _, slot in self._owned()}
        left += [f"route {r}" for r in network.owned_routes() if r in {str(slot_network(s)) for s in slots}]
        return left
