"""Readiness and liveness probes: HTTP GET and TCP to the pod's address over the bridge, exec inside it."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def _port(value: object, ports: Mapping[str, int]) -> int:
    if isinstance(value, str) and not value.isdigit():
        return ports[value]
    return int(str(value))


def run_probe(spec: Mapping[str, Any], pod_ip: str, ports: Mapping[str, int], init_pid: int | None) -> bool:
    timeout = float(spec.get("timeoutSeconds") or 1)
    try:
        if "httpGet" in spec:
            get = spec["httpGet"]
            conn = http.client.HTTPConnection(get.get("host") or pod_ip, _port(get["port"], ports), timeout=timeout)
            try:
                headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
                conn.request("GET", get.get("path") or "/", headers=headers)
                return 200 <= conn.getresponse().status < 400
            finally:
                conn.close()
        if "tcpSocket" in spec:
            tcp = spec["tcpSocket"]
            with socket.create_connection((tcp.get("host") or pod_ip, _port(tcp["port"], ports)), timeout=timeout):
                return True
        if "exec" in spec and init_pid:
            argv = ["nsenter", "-t", str(init_pid), "-n", "-m", "-u", "-p", "--", *spec["exec"]["command"]]
            return subprocess.run(argv, capture_output=True, timeout=timeout).returncode == 0
    except (OSError, KeyError, ValueError, subprocess.TimeoutExpired, http.client.HTTPException):
        return False
    return False


@dataclass
class ProbeState:
    """Thresholds and timing of one probe of one container run."""

    spec: Mapping[str, Any]
    started: float = field(default_factory=time.monotonic)
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0
    ok: bool = False

    def due(self, now: float) -> bool:
        if now < self.started + float(self.spec.get("initialDelaySeconds") or 0):
            return False
        return now >= self.next_at

    def record(self, success: bool, now: float) -> None:
        self.next_at = now + float(self.spec.get("periodSeconds") or 10)
        if success:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= int(self.spec.get("successThreshold") or 1):
                self.ok = True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failures >= int(self.spec.get("failureThreshold") or 3):
                self.ok = False

    @property
    def failed(self) -> bool:
        return self.failures >= int(self.spec.get("failureThreshold") or 3)
