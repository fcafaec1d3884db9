"""The HTTP app: OIP v2 health, metadata and infer endpoints, plus /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .batcher import Batcher
from .metrics import ServeMetrics
from .model import OUTPUTS, ServedModel
from .tensors import RequestError, parse_infer

SERVER_NAME = "lepton-serve"
SERVER_VERSION = "1"


@dataclass
class BatchingConfig:
    """max_batch_size=1 disables batching."""

    max_batch_size: int = 32
    max_wait_ms: float = 5.0


def error(status: int, message: str) -> JSONResponse:
    """OIP v2 error body."""
    return JSONResponse({"error": message}, status_code=status)


class Server:
    """The model, its batcher and metrics; `app` is the ASGI application."""

    def __init__(self, model: ServedModel, batching: BatchingConfig) -> None:
        self.model, self.metrics = model, ServeMetrics()
        self.batcher = Batcher(
            model.forward_async, batching.max_batch_size, batching.max_wait_ms / 1000, self.metrics.batch
        )
        self.app = Starlette(
            routes=[
                Route("/v2", self.server_metadata),
                Route("/v2/health/live", self.live),
                Route("/v2/health/ready", self.ready),
                Route("/v2/models/{name}", self.model_metadata),
                Route("/v2/models/{name}/ready", self.model_ready),
                Route("/v2/models/{name}/infer", self.infer, methods=["POST"]),
                Route("/metrics", self.prometheus),
            ],
            lifespan=self.lifespan,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.batcher.start()
        loading = asyncio.get_running_loop().create_task(self._load())
        try:
            yield
        finally:
            loading.cancel()
            await self.batcher.stop()

    async def _load(self) -> None:
        await self.model.load()
        self.metrics.model_ready.set(1 if self.model.state == "Ready" else 0)

    def drain(self) -> None:
        """SIGTERM: report not-ready (new traffic goes elsewhere) while in-flight requests finish."""
        if self.model.state == "Ready":
            self.model.state, self.model.reason = "Draining", "the server is shutting down"
        self.metrics.model_ready.set(0)

    # -- health and metadata -----------------------------------------------------------------------
    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": []})

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    def _readiness(self) -> Response:
        m = self.model
        if m.state == "Ready":
            return JSONResponse({"ready": True, "model": m.name, "version": m.version})
        body = {"ready": False, "model": m.name, "state": m.state, "reason": m.reason or "the model is loading"}
        return JSONResponse(body, status_code=503)

    async def ready(self, request: Request) -> Response:
        return self._readiness()

    def _check_name(self, request: Request) -> Response | None:
        name = request.path_params["name"]
        if name != self.model.name:
            return error(404, f"unknown model {name!r}; this server serves {self.model.name!r}")
        return None

    async def model_ready(self, request: Request) -> Response:
        return self._check_name(request) or self._readiness()

    async def model_metadata(self, request: Request) -> Response:
        if bad := self._check_name(request):
            return bad
        if self.model.exported is None:
            return self._readiness()
        return JSONResponse(self.model.metadata())

    async def prometheus(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- inference ---------------------------------------------------------------------------------
    async def infer(self, request: Request) -> Response:
        start = time.perf_counter()
        self.metrics.enter()
        try:
            response = await self._infer(request)
        finally:
            self.metrics.leave()
        name = self.model.name
        self.metrics.requests.labels(name, str(response.status_code)).inc()
        self.metrics.latency.labels(name).observe(time.perf_counter() - start)
        return response

    async def _infer(self, request: Request) -> Response:
        if bad := self._check_name(request):
            return bad
        m = self.model
        if m.state != "Ready":
            return error(503, f"model {m.name!r} is not ready ({m.state}): {m.reason or 'loading'}")
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            return error(400, f"the request body is not valid JSON: {exc}")
        try:
            req = parse_infer(body, m.input, OUTPUTS)
        except RequestError as exc:
            return error(exc.status, exc.message)
        logits = await self.batcher.submit(req.rows)
        labels = m.labels
        outputs: dict[str, dict[str, Any]] = {
            "label": {
                "name": "label",
                "datatype": "BYTES",
                "shape": [len(logits)],
                "data": [labels[i] for i in logits.argmax(axis=1).tolist()],
            },
            "logits": {
                "name": "logits",
                "datatype": "FP32",
                "shape": list(logits.shape),
                "data": logits.reshape(-1).tolist(),
            },
        }
        reply: dict[str, Any] = {
            "model_name": m.name,
            "model_version": m.version,
            "outputs": [outputs[o] for o in (req.outputs or OUTPUTS)],
        }
        if req.id is not None:
            reply["id"] = req.id
        return JSONResponse(reply)
