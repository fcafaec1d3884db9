"""A small async JSON client for the few calls the operator makes (dicts in, dicts out).

Credentials come from the kubernetes client's config loader (kubeconfig or in-cluster); requests go
through aiohttp, which kopf already uses, without the generated client's model (de)serialisation.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from .. import metrics
from ..constants import MANAGER
from ..untrusted import loads
from .errors import api_error

# 30 s for the server to answer, not counting the wait for a free pooled connection: in a burst (hundreds of
# jobs applied at once) requests queue behind `connections` in flight, and a total timeout failed them while
# still queued, which only re-ran the passes (and their requests) later.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=10, sock_read=30)
# JSON_NOTE: the API's JSON (watch events, request bodies) goes through orjson: the standard library's json was 21 %
# of the operator's CPU in a burst (py-spy, bench/scale.py); orjson decodes a pod event 3.5x and encodes a pod
# 15x faster (docs/bench.md). Pods' own replies stay with untrusted.loads.
HEADERS_TTL = 60.0  # seconds the auth headers are reused (service account tokens live an hour, rotated at 80 %)


def load_configuration() -> k8s.Configuration:
    """In-cluster credentials when running in a pod, the current kubeconfig otherwise."""
    cfg = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    return cfg


def object_path(api_version: str, plural: str, namespace: str | None, name: str | None = None) -> str:
    """REST path of a collection or object."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{quote(namespace)}"
    base += f"/{plural}"
    return f"{base}/{quote(name)}" if name else base


def resource_of(path: str) -> str:
    """The resource (and subresource) a REST path names, a bounded label: /api/v1/namespaces/n/pods/p/status ->
    "pods/status"; a collection or object path -> its plural."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]  # drop api/v1 or apis/group/version
    if len(rest) >= 2 and rest[0] == "namespaces":
        rest = rest[2:] or ["namespaces"]
    if not rest:
        return "discovery"  # /api/v1, /apis/<group>/<version>
    return rest[0] if len(rest) < 3 else f"{rest[0]}/{rest[2]}"


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into exactly `new`: changed keys only, at every depth;
    a key gone at any depth is sent as null (a nested key left out would be kept by the server's merge)."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            if inner := merge_patch(before, value):
                patch[key] = inner
        elif before != value or key not in old:
            patch[key] = value
    return patch


class Kube:
    """Async API client. One aiohttp session, created lazily inside the running loop."""

    def __init__(self, cfg: k8s.Configuration | None = None, *, connections: int = 64) -> None:
        self.cfg = cfg or load_configuration()
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._watches: aiohttp.ClientSession | None = None  # long-lived watches: never hold up requests
        self._pods: aiohttp.ClientSession | None = None  # plain HTTP to pods, never the API's credentials
        self._auth: tuple[float, dict[str, str]] | None = None  # when the auth headers were computed, and them

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.cfg.verify_ssl:
            return False
        ctx = ssl.create_default_context(cafile=self.cfg.ssl_ca_cert)
        if self.cfg.cert_file:
            ctx.load_cert_chain(self.cfg.cert_file, self.cfg.key_file)
        return ctx

    def _headers(self) -> dict[str, str]:
        """Bearer token headers, as the client's own auth settings give them (refreshes in-cluster tokens),
        computed at most every HEADERS_TTL seconds: the client re-reads the kubeconfig (or the token file) on every
        call, which was 8.6 % of the operator's CPU in a burst (py-spy, bench/scale.py). A 401 recomputes them."""
        now = time.monotonic()
        if self._auth is None or now - self._auth[0] > HEADERS_TTL:
            auths: dict[str, Any] = dict(self.cfg.auth_settings())
            found = {a["key"]: a["value"] for a in auths.values() if a.get("in") == "header" and a.get("value")}
            self._auth = now, found
        return self._auth[1]

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            conn = aiohttp.TCPConnector(ssl=self._ssl(), limit=self._connections)
            self._session = aiohttp.ClientSession(base_url=self.cfg.host, connector=conn, timeout=REQUEST_TIMEOUT)
        return self._session

    async def close(self) -> None:
        for session in (self._session, self._watches, self._pods):
            if session is not None:
                await session.close()

    async def fetch_json(self, url: str, seconds: float = 1.0) -> dict[str, Any] | None:
        """GET a JSON object from a pod's own endpoint (no API credentials are sent there); see fetch_json_from."""
        if self._pods is None or self._pods.closed:
            self._pods = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32))
        return await fetch_json_from(self._pods, url, seconds)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
        ok: tuple[int, ...] = (),
        decode: bool = True,
    ) -> tuple[int, dict[str, Any]]:
        """Send one request; statuses in `ok` (besides 2xx) are returned instead of raised.

        `decode=False` skips parsing the answer (a created pod's echo is ~4 kB of JSON nobody reads).
        """
        session = await self.session()
        headers = {**self._headers(), "Content-Type": content_type, "Accept": "application/json"}
        data = None if json is None else orjson.dumps(json)  # orjson: see JSON_NOTE
        async with session.request(method, path, data=data, headers=headers, params=params) as resp:
            metrics.API_REQUESTS.labels(method, resource_of(path), str(resp.status)).inc()
            if resp.status == 401:
                self._auth = None  # a rotated token: read it again for the next request
            if resp.status < 300 or resp.status in ok:
                if not decode:
                    await resp.read()
                    return resp.status, {}
                raw = await resp.read()
                body = orjson.loads(raw) if raw else {}
                return resp.status, body or {}
            raise api_error(resp.status, method, path, await resp.text(), resp.headers.get("Retry-After"))

    async def watch(self, path: str, params: dict[str, str], seconds: float) -> AsyncIterator[dict[str, Any]]:
        """The events of one watch request (one JSON document a line) until the server ends it."""
        if self._watches is None or self._watches.closed:
            conn = aiohttp.TCPConnector(ssl=self._ssl(), limit=0)
            self._watches = aiohttp.ClientSession(base_url=self.cfg.host, connector=conn)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=seconds)
        headers = {**self._headers(), "Accept": "application/json"}
        async with self._watches.get(path, params=params, headers=headers, timeout=timeout) as resp:
            if resp.status >= 300:
                if resp.status == 401:
                    self._auth = None
                raise api_error(resp.status, "WATCH", path, await resp.text())
            rest = b""
            async for chunk in resp.content.iter_any():
                *lines, rest = (rest + chunk).split(b"\n")
                for line in lines:
                    if line:
                        yield orjson.loads(line)

    async def create(self, obj: dict[str, Any]) -> bool:
        """Create an object; False when it exists already (idempotent)."""
        meta = obj["metadata"]
        plural = obj["kind"].lower() + "s"
        path = object_path(obj["apiVersion"], plural, meta.get("namespace"))
        status, _ = await self.request(
            "POST", path, json=obj, params={"fieldManager": MANAGER}, ok=(409,), decode=False
        )
        return status != 409

    async def delete(self, api_version: str, plural: str, namespace: str, name: str, **opts: Any) -> bool:
        """Delete an object; False when it is gone already."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", **opts}
        status, _ = await self.request(
            "DELETE", object_path(api_version, plural, namespace, name), json=body, ok=(404,), decode=False
        )
        return status != 404

    async def patch_status(
        self,
        api_version: str,
        plural: str,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        """Merge-patch .status (see merge_patch); the updated object, or None when the object is gone.

        With `resource_version` the write is conditional: Conflict when the object moved since it was read, so a
        status computed from an old view is never stored.
        """
        path = object_path(api_version, plural, namespace, name) + "/status"
        body: dict[str, Any] = {"status": patch}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        code, updated = await self.request(
            "PATCH",
            path,
            json=body,
            content_type="application/merge-patch+json",
            params={"fieldManager": MANAGER},
            ok=(404,),
        )
        return None if code == 404 else updated

    async def patch(
        self, api_version: str, plural: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        """A JSON merge patch of an object; the updated object, or None when it is gone."""
        code, body = await self.request(
            "PATCH",
            object_path(api_version, plural, namespace, name),
            json=patch,
            content_type="application/merge-patch+json",
            params={"fieldManager": MANAGER},
            ok=(404,),
        )
        return None if code == 404 else body

    async def get(self, api_version: str, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        code, body = await self.request("GET", object_path(api_version, plural, namespace, name), ok=(404,))
        return None if code == 404 else body

    async def list(
        self, api_version: str, plural: str, namespace: str | None = None, **params: str
    ) -> list[dict[str, Any]]:
        """List objects (params: labelSelector, fieldSelector, resourceVersion=0 for the watch cache)."""
        _, body = await self.request("GET", object_path(api_version, plural, namespace), params=params)
        items: list[dict[str, Any]] = body.get("items") or []
        return items


MAX_POD_REPLY = 64 * 1024  # bytes of a pod's JSON document (progress, readiness) the operator will read


class BadReply(Exception):
    """A pod answered with something other than a small JSON object."""


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or BadReply when it is larger than `limit` bytes (a pod's reply is untrusted)."""
    if resp.content_length is not None and resp.content_length > limit:
        raise BadReply(f"reply of {resp.content_length} bytes is larger than {limit}")
    data = bytearray()
    async for chunk in resp.content.iter_chunked(16384):
        data += chunk
        if len(data) > limit:
            raise BadReply(f"reply is larger than {limit} bytes")
    return bytes(data)


async def fetch_json_from(session: aiohttp.ClientSession, url: str, seconds: float) -> dict[str, Any] | None:
    """GET a small JSON object from a pod; None when it does not answer, BadReply when its answer is unusable."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=seconds)) as resp:
            if resp.status != 200:
                return None
            raw = await read_limited(resp, MAX_POD_REPLY)
    except (aiohttp.ClientError, TimeoutError):
        return None
    try:
        doc = loads(raw)
    except ValueError as exc:  # includes invalid UTF-8 and too deep nesting
        raise BadReply(f"reply is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadReply(f"reply is a JSON {type(doc).__name__}, not an object")
    return doc
