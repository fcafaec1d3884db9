"""The HTTP app: OIP v2 health, metadata and infer endpoints, plus /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .batcher import Array, Batcher, BatcherDown, Overloaded
from .body import BodyBudget, decode, read_body
from .limits import Limits
from .metrics import CountResponses, ServeMetrics
from .model import OUTPUTS, ServedModel
from .tensors import InferRequest, RequestError, TensorLimits

SERVER_NAME = "lepton-serve"
SERVER_VERSION = "1"


@dataclass
class BatchingConfig:
    """max_batch_size=1 disables batching."""

    max_batch_size: int = 32
    max_wait_ms: float = 5.0


log = logging.getLogger("lepton_trainer.serve")
RETRY_AFTER = "1"  # seconds, on every 503 of an overloaded or not-ready server


def error(status: int, message: str) -> JSONResponse:
    """OIP v2 error body; 408/413 close the connection (the rest of the body is not read), 503 says when to
    retry."""
    headers = {"Connection": "close"} if status in (408, 413) else {}
    if status == 503:
        headers["Retry-After"] = RETRY_AFTER
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    return error(500, f"internal server error: {type(exc).__name__}")


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (wrong method), as JSON."""
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, f"{request.method} {request.url.path[:200]}: {exc.detail}")


class Server:
    """The model, its batcher and metrics; `app` is the ASGI application."""

    def __init__(self, model: ServedModel, batching: BatchingConfig, limits: Limits | None = None) -> None:
        self.model, self.metrics = model, ServeMetrics()
        self.limits = limits = limits or Limits()
        self.tensor_limits = TensorLimits(limits.max_rows, limits.max_elements, limits.max_depth)
        self.batcher = Batcher(
            model.forward_async,
            batching.max_batch_size,
            batching.max_wait_ms / 1000,
            self.metrics.batch,
            max_queue=limits.max_queue_batches * batching.max_batch_size,
            timeout=limits.queue_timeout,
            on_death=self._batcher_died,
        )
        self.body_budget = BodyBudget(limits.max_buffered_bytes)
        self._parsers = ThreadPoolExecutor(1, thread_name_prefix="parse")  # one: the loop competes for the GIL
        self.starlette = Starlette(
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
            exception_handlers={Exception: internal_error, HTTPException: http_error},
        )
        self.app = CountResponses(self.starlette, self.metrics.responses)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.batcher.start()
        loading = asyncio.get_running_loop().create_task(self._load())
        try:
            yield
        finally:
            loading.cancel()
            await self.batcher.stop()
            self._parsers.shutdown(wait=False, cancel_futures=True)

    async def _load(self) -> None:
        await self.model.load()
        self.metrics.model_ready.set(1 if self.model.state == "Ready" else 0)

    def drain(self) -> None:
        """SIGTERM: report not-ready (new traffic goes elsewhere) while in-flight requests finish."""
        if self.model.state == "Ready":
            self.model.state, self.model.reason = "Draining", "the server is shutting down"
        self.metrics.model_ready.set(0)

    def _batcher_died(self, reason: str) -> None:
        """Readiness and liveness fail from now on (the kubelet restarts the pod); requests get 503 at once."""
        self.model.state, self.model.reason = "Failed", reason
        self.metrics.model_ready.set(0)

    # -- health and metadata -----------------------------------------------------------------------
    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": []})

    async def live(self, request: Request) -> Response:
        if self.batcher.failure is not None:
            return JSONResponse({"live": False, "reason": self.batcher.failure}, status_code=503)
        return JSONResponse({"live": True})

    def _readiness(self) -> Response:
        m = self.model
        if m.state == "Ready":
            return JSONResponse({"ready": True, "model": m.name, "version": m.version})
        body = {"ready": False, "model": m.name, "state": m.state, "reason": m.reason or "the model is loading"}
        return JSONResponse(body, status_code=503, headers={"Retry-After": RETRY_AFTER})

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
        """Counted in flight from when its body has arrived (idle or slow clients are not load)."""
        start, name = time.perf_counter(), self.model.name
        status, admitted, body = 500, False, b""  # an exception escaping is a 500 (the app answers it), counted
        try:
            try:
                response = self._refusal(request)
                if response is None:
                    body = await read_body(request, self.limits, self.body_budget)
                    self.metrics.enter()
                    admitted = True
                    response = await self._infer(body)
            except RequestError as exc:
                response = error(exc.status, exc.message)
            status = response.status_code
            return response
        finally:
            self.body_budget.release(len(body))
            if admitted:
                self.metrics.leave()
            self.metrics.requests.labels(name, str(status)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - start)

    def _refusal(self, request: Request) -> Response | None:
        if bad := self._check_name(request):
            return bad
        m = self.model
        if m.state != "Ready":
            return error(503, f"model {m.name!r} is not ready ({m.state}): {m.reason or 'loading'}")
        return None

    async def _decode(self, body: bytes) -> InferRequest:
        args = (body, self.model.input, OUTPUTS, self.tensor_limits)
        if len(body) <= self.limits.inline_parse_bytes:
            return decode(*args)
        return await asyncio.get_running_loop().run_in_executor(self._parsers, decode, *args)

    async def _infer(self, body: bytes) -> Response:
        req = await self._decode(body)
        try:
            logits = await self.batcher.submit(req.rows)
        except (Overloaded, BatcherDown) as exc:
            return error(503, str(exc))
        if not np.all(np.isfinite(logits)):
            raise RequestError(422, "the model's output for this input is not finite (input values too large)")
        return JSONResponse(self._reply(req, logits))

    def _reply(self, req: InferRequest, logits: Array) -> dict[str, Any]:
        m, labels = self.model, self.model.labels
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
        return reply
