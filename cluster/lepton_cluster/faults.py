"""Faults for drills on the local control plane: restart or pause a component, compact etcd, and a TLS proxy in
front of the API server that answers a fraction of requests with 429/500, resets or stalls them, and cuts watches.

The proxy serves the API server's own certificate (signed by the cluster CA, valid for 127.0.0.1) and forwards as
admin: give a client `proxy.write_kubeconfig(...)` instead of the admin kubeconfig. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import signal
import ssl
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

from .cluster import Cluster
from .spawn import spawn_logged
from .testing import wait_for

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}  # bodies pass as they are (gzip too)
FAULTS = ("429", "500", "reset", "stall")


def _pid(cluster: Cluster, component: str) -> int:
    return int((cluster.config.pid_dir / f"{component}.pid").read_text().strip())


def restart(cluster: Cluster, component: str, timeout: float = 60.0) -> float:
    """SIGKILL a control-plane component and start it again (its log appended); seconds until it answers
    again (the API server: /readyz)."""
    c = cluster.config
    t0 = time.monotonic()
    os.kill(_pid(cluster, component), signal.SIGKILL)
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    wait_for(lambda: not cluster.is_ready() if component == "kube-apiserver" else True, 10, 0.05)
    cluster._procs[component] = spawn_logged(  # the cluster's own component table
        cluster.argv(component),
        log_path=c.log_dir / f"{component}.log",
        pid_file=c.pid_dir / f"{component}.pid",
        cwd=c.run_dir,
        env=env,
        append=True,
    )
    wait_for(cluster.is_ready, timeout, 0.1, message=f"{component} back")
    return time.monotonic() - t0


@contextlib.contextmanager
def paused(cluster: Cluster, component: str) -> Iterator[None]:
    """SIGSTOP a component for the duration of the block (etcd: every write and read of the API server hangs)."""
    pid = _pid(cluster, component)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def compact_etcd(cluster: Cluster) -> int:
    """Compact etcd's history up to now (its JSON gateway): every watch resuming from before gets 410 Gone.
    Returns the revision."""
    base = f"http://127.0.0.1:{cluster.config.ports.etcd}/v3/kv"

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(f"{base}/{path}", json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            out: dict[str, Any] = json.loads(resp.read())
            return out

    revision = int(post("range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"])
    post("compaction", {"revision": revision, "physical": True})
    return revision


class FaultProxy:
    """A reverse proxy to the API server in a thread of its own. `rate` of the requests get one of `kinds`
    (429 with Retry-After, 500, a connection reset, a `stall` seconds long stall); `delay` slows every request."""

    def __init__(self, cluster: Cluster, rate: float = 0.0, stall: float = 5.0, seed: int = 1) -> None:
        self.cluster, self.rate, self.stall, self.delay = cluster, rate, stall, 0.0
        self.kinds: tuple[str, ...] = FAULTS
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self.port = 0
        self._random = random.Random(seed)
        self._watches: set[asyncio.Transport] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    # -- control (from the caller's thread) --------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)

    def stop(self) -> None:
        with contextlib.suppress(TimeoutError):  # a stalled request may hold the clean-up up: stop the loop anyway
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def cut_watches(self) -> int:
        """Abort every open watch stream (clients see the connection drop mid-stream); how many were open."""

        async def cut() -> int:
            open_now = list(self._watches)
            for transport in open_now:
                transport.abort()
            self._watches.clear()
            return len(open_now)

        return asyncio.run_coroutine_threadsafe(cut(), self._loop).result(10)

    def write_kubeconfig(self, path: Path) -> Path:
        """The admin kubeconfig with the proxy as its server."""
        doc = yaml.safe_load(self.cluster.kubeconfig.read_text())
        for entry in doc["clusters"]:
            entry["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        path.chmod(0o600)
        return path

    # -- the proxy (on its loop) -----------------------------------------------------------------
    async def _start(self) -> None:
        pki = self.cluster.config.pki_dir
        upstream = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        upstream.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self._session = ClientSession(
            connector=TCPConnector(ssl=upstream, limit=0), timeout=ClientTimeout(total=None), auto_decompress=False
        )
        serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        serving.load_cert_chain(str(pki / "apiserver.crt"), str(pki / "apiserver.key"))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=serving, shutdown_timeout=1.0)
        await site.start()
        server = site._server  # the bound port of port 0
        assert server is not None and isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:  # requests still stalled or streaming
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def _fault(self) -> str | None:
        return self._random.choice(self.kinds) if self._random.random() < self.rate else None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        fault = self._fault()
        if fault:
            self.injected[fault] += 1
        if fault in ("429", "500"):
            code = int(fault)
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                      "reason": "TooManyRequests" if code == 429 else "InternalError",
                      "message": f"injected by the fault proxy ({code})"}  # fmt: skip
            return web.json_response(status, status=code, headers={"Retry-After": "1"} if code == 429 else None)
        if fault == "reset" and request.transport is not None:
            request.transport.abort()
            return web.Response(status=500)  # never sent
        if fault == "stall":
            await asyncio.sleep(self.stall)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        url = f"https://127.0.0.1:{self.cluster.config.ports.apiserver}{request.path_qs}"
        body = await request.read()
        try:
            return await self._forward(request, url, headers, body)
        except (ClientError, TimeoutError):  # the API server went away (restart): so does the client's connection
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=502)  # never sent

    async def _forward(
        self, request: web.Request, url: str, headers: dict[str, str], body: bytes
    ) -> web.StreamResponse:
        assert self._session is not None
        async with self._session.request(request.method, url, headers=headers, data=body or None) as up:
            resp = web.StreamResponse(
                status=up.status, headers={k: v for k, v in up.headers.items() if k.lower() not in HOP_HEADERS}
            )
            await resp.prepare(request)
            watching = request.query.get("watch") in ("1", "true") and request.transport is not None
            if watching and request.transport is not None:
                self._watches.add(request.transport)
            try:
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
            finally:
                if request.transport is not None:
                    self._watches.discard(request.transport)
            await resp.write_eof()
            return resp
