"""A small typed Kubernetes REST client for the node agent: JSON in, JSON out, watch as a line stream.

The agent needs a handful of calls (nodes, leases, pods, their status, a watch); a plain client keeps
it free of the generated client's models and easy to type-check.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, reason: str, body: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {body[:300]}")
        self.status = status


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    context: ssl.SSLContext
    token: str | None = None


def load_kubeconfig(path: Path, secrets_dir: Path) -> Endpoint:
    """The current context's server and credentials; embedded cert data is written to `secrets_dir` (0600)."""
    doc = yaml.safe_load(path.read_text())
    ctx_name = doc["current-context"]
    ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in doc["users"] if u["name"] == ctx["user"])
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def material(data_key: str, file_key: str, section: Mapping[str, Any]) -> str | None:
        if section.get(data_key):
            with tempfile.NamedTemporaryFile("wb", dir=secrets_dir, delete=False) as f:
                f.write(base64.b64decode(section[data_key]))
            Path(f.name).chmod(0o600)
            return f.name
        value = section.get(file_key)
        return str(value) if value else None

    context = ssl.create_default_context(
        cafile=material("certificate-authority-data", "certificate-authority", cluster)
    )
    cert = material("client-certificate-data", "client-certificate", user)
    key = material("client-key-data", "client-key", user)
    if cert and key:
        context.load_cert_chain(cert, key)
    for leftover in secrets_dir.iterdir():  # loaded into the context; nothing secret stays on disk
        leftover.unlink()
    url = urllib.parse.urlsplit(cluster["server"])
    return Endpoint(url.hostname or "127.0.0.1", url.port or 443, context, user.get("token"))


class KubeApi:
    def __init__(self, endpoint: Endpoint, timeout: float = 15.0) -> None:
        self.endpoint, self.timeout = endpoint, timeout

    def _connection(self, timeout: float | None) -> http.client.HTTPSConnection:
        e = self.endpoint
        return http.client.HTTPSConnection(e.host, e.port, context=e.context, timeout=timeout)

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "lepton-procnode"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.endpoint.token:
            headers["Authorization"] = f"Bearer {self.endpoint.token}"
        return headers

    def request(self, method: str, path: str, body: object = None, *, content_type: str = "application/json") -> JSON:
        conn = self._connection(self.timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers=self._headers(content_type if data else None))
            resp = conn.getresponse()
            text = resp.read().decode(errors="replace")
        finally:
            conn.close()
        if resp.status >= 400:
            raise ApiError(resp.status, resp.reason, text)
        out: JSON = json.loads(text) if text else {}
        return out

    def get(self, path: str) -> JSON:
        return self.request("GET", path)

    def create(self, path: str, body: JSON) -> JSON:
        return self.request("POST", path, body)

    def replace(self, path: str, body: JSON) -> JSON:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: JSON, content_type: str = MERGE_PATCH) -> JSON:
        return self.request("PATCH", path, body, content_type=content_type)

    def delete(self, path: str, body: JSON | None = None) -> JSON:
        return self.request("DELETE", path, body)

    def watch(self, path: str, resource_version: str, timeout_seconds: int = 240) -> Iterator[JSON]:
        """Events of a watch (`{"type": ..., "object": ...}`) until the server ends it."""
        sep = "&" if "?" in path else "?"
        query = f"{sep}watch=1&allowWatchBookmarks=true&resourceVersion={resource_version}"
        conn = self._connection(timeout_seconds + 30)
        try:
            conn.request("GET", f"{path}{query}&timeoutSeconds={timeout_seconds}", headers=self._headers(None))
            resp = conn.getresponse()
            if resp.status >= 400:
                raise ApiError(resp.status, resp.reason, resp.read().decode(errors="replace"))
            for line in resp:
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()


def pod_path(namespace: str, name: str = "", sub: str = "") -> str:
    path = f"/api/v1/namespaces/{namespace}/pods"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path
