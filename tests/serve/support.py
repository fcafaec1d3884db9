"""A real model server process on 127.0.0.1 for tests and benchmarks, and an export of the digits sample."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train_digits(workdir: Path, epochs: int = 6) -> tuple[Path, dict[str, Any]]:
    """Run the trainer's digits sample (one process) and return its export directory and result."""
    workdir.mkdir(parents=True, exist_ok=True)
    term = workdir / "result.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LEPTON_DATA_CACHE": str(workdir / "cache")}
    cmd = [PYTHON, "-m", "lepton_trainer.train", "--workload", "digits", "--epochs", str(epochs)]
    cmd += ["--checkpoint-dir", str(workdir / "ckpt"), "--progress-listen", "off", "--termination-log", str(term)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=150)
    result: dict[str, Any] = json.loads(term.read_text())
    return Path(result["exportPath"]), result


def http_json(url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
    """GET (or POST when body is given) and decode the JSON reply, whatever the status."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


class ServerProcess:
    """`python -m lepton_trainer.serve` as a child process; its log in `log_path`."""

    def __init__(self, model_dir: Path, log_path: Path, *args: str, name: str = "digits", host: str = "127.0.0.1"):
        self.port, self.host, self.name = free_port(), host, name
        self.url = f"http://{host}:{self.port}"
        self.log_path = log_path
        cmd = [PYTHON, "-m", "lepton_trainer.serve", "--model-dir", str(model_dir), "--name", name]
        cmd += ["--host", host, "--port", str(self.port), *args]
        with log_path.open("ab") as log:
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)

    def wait_up(self, timeout: float = 60.0, ready: bool = True) -> dict[str, Any]:
        """Wait until /v2/health/ready answers (200 when `ready`, else any answer); return its body."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.tail()}")
            try:
                code, body = http_json(f"{self.url}/v2/health/ready", timeout=2)
                if code == 200 or (not ready and body.get("state") != "Loading"):
                    return body
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not up after {timeout} s:\n{self.tail()}")
            time.sleep(0.05)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def sigterm(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def metric_value(text: str, name: str) -> float:
    """The sum of all samples of `name` (any labels) on a Prometheus text page."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total


def infer_body(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [{"name": "input", "shape": [len(rows), len(rows[0])], "datatype": "FP32", "data": rows}],
        **extra,
    }


def post_raw(
    url: str, body: bytes, content_type: str | None = "application/json", timeout: float = 10.0
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """POST exactly these bytes (no Content-Type when None); status, headers (lower-case) and JSON body."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        headers = {} if content_type is None else {"Content-Type": content_type}
        conn.request("POST", parts.path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(raw or b"{}")
    finally:
        conn.close()


def trickle(host: str, port: int, data: bytes, every: float, limit: float) -> tuple[bytes, float]:
    """A slow client: one byte of `data` every `every` s (waiting on the socket for a reply in between) until
    the server answers and closes, or `limit` s pass; (what the server sent, seconds until it closed)."""
    t0 = time.monotonic()
    received, sent = b"", 0
    with socket.create_connection((host, port), timeout=every) as sock:
        while time.monotonic() - t0 < limit:
            if sent < len(data):
                try:
                    sock.sendall(data[sent : sent + 1])
                except OSError:
                    break
                sent += 1
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return received, time.monotonic() - t0


def send_and_read(host: str, port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send `data` on a new connection and read until the server closes it (or `timeout`)."""
    received = b""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server closed on us: read what it said
            sock.sendall(data)
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            received += chunk
    return received


def status_of(reply: bytes) -> int:
    """The status code of a raw HTTP reply (0 when there is none)."""
    parts = reply.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") else 0


def json_of(reply: bytes) -> dict[str, Any]:
    body = reply.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in reply else b"{}"
    return dict(json.loads(body or b"{}"))
