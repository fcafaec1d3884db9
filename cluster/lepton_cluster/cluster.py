"""The local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok.

Every process binds 127.0.0.1 only, writes its output to `<run_dir>/logs/<name>.log` and its pid
to `<run_dir>/pids/<name>.pid`. Processes run in their own sessions, so the cluster outlives the
`python -m lepton_cluster up` that started it; `down` finds them again by pid file and by a scan of
/proc for our binaries whose command line names this run directory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from . import config as cfg
from . import kueue
from .config import ClusterConfig, GpuType
from .pki import Pki
from .realnode.node import RealNodeError, RealNodes
from .realnode.node import write_files as write_node_files
from .realnode.services import DNS_RBAC
from .realnode.services import WHAT as SERVICE_PROCESSES
from .spawn import spawn_logged

#: Start order; `down` stops in reverse.
ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
#: Every process `down` stops: kueue runs only when asked (LEPTON_KUEUE=1, docs/kueue.md).
PROCESSES = (*ORDER, kueue.NAME)
STOP_GRACE_SECONDS = 10.0


class ClusterError(RuntimeError):
    """The control plane cannot be started, reached or changed; the message says why."""


class KubectlError(ClusterError):
    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv, self.returncode, self.stdout, self.stderr = argv, returncode, stdout, stderr
        super().__init__(f"{' '.join(argv[:1] + argv[2:])} exited {returncode}: {stderr.strip() or stdout.strip()}")


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    running: bool
    rss_mib: float | None


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _log(msg: str) -> None:
    print(f"[cluster] {msg}", file=sys.stderr, flush=True)


def _proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _proc_alive(pid: int) -> bool:
    """True for a live process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _http_get(port: int, path: str, ctx: ssl.SSLContext | None, timeout: float = 2.0) -> tuple[int, str] | None:
    """GET from 127.0.0.1 (never through a proxy); None when the port does not answer."""
    conn: http.client.HTTPConnection
    if ctx is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class Cluster:
    """Start, stop and poke the local control plane. See docs/cluster.md."""

    def __init__(self, config: ClusterConfig | None = None) -> None:
        self.config = config or ClusterConfig.from_env()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._api_client: Any = None
        self._starting_real: list[str] = []
        #: seconds from the first process start to each readiness mark of the last `up`
        self.start_timings: dict[str, float] = {}
        c = self.config
        #: nodes with a real kubelet and containerd (docs/cluster.md, "Real nodes")
        self.real = RealNodes(
            c.real_node_plan(), run_dir=c.run_dir, bin_dir=c.bin_dir, log_dir=c.log_dir, port_offset=c.port_offset
        )

    @classmethod
    def from_env(cls, **overrides: Any) -> Cluster:
        return cls(ClusterConfig.from_env(**overrides))

    # -- paths -----------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (user `admin`, group system:masters)."""
        return self.config.admin_kubeconfig

    @property
    def bin_dir(self) -> Path:
        return self.config.bin_dir

    def _bin(self, tool: str) -> str:
        return str(self.bin_dir / tool)

    # -- lifecycle -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.config.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.config.run_dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def build(self) -> Path:
        """Run cluster/build.sh (instant when cached); returns its bin folder."""
        script = cfg.REPO_ROOT / "cluster" / "build.sh"
        env = {**os.environ, "LEPTON_CACHE_DIR": str(self.config.cache_dir)}
        res = subprocess.run([str(script)], stdout=subprocess.PIPE, text=True, env=env, check=False)
        if res.returncode != 0:
            raise ClusterError(f"cluster/build.sh failed (exit {res.returncode}); its messages are above")
        lines = res.stdout.strip().splitlines()
        if not lines:
            raise ClusterError("cluster/build.sh printed no bin folder")
        return Path(lines[-1])

    def up(self, *, restart: bool = False, build: bool = True) -> float:
        """Start everything (or reuse a ready cluster) and return the warm start time in seconds.

        Warm start = first process started -> apiserver /readyz ok, scheduler and controller-manager
        /healthz ok, kwok healthy, every start-up node Ready and untainted, and the `default`
        ServiceAccount present in `default`.
        """
        with self._lock():
            if not restart and self.is_ready() and self._real_nodes_running():
                _log(f"already running (apiserver {self.config.apiserver_url}); `down` first to restart")
                if self.config.kueue:
                    self.start_kueue()
                return 0.0
            if self._running_pids():
                _log("stopping the leftovers of a previous cluster")
                self._stop()
            self._stop_real_nodes()
            if build:
                built = self.build()
                if built.resolve() != self.bin_dir.resolve():
                    raise ClusterError(f"build.sh made {built}, expected {self.bin_dir}")
            self._preflight()
            self._prepare_dirs()
            self._make_pki()
            self._write_configs()
            elapsed = self._start()
            if self.config.kueue:
                self.start_kueue()
            return elapsed

    def start_kueue(self) -> float:
        """Start Kueue on this running cluster (nothing when it runs); seconds to its /readyz."""
        try:
            took = kueue.start(self, timeout=self.config.start_timeout)
        except (OSError, RuntimeError, KubectlError) as e:
            raise ClusterError(f"kueue: {e}\n{self._tail(kueue.NAME, 20)}") from e
        if took:
            self.start_timings["kueue"] = took
            _log(f"kueue ready in {took:.1f} s (CRDs, webhooks, process)")
        return took

    def down(self) -> list[str]:
        """Stop every process of this cluster (safe to call twice). Returns what it stopped."""
        with self._lock():
            stopped = self._stop()
        self._api_client = None
        return stopped

    def is_ready(self) -> bool:
        """The admin kubeconfig exists and the apiserver answers /readyz with ok."""
        if not self.kubeconfig.exists() or not self.config.pki_dir.joinpath("admin.crt").exists():
            return False
        try:
            got = _http_get(self.config.ports.apiserver, "/readyz", self._admin_ssl())
        except (OSError, ssl.SSLError):
            return False
        return got is not None and got[0] == 200

    def status(self) -> dict[str, ComponentStatus]:
        out = {}
        pids = self._pidfile_pids()
        for name in (*ORDER, *([kueue.NAME] if kueue.NAME in pids else [])):  # kueue: only when it was started
            pid = pids.get(name)
            running = pid is not None and _proc_alive(pid) and self._is_ours(pid)
            out[name] = ComponentStatus(name, pid, running, _rss_mib(pid) if running and pid else None)
        for node in self.real.nodes:
            for what, pid in self.real.pids(node).items():
                out[f"{node}/{what}"] = ComponentStatus(
                    f"{node}/{what}", pid, pid is not None, _rss_mib(pid) if pid else None
                )
        for what, pid in (self.real.services.pids() if self.real.nodes else {}).items():
            out[what] = ComponentStatus(what, pid, pid is not None, _rss_mib(pid) if pid else None)
        return out

    # -- internals: preparation ------------------------------------------------------------
    def _preflight(self) -> None:
        tools = (*cfg.TOOLS, "kubelet", "coredns") if self.real.nodes else cfg.TOOLS
        missing = cfg.missing_tools(self.bin_dir, tools)
        if missing:
            raise ClusterError(
                f"missing tools in {self.bin_dir}: {', '.join(missing)} (run cluster/build.sh; it needs Go 1.26)"
            )
        taken = cfg.taken_ports(self.config.ports) + cfg.taken_real_node_ports(self.config.real_node_plan())
        if taken:
            raise ClusterError("; ".join(taken) + " (stop what uses it, or set LEPTON_PORT_OFFSET to move every port)")
        problems = self.real.preflight()
        if problems:
            raise ClusterError("; ".join(problems) + " (LEPTON_REAL_NODES=0 starts none)")

    def _prepare_dirs(self) -> None:
        c = self.config
        for d in (c.pki_dir, c.etcd_dir):
            shutil.rmtree(d, ignore_errors=True)
        (c.run_dir / "next-node-index").unlink(missing_ok=True)
        for d in (c.pki_dir, c.log_dir, c.pid_dir, c.etcd_dir, c.run_dir / "certs"):
            d.mkdir(parents=True, exist_ok=True)
        c.etcd_dir.chmod(0o700)

    def _make_pki(self) -> None:
        c = self.config
        pki = Pki(c.pki_dir)
        pki.make_ca()
        pki.issue(
            "apiserver",
            "kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            # the real nodes' pods reach the API server at the fabric address (realnode/services.py)
            ip_addresses=(
                "127.0.0.1",
                "::1",
                cfg.service_ip(c.service_cidr),
                *([self.real.services.ip] if self.real.nodes else []),
            ),
            server=True,
            client=False,
        )
        identities = {
            "admin": ("admin", ("system:masters",)),
            "kube-scheduler": ("system:kube-scheduler", ()),
            "kube-controller-manager": ("system:kube-controller-manager", ()),
            "kwok": ("kwok", ("system:masters",)),
        }
        # The apiserver's client cert for proxying to aggregated APIs; it also fills the
        # requestheader part of kube-system/extension-apiserver-authentication, which the
        # scheduler's and controller-manager's delegated authentication read.
        pki.issue("front-proxy-client", "front-proxy-client")
        # The apiserver's client cert towards kubelets (logs, exec, port-forward); the kubelets'
        # webhook authorizer allows system:masters everything.
        pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", organizations=("system:masters",))
        ca_b64 = pki.ca_b64()
        for name, (cn, groups) in identities.items():
            pair = pki.issue(name, cn, organizations=groups)
            kc = cfg.kubeconfig(c.apiserver_url, ca_b64, pair.cert_b64(), pair.key_b64(), name)
            path = c.kubeconfig_for(name)
            path.write_text(yaml.safe_dump(kc, sort_keys=False))
            path.chmod(0o600)
        pki.service_account_keys()
        for node in self.real.nodes.values():
            write_node_files(node, pki, c.apiserver_url)
        if self.real.nodes:
            self.real.services.write_files(pki, c.apiserver_url)

    def _write_configs(self) -> None:
        c = self.config
        (c.run_dir / "kube-scheduler.yaml").write_text(
            yaml.safe_dump(cfg.scheduler_config(c.kubeconfig_for("kube-scheduler")), sort_keys=False)
        )
        (c.run_dir / "kwok.yaml").write_text(cfg.render_yaml_documents(cfg.kwok_documents(c.ports)))

    def argv(self, name: str) -> list[str]:
        """The command line of one component."""
        c, p, pki = self.config, self.config.ports, self.config.pki_dir
        etcd_url = f"http://127.0.0.1:{p.etcd}"
        peer_url = f"http://127.0.0.1:{p.etcd_peer}"
        if name == "etcd":
            return [
                self._bin("etcd"),
                "--name=lepton",
                f"--data-dir={c.etcd_dir}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=lepton={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",  # a throw-away dev store: don't pay for fsync on a shared disk
                "--quota-backend-bytes=8589934592",
                "--auto-compaction-mode=periodic",
                "--auto-compaction-retention=5m",
                "--log-level=warn",
            ]
        if name == "kube-apiserver":
            return [
                self._bin("kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={p.apiserver}",
                f"--cert-dir={c.run_dir / 'certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={c.service_cidr}",
                "--endpoint-reconciler-type=none",
                f"--requestheader-client-ca-file={pki / 'ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                # Real nodes: reach kubelets at their InternalIP (never through the machine's DNS),
                # with a client cert they trust, and check their serving certs against our CA.
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                "--max-requests-inflight=800",
                "--max-mutating-requests-inflight=400",
                f"--profiling={str(c.profiling).lower()}",
                *c.feature_gates(name),
            ]
        if name == "kube-controller-manager":
            kc = c.kubeconfig_for("kube-controller-manager")
            return [
                self._bin("kube-controller-manager"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={p.controller_manager}",
                f"--cert-dir={c.run_dir / 'certs'}",
                "--leader-elect=false",
                f"--flex-volume-plugin-dir={c.run_dir / 'flexvolume'}",
                "--use-service-account-credentials=true",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={c.service_cidr}",
                "--kube-api-qps=1000",
                "--kube-api-burst=2000",
                *self._controllers_args(),
                f"--profiling={str(c.profiling).lower()}",
                *c.feature_gates(name),
            ]
        if name == "kube-scheduler":
            kc = c.kubeconfig_for("kube-scheduler")
            return [
                self._bin("kube-scheduler"),
                f"--config={c.run_dir / 'kube-scheduler.yaml'}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={p.scheduler}",
                f"--cert-dir={c.run_dir / 'certs'}",
                f"--profiling={str(c.profiling).lower()}",
                *c.feature_gates(name),
            ]
        if name == "kwok":
            return [
                self._bin("kwok"),
                f"--kubeconfig={c.kubeconfig_for('kwok')}",
                f"--config={c.run_dir / 'kwok.yaml'}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-label-selector={cfg.KWOK_MANAGED_LABEL}={cfg.KWOK_MANAGED_VALUE}",
                f"--cidr={cfg.KWOK_FALLBACK_CIDR}",
                "--node-ip=127.0.0.1",
                f"--server-address=127.0.0.1:{p.kwok}",
                "--node-lease-duration-seconds=40",
            ]
        raise KeyError(name)

    def _controllers_args(self) -> list[str]:
        """Controllers of the controller-manager. kwok pods have loopback IPs, which the API refuses as
        endpoint addresses: the legacy Endpoints controller only failed (422) and retried, so it stays off
        (nothing reads Endpoints). The EndpointSlice controller feeds the real nodes' cluster DNS; its
        cost on kwok pods is measured in docs/cluster.md ("Cluster DNS")."""
        off = ["-endpoints-controller", "-endpointslice-mirroring-controller"]
        if not self.config.endpointslice_controller:
            return [f"--controllers={','.join(['*', *off, '-endpointslice-controller'])}"]
        # one slice write per Service per second at most, however many of its pods change
        return [f"--controllers={','.join(['*', *off])}", "--endpointslice-updates-batch-period=1s"]

    # -- internals: processes --------------------------------------------------------------
    def _spawn(self, name: str) -> None:
        c = self.config
        argv = self.argv(name)
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        self._procs[name] = spawn_logged(
            argv, log_path=c.log_dir / f"{name}.log", pid_file=c.pid_dir / f"{name}.pid", cwd=c.run_dir, env=env
        )

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            code = proc.poll()
            if code is not None:
                raise ClusterError(
                    f"{name} exited with code {code} during start-up; last lines of its log:\n" + self._tail(name, 30)
                )
        for what, pid in (self.real.services.pids() if self._starting_real else {}).items():
            if pid is None:
                raise ClusterError(f"{what} exited during start-up; last lines of its log:\n{self._tail(what, 30)}")
        for node in self._starting_real:
            for what, pid in self.real.pids(node).items():
                if pid is None:
                    log = f"{node}-{what}"
                    raise ClusterError(
                        f"{what} of {node} exited during start-up; last lines of its log:\n{self._tail(log, 30)}"
                    )

    def _wait(self, what: str, predicate: Callable[[], bool], deadline: float) -> None:
        while True:
            self._check_alive()
            if predicate():
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out waiting for {what}\n{self.logs_tail(15)}")
            time.sleep(0.1)

    def _start(self) -> float:
        c, p = self.config, self.config.ports
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # components' self-signed serving certs on 127.0.0.1
        t0 = time.monotonic()
        deadline = t0 + c.start_timeout
        marks: dict[str, float] = {}

        def wait(what: str, predicate: Callable[[], bool]) -> None:
            self._wait(what, predicate, deadline)
            marks[what] = time.monotonic() - t0

        def answers(port: int, path: str, ctx: ssl.SSLContext | None) -> Callable[[], bool]:
            return lambda: (_http_get(port, path, ctx) or (0, ""))[0] == 200

        names = [cfg.node_name(i) for i in range(c.nodes.count)]
        real = list(self.real.nodes)
        # containerd and the images need no apiserver: they start beside the control plane.
        runtimes = ThreadPoolExecutor(max_workers=1)

        def start_runtimes() -> float:
            self.real.start_runtimes()
            return time.monotonic() - t0

        runtimes_started = runtimes.submit(start_runtimes)
        try:
            self._spawn("etcd")
            wait("etcd", answers(p.etcd, "/health", None))
            self._spawn("kube-apiserver")
            wait("apiserver /readyz", answers(p.apiserver, "/readyz", self._admin_ssl()))
            for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
                self._spawn(name)
            self.create_nodes(cfg.default_nodes(c.nodes))
            runtimes_ready = runtimes_started.result()
            if real:
                marks["real nodes' containerd"] = runtimes_ready
                self.kubectl("apply", "-f", "-", input=DNS_RBAC)
                self.real.start_kubelets(p.apiserver)
                self._starting_real = real
            wait("scheduler", answers(p.scheduler, "/healthz", insecure))
            wait("controller-manager", answers(p.controller_manager, "/healthz", insecure))
            wait("kwok", answers(p.kwok, "/healthz", None))
            wait(f"{len(names)} nodes Ready", lambda: self._nodes_schedulable(names))
            if real:
                wait(f"{len(real)} real nodes Ready", lambda: self._nodes_schedulable(real))
                wait("cluster DNS", answers(self.real.services.ready_port, "/ready", None))
            wait("default ServiceAccount", self._default_sa_exists)
        except BaseException:
            _log("start-up failed; stopping what was started")
            self._starting_real = []
            runtimes.shutdown(wait=True)
            self._stop()
            raise
        finally:
            runtimes.shutdown(wait=False)
        self._starting_real = []
        elapsed = time.monotonic() - t0
        self.start_timings = marks
        detail = ", ".join(f"{k} {v:.1f} s" for k, v in marks.items())
        _log(f"ready in {elapsed:.1f} s from the first process start ({detail}); logs in {c.log_dir}")
        return elapsed

    def _pidfile_pids(self) -> dict[str, int]:
        out = {}
        for name in PROCESSES:
            f = self.config.pid_dir / f"{name}.pid"
            with contextlib.suppress(OSError, ValueError):
                out[name] = int(f.read_text().strip())
        return out

    def _is_ours(self, pid: int) -> bool:
        argv = _proc_cmdline(pid)
        return bool(argv) and Path(argv[0]).name in PROCESSES and f"{self.config.run_dir}/" in " ".join(argv)

    def _running_pids(self) -> dict[int, str]:
        """Live processes of this cluster: from pid files, and from a scan of /proc."""
        found = {pid: name for name, pid in self._pidfile_pids().items() if _proc_alive(pid) and self._is_ours(pid)}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                pid = int(entry.name)
                if pid not in found and _proc_alive(pid) and self._is_ours(pid):
                    found[pid] = Path(_proc_cmdline(pid)[0]).name
        return found

    def _real_nodes_running(self) -> bool:
        return all(pid is not None for node in self.real.nodes for pid in self.real.pids(node).values())

    def _stop_real_nodes(self) -> list[str]:
        """Tear down the real nodes (processes, mounts, links, cgroups); fail if anything is left."""
        try:
            done = self.real.teardown(_log)
        except (RealNodeError, RuntimeError, OSError) as e:
            raise ClusterError(f"could not tear down the real nodes: {e}") from e
        left = self.real.leftovers()
        if left:
            raise ClusterError(f"real nodes left behind: {', '.join(left)}")
        return done

    def _stop(self) -> list[str]:
        stopped = [f"real nodes ({'; '.join(done)})" for done in [self._stop_real_nodes()] if done]
        running = self._running_pids()
        # Clients first, then the apiserver, then etcd.
        clients = ("kwok", "kube-scheduler", "kube-controller-manager", kueue.NAME)
        for group in (clients, ("kube-apiserver",), ("etcd",)):
            pids = [pid for pid, name in running.items() if name in group]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            self._await_exit(pids, STOP_GRACE_SECONDS)
            for pid in pids:
                if _proc_alive(pid):
                    _log(f"{running[pid]} (pid {pid}) ignored SIGTERM for {STOP_GRACE_SECONDS:.0f} s: SIGKILL")
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            self._await_exit(pids, 5.0)
            stopped += [f"{running[pid]} (pid {pid})" for pid in pids]
        left = self._running_pids()
        if left:
            raise ClusterError(f"processes still running after down: {left}")
        for f in self.config.pid_dir.glob("*.pid"):
            f.unlink(missing_ok=True)
        self._procs.clear()
        return stopped

    def _await_exit(self, pids: list[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self._procs.values():  # reap our own children
                proc.poll()
            if not any(_proc_alive(pid) for pid in pids):
                return
            time.sleep(0.05)

    # -- API access ------------------------------------------------------------------------
    def _admin_ssl(self) -> ssl.SSLContext:
        pki = self.config.pki_dir
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return ctx

    @property
    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` authenticated as admin."""
        if self._api_client is None:
            from kubernetes import config as k8s_config

            self._api_client = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(self.kubeconfig)
            )
        return self._api_client

    @property
    def core(self) -> Any:
        """`kubernetes.client.CoreV1Api` as admin."""
        from kubernetes import client as k8s

        return k8s.CoreV1Api(self.api_client)

    @property
    def apps(self) -> Any:
        from kubernetes import client as k8s

        return k8s.AppsV1Api(self.api_client)

    def to_dict(self, obj: Any) -> dict[str, Any]:
        """A client model object as the API's JSON (camelCase keys)."""
        return cast(dict[str, Any], self.api_client.sanitize_for_serialization(obj))

    def _tool_env(self) -> dict[str, str]:
        helm_home = self.config.run_dir / "helm"
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(helm_home / "cache"),
            "HELM_CONFIG_HOME": str(helm_home / "config"),
            "HELM_DATA_HOME": str(helm_home / "data"),
        }

    def _run_tool(
        self, tool: str, args: tuple[str, ...], check: bool, input: str | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        argv = [self._bin(tool), *args]
        res = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            env=self._tool_env(),
            timeout=timeout,
            check=False,
        )
        if check and res.returncode != 0:
            raise KubectlError(argv, res.returncode, res.stdout, res.stderr)
        return res

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl (same release as the server) as admin."""
        return self._run_tool("kubectl", args, check, input, timeout)

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def helm(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the built helm against this cluster (state under <run_dir>/helm)."""
        return self._run_tool("helm", args, check, input, timeout)

    # -- readiness helpers -----------------------------------------------------------------
    def _default_sa_exists(self) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.read_namespaced_service_account("default", "default")
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    def node_ready(self, node: Mapping[str, Any]) -> bool:
        conds = node.get("status", {}).get("conditions") or []
        return any(x.get("type") == "Ready" and x.get("status") == "True" for x in conds)

    def _nodes_schedulable(self, names: list[str]) -> bool:
        nodes = {n["metadata"]["name"]: n for n in self.to_dict(self.core.list_node())["items"]}
        for name in names:
            node = nodes.get(name)
            if node is None or not self.node_ready(node):
                return False
            taints = node.get("spec", {}).get("taints") or []
            if any(t["key"].startswith("node.kubernetes.io/") for t in taints):
                return False
        return True

    # -- nodes -----------------------------------------------------------------------------
    def create_nodes(self, manifests: list[dict[str, Any]]) -> list[str]:
        core = self.core

        def create(m: dict[str, Any]) -> str:
            core.create_node(m)
            return cast(str, m["metadata"]["name"])

        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(create, manifests))

    def node_names(self) -> list[str]:
        return [n.metadata.name for n in self.core.list_node().items]

    def _reserve_node_indices(self, count: int) -> int:
        """First of `count` node indices never used in this cluster's life (names are not reused:
        the controller-manager remembers deleted nodes for a while). Safe across processes."""
        indices = [self.config.nodes.count - 1]
        for n in self.core.list_node().items:
            with contextlib.suppress(KeyError, ValueError, AttributeError):
                indices.append(int((n.metadata.annotations or {})[cfg.NODE_INDEX_ANNOTATION]))
        counter = self.config.run_dir / "next-node-index"
        with open(self.config.run_dir / ".nodes.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with contextlib.suppress(OSError, ValueError):
                indices.append(int(counter.read_text()) - 1)
            start = max(indices) + 1
            counter.write_text(f"{start + count}\n")
        return start

    def add_nodes(
        self,
        count: int = 1,
        *,
        gpu: GpuType = cfg.H100,
        gpus_per_node: int | None = None,
        spot: bool = False,
        zone: str | None = None,
        labels: Mapping[str, str] | None = None,
        taints: list[dict[str, str]] | None = None,
        wait: bool = True,
        timeout: float = 60.0,
    ) -> list[str]:
        """Add simulated GPU nodes (next free indices); waits until they are Ready and untainted."""
        start = self._reserve_node_indices(count)
        manifests = [
            cfg.node_manifest(
                i,
                pool=self.config.nodes,
                gpu=gpu,
                spot=spot,
                zone=zone,
                extra_labels=labels,
                extra_taints=taints,
                gpus=gpus_per_node,
            )
            for i in range(start, start + count)
        ]
        names = self.create_nodes(manifests)
        if wait:
            deadline = time.monotonic() + timeout
            while not self._nodes_schedulable(names):
                if time.monotonic() > deadline:
                    raise ClusterError(f"nodes {names} not Ready within {timeout} s\n{self.logs_tail(15)}")
                time.sleep(0.1)
        return names

    def delete_node(self, name: str) -> None:
        """Delete a Node object. Its pods are removed by the controller-manager's pod GC (~40-60 s)."""
        self.core.delete_node(name, grace_period_seconds=0)

    def cordon(self, name: str, unschedulable: bool = True) -> None:
        self.core.patch_node(name, {"spec": {"unschedulable": unschedulable}})

    def uncordon(self, name: str) -> None:
        self.cordon(name, False)

    def _set_taints(self, name: str, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
        from kubernetes.client.exceptions import ApiException

        for _ in range(10):
            node = self.to_dict(self.core.read_node(name))
            taints = change(list(node.get("spec", {}).get("taints") or []))
            body = {
                "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                "spec": {"taints": taints},
            }
            try:
                self.core.patch_node(name, body)
                return
            except ApiException as e:
                if e.status != 409:
                    raise
        raise ClusterError(f"could not update the taints of node {name}: conflicts kept coming")

    def set_node_not_ready(self, name: str, *, taint: bool = True, status: str = "Unknown") -> None:
        """Make a node look lost: kwok stops managing it (no more Lease renewals or status
        updates), its Ready condition becomes `status` (Unknown, as the node lifecycle controller
        writes when a kubelet stops posting; or False) and, with `taint`, it gets the
        `node.kubernetes.io/unreachable` NoSchedule and NoExecute taints at once (the controller-manager
        would add them within its monitor period). Pods on it keep their last status."""
        self.core.patch_node(name, {"metadata": {"labels": {cfg.KWOK_MANAGED_LABEL: cfg.KWOK_UNMANAGED_VALUE}}})
        now = _now()
        reason, message = (
            ("NodeStatusUnknown", "Kubelet stopped posting node status.")
            if status == "Unknown"
            else ("KubeletNotReady", "container runtime is down")
        )
        cond = {
            "type": "Ready",
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        self.core.patch_node_status(name, {"status": {"conditions": [cond]}})
        if taint:
            key = "node.kubernetes.io/unreachable" if status == "Unknown" else "node.kubernetes.io/not-ready"

            def add(taints: list[dict[str, Any]]) -> list[dict[str, Any]]:
                have = {(t["key"], t["effect"]) for t in taints}
                for effect in ("NoSchedule", "NoExecute"):
                    if (key, effect) not in have:
                        t: dict[str, Any] = {"key": key, "effect": effect}
                        if effect == "NoExecute":
                            t["timeAdded"] = now
                        taints.append(t)
                return taints

            self._set_taints(name, add)

    def set_node_ready(self, name: str, timeout: float = 30.0) -> None:
        """Undo `set_node_not_ready`: kwok manages the node again and marks it Ready; then the
        unreachable/not-ready taints go. In that order, so that the scheduler binds nothing to the
        node before kwok watches it again (kwok would never start such a pod)."""
        self.core.patch_node(name, {"metadata": {"labels": {cfg.KWOK_MANAGED_LABEL: cfg.KWOK_MANAGED_VALUE}}})
        deadline = time.monotonic() + timeout
        while not self.node_ready(self.to_dict(self.core.read_node(name))):
            if time.monotonic() > deadline:
                raise ClusterError(f"kwok did not mark node {name} Ready within {timeout} s\n{self.logs_tail(15)}")
            time.sleep(0.1)
        lost = ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
        self._set_taints(name, lambda ts: [t for t in ts if t["key"] not in lost])

    # -- real nodes ------------------------------------------------------------------------
    @property
    def real_node_names(self) -> list[str]:
        return list(self.real.nodes)

    def stop_real_node(self, name: str) -> None:
        """Power cut of a real node: its kubelet, containerd, shims and containers are killed, its
        mounts and containerd's state dropped. The node goes NotReady once the node lifecycle
        controller misses its heartbeats (its Lease; ~40-50 s)."""
        try:
            self.real.stop(name)
        except (RealNodeError, RuntimeError, OSError) as e:
            raise ClusterError(f"could not stop real node {name}: {e}") from e

    def start_real_node(self, name: str, *, wait: bool = True, timeout: float = 60.0) -> None:
        """Start a stopped real node again; with `wait`, until it is Ready and untainted."""
        try:
            self.real.start(name)
        except (RealNodeError, RuntimeError, OSError) as e:
            raise ClusterError(f"could not start real node {name}: {e}") from e
        if wait:
            deadline = time.monotonic() + timeout
            while not self._nodes_schedulable([name]):
                if time.monotonic() > deadline:
                    raise ClusterError(f"real node {name} not Ready within {timeout} s\n{self.logs_tail(15)}")
                time.sleep(0.1)

    def set_real_node_link(self, name: str, up: bool) -> None:
        """Cut (False) or restore (True) a real node's network: its pods and its kubelet's port
        become unreachable; the kubelet still reaches the apiserver (loopback), so it stays Ready."""
        self.real.set_link(name, up)

    # -- pods ------------------------------------------------------------------------------
    def _terminate_pod(
        self,
        namespace: str,
        name: str,
        *,
        phase: str,
        exit_code: int,
        container_reason: str,
        container_message: str | None,
        pod_reason: str | None = None,
        pod_message: str | None = None,
        extra_conditions: list[dict[str, Any]] | None = None,
    ) -> None:
        pod = self.to_dict(self.core.read_namespaced_pod(name, namespace))
        now = _now()
        old = {s["name"]: s for s in pod.get("status", {}).get("containerStatuses") or []}
        statuses = []
        for c in pod["spec"]["containers"]:
            prev = old.get(c["name"], {})
            started = (prev.get("state") or {}).get("running", {}).get("startedAt") or now
            term: dict[str, Any] = {
                "exitCode": exit_code,
                "reason": container_reason,
                "startedAt": started,
                "finishedAt": now,
            }
            if prev.get("containerID"):
                term["containerID"] = prev["containerID"]
            if container_message:
                term["message"] = container_message
            statuses.append(
                {
                    "name": c["name"],
                    "image": c["image"],
                    "imageID": prev.get("imageID", ""),
                    "ready": False,
                    "started": False,
                    "restartCount": prev.get("restartCount", 0),
                    "state": {"terminated": term},
                    **({"containerID": prev["containerID"]} if prev.get("containerID") else {}),
                }
            )
        cond_reason = "PodFailed" if phase == "Failed" else "PodCompleted"
        conditions = [
            {"type": t, "status": "False", "reason": cond_reason, "lastTransitionTime": now}
            for t in ("Ready", "ContainersReady")
        ]
        conditions += extra_conditions or []
        status: dict[str, Any] = {"phase": phase, "conditions": conditions, "containerStatuses": statuses}
        if pod_reason:
            status["reason"] = pod_reason
        if pod_message:
            status["message"] = pod_message
        self.core.patch_namespaced_pod_status(name, namespace, {"status": status})

    def complete_pod(self, namespace: str, name: str, message: str | None = None) -> None:
        """Every container exits 0 (reason Completed, optional termination message): phase Succeeded."""
        self._terminate_pod(
            namespace,
            name,
            phase="Succeeded",
            exit_code=0,
            container_reason="Completed",
            container_message=message,
        )

    def fail_pod(
        self,
        namespace: str,
        name: str,
        exit_code: int = 1,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        """Every container terminates with `exit_code` (reason `reason`, e.g. OOMKilled; default
        Error) and the optional termination `message`: phase Failed."""
        self._terminate_pod(
            namespace,
            name,
            phase="Failed",
            exit_code=exit_code,
            container_reason=reason or "Error",
            container_message=message,
        )

    def evict_pod(
        self,
        namespace: str,
        name: str,
        *,
        disruption_reason: str = "TerminationByKubelet",
        reason: str = "Evicted",
        message: str = "The node was low on resource: memory.",
        delete: bool = False,
    ) -> None:
        """An eviction as the kubelet reports it: a DisruptionTarget condition (reason
        `disruption_reason`: TerminationByKubelet, EvictionByEvictionAPI, PreemptionByScheduler,
        DeletionByTaintManager), phase Failed with reason `reason`, containers killed (137).
        With `delete` the pod is deleted afterwards, as preemption and API evictions do."""
        now = _now()
        disruption = {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": disruption_reason,
            "message": message,
            "lastTransitionTime": now,
        }
        self._terminate_pod(
            namespace,
            name,
            phase="Failed",
            exit_code=137,
            container_reason="Error",
            container_message=None,
            pod_reason=reason,
            pod_message=message,
            extra_conditions=[disruption],
        )
        if delete:
            self.core.delete_namespaced_pod(name, namespace)

    # -- logs ------------------------------------------------------------------------------
    def _tail(self, name: str, n: int) -> str:
        path = self.config.log_dir / f"{name}.log"
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 256 * 1024))
                lines = fh.read().decode(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def logs_tail(self, n: int = 40) -> str:
        """The last `n` lines of every component's log (real nodes' too), each under a header."""
        names = [*ORDER, *(f"{node}-{what}" for node in self.real.nodes for what in ("containerd", "kubelet"))]
        names += list(SERVICE_PROCESSES) if self.real.nodes else []
        return "\n".join(
            f"----- {name} ({self.config.log_dir / (name + '.log')}) -----\n{self._tail(name, n)}" for name in names
        )
