"""The operator's API client against a local HTTP server: auth headers reused, read again after a 401."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from lepton_operator.kube.client import HEADERS_TTL, Kube
from lepton_operator.kube.errors import ApiError


class Config:
    """What Kube reads of a kubernetes client Configuration; each token read gives a new token."""

    verify_ssl = False

    def __init__(self, host: str) -> None:
        self.host, self.reads = host, 0

    def auth_settings(self) -> dict[str, Any]:
        self.reads += 1
        return {"BearerToken": {"in": "header", "key": "authorization", "value": f"Bearer t{self.reads}"}}


async def test_auth_headers_are_reused_and_read_again_after_a_401_or_their_ttl() -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers["authorization"])
        if request.query.get("deny"):
            return web.json_response({"kind": "Status", "code": 401, "message": "Unauthorized"}, status=401)
        return web.json_response({"items": []})

    app = web.Application()
    app.router.add_get("/api/v1/pods", handler)
    async with TestServer(app, host="127.0.0.1") as server:
        cfg = Config(str(server.make_url("")).rstrip("/"))
        kube = Kube(cfg, connections=2)  # type: ignore[arg-type]
        try:
            for _ in range(3):
                await kube.list("v1", "pods")
            assert seen == ["Bearer t1"] * 3 and cfg.reads == 1  # not read again per request
            with pytest.raises(ApiError):
                await kube.list("v1", "pods", deny="1")
            await kube.list("v1", "pods")
            assert seen[-1] == "Bearer t2"  # the 401 made it read the (rotated) token again
            assert kube._auth is not None
            kube._auth = (kube._auth[0] - HEADERS_TTL - 1, kube._auth[1])
            await kube.list("v1", "pods")
            assert seen[-1] == "Bearer t3" and cfg.reads == 3
        finally:
            await kube.close()
