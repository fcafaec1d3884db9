"""Real model servers for the simulated pods of an InferenceService, and a bounded load generator.

kwok runs no containers, but gives every pod a loopback IP (127.128.0.0/10). `PodServers` plays the kubelet
for one InferenceService: for each running pod it starts `python -m lepton_trainer.serve` with the pod's own
arguments, bound to the pod's IP, with hostPath volumes mapped under a per-test "node filesystem" folder;
when the pod goes, its server gets SIGTERM. Loopback only.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

from lepton_cluster.cluster import Cluster

ROW = [0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0] * 8
JSON = {"Content-Type": "application/json"}  # the server answers 415 to any other body type


def export_digits_model(directory: Path, seed: int = 0) -> None:
    """An untrained but deterministic digits CNN, exported as the trainer would."""
    import torch
    from lepton_trainer.model_io import export_model
    from lepton_trainer.models import DigitsCNN

    torch.manual_seed(seed)
    spec = {"shape": [64], "dtype": "float32", "description": "8x8 digits"}
    export_model(
        DigitsCNN(), directory, architecture="digits-cnn", config={}, input_spec=spec, labels=list("0123456789")
    )


class PodServers:
    """Keeps one real server per running pod of `isvc` (a background thread polling the pods)."""

    def __init__(self, cluster: Cluster, namespace: str, isvc: str, node_root: Path, *extra_args: str) -> None:
        self.cluster, self.namespace, self.isvc, self.node_root = cluster, namespace, isvc, node_root
        self.extra_args = list(extra_args)
        self.procs: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}  # pod -> (ip, process)
        self.log_dir = node_root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _host_path(self, pod: dict[str, Any], path: str) -> str:
        spec = pod["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for m in spec["containers"][0].get("volumeMounts") or []:
            host = (volumes.get(m["name"]) or {}).get("hostPath")
            if host and (path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")):
                inside = path[len(m["mountPath"]) :].lstrip("/")
                return str(self.node_root / host["path"].lstrip("/") / m.get("subPath", "") / inside)
        return path

    def _start(self, pod: dict[str, Any]) -> None:
        args = list(pod["spec"]["containers"][0]["args"])
        i = args.index("--model-dir")
        args[i + 1] = self._host_path(pod, args[i + 1])
        ip = pod["status"]["podIP"]
        name = pod["metadata"]["name"]
        log = (self.log_dir / f"{name}.log").open("ab")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, *args, "--host", ip, *self.extra_args, "--log-level", "warning"]
        self.procs[name] = (ip, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))

    def sync(self) -> None:
        pods = self.cluster.core.list_namespaced_pod(
            self.namespace, label_selector=f"lepton.ai/inferenceservice={self.isvc}"
        ).items
        live = {}
        for p in pods:
            d = self.cluster.to_dict(p)
            if (
                d["status"].get("phase") == "Running"
                and d["status"].get("podIP")
                and not d["metadata"].get("deletionTimestamp")
            ):
                live[d["metadata"]["name"]] = d
        for name, pod in live.items():
            if name not in self.procs:
                self._start(pod)
        for name in list(self.procs):
            if name not in live:
                _, proc = self.procs.pop(name)
                proc.send_signal(signal.SIGTERM)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a transient API error: try again on the next tick
                self.sync()
            self._stop.wait(0.2)

    def ready_urls(self) -> list[str]:
        urls = []
        for ip, proc in list(self.procs.values()):
            if proc.poll() is None:
                with (
                    contextlib.suppress(OSError),
                    urllib.request.urlopen(f"http://{ip}:8080/v2/health/ready", timeout=1) as r,
                ):
                    if r.status == 200:
                        urls.append(f"http://{ip}:8080")
        return urls

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for _, proc in self.procs.values():
            proc.terminate()
        for _, proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


class Load:
    """Closed-loop clients sending one-sample infer requests round robin to the ready servers (bounded)."""

    def __init__(self, servers: PodServers, model: str) -> None:
        self.servers, self.model = servers, model
        self.ok = self.errors = 0
        self._urls: list[str] = []
        self._done = threading.Event()  # ends the URL refresher
        self._stop = threading.Event()  # ends the clients
        self._threads: list[threading.Thread] = []
        self._counter = itertools.count()
        threading.Thread(target=self._refresh_urls, daemon=True).start()

    def _refresh_urls(self) -> None:
        while not self._done.is_set():
            self._urls = self.servers.ready_urls()
            self._done.wait(0.5)

    def _client(self) -> None:
        body = json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": ROW}]}).encode()
        while not self._stop.is_set():
            urls = self._urls
            if not urls:
                self._stop.wait(0.05)
                continue
            url = urls[next(self._counter) % len(urls)]
            req = urllib.request.Request(f"{url}/v2/models/{self.model}/infer", data=body, headers=JSON)
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    r.read()
                self.ok += 1
            except OSError:
                self.errors += 1
                self._stop.wait(0.05)

    def clients(self, n: int) -> None:
        """Grow to `n` concurrent clients."""
        while len(self._threads) < n:
            t = threading.Thread(target=self._client, daemon=True)
            t.start()
            self._threads.append(t)

    def stop_clients(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)
        self._threads, self._stop = [], threading.Event()

    def close(self) -> None:
        self.stop_clients()
        self._done.set()
