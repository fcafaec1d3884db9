"""The benchmark's own admin client (loopback, async): submit a workload as fast as it can, delete it."""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Api:
    """What a process needs to talk to the API server as admin (picklable)."""

    url: str
    ca: str
    cert: str
    key: str

    @classmethod
    def admin(cls, cluster: Any) -> Api:
        pki = cluster.config.pki_dir
        return cls(cluster.config.apiserver_url, str(pki / "ca.crt"), str(pki / "admin.crt"), str(pki / "admin.key"))

    def ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def session(self, limit: int = 64) -> aiohttp.ClientSession:
        conn = aiohttp.TCPConnector(ssl=self.ssl(), limit=limit)
        return aiohttp.ClientSession(base_url=self.url, connector=conn)


async def submit(
    api: Api, path: str, manifests: list[dict[str, Any]], concurrency: int, rate: float = 0.0
) -> dict[str, float]:
    """POST every object, `concurrency` at a time (`rate` > 0: the i-th no earlier than i / rate seconds after the
    first, an open-loop arrival); object name -> wall time just before its POST."""
    sent: dict[str, float] = {}
    sem = asyncio.Semaphore(concurrency)
    start = time.monotonic()
    async with api.session(limit=concurrency) as session:

        async def one(i: int, m: dict[str, Any]) -> None:
            if rate > 0:
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            async with sem:
                sent[m["metadata"]["name"]] = time.time()
                async with session.post(path, json=m) as resp:
                    if resp.status >= 300:
                        raise RuntimeError(f"POST {path}: {resp.status} {await resp.text()}")

        await asyncio.gather(*(one(i, m) for i, m in enumerate(manifests)))
    return sent


async def delete_all(api: Api, path: str, names: list[str], concurrency: int) -> None:
    sem = asyncio.Semaphore(concurrency)
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
    async with api.session(limit=concurrency) as session:

        async def one(name: str) -> None:
            async with sem, session.delete(f"{path}/{name}", json=body) as resp:
                if resp.status >= 300 and resp.status != 404:
                    raise RuntimeError(f"DELETE {path}/{name}: {resp.status} {await resp.text()}")

        await asyncio.gather(*(one(n) for n in names))


async def remaining(api: Api, paths: list[str]) -> int:
    """Objects still in these collections (one object listed of each is enough to know)."""
    left = 0
    async with api.session(limit=2) as session:
        for path in paths:
            async with session.get(path, params={"limit": "1"}) as resp:
                body = await resp.json()
            left += len(body.get("items") or []) + int(body["metadata"].get("remainingItemCount") or 0)
    return left
