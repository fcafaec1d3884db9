"""The server's Prometheus metrics (own registry). The operator's autoscaler reads the in-flight ones."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("lepton_trainer.serve")

INFLIGHT = "lepton_serve_inflight_requests"
INFLIGHT_SECONDS = "lepton_serve_inflight_seconds"  # exposed as ..._total
MODEL_READY = "lepton_serve_model_ready"


class InFlight(Collector):
    """Requests being served now, and its time integral (request-seconds): the mean concurrency over any
    interval is the integral's increase divided by the interval, which a scraper can compute exactly."""

    def __init__(self) -> None:
        self.count = 0
        self._integral = 0.0
        self._since = time.monotonic()

    def _advance(self) -> None:
        now = time.monotonic()
        self._integral += self.count * (now - self._since)
        self._since = now

    def enter(self) -> None:
        self._advance()
        self.count += 1

    def leave(self) -> None:
        self._advance()
        self.count -= 1

    def integral(self) -> float:
        self._advance()
        return self._integral

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            INFLIGHT_SECONDS, "Time integral of in-flight inference requests (request-seconds).", value=self.integral()
        )


class ServeMetrics:
    """Everything /metrics shows."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "lepton_serve_requests", "Inference requests by HTTP status.", ["model", "status"], registry=r
        )
        self.responses = Counter(
            "lepton_serve_http_responses",
            "Every HTTP response of the app, by status (5xx included).",
            ["status"],
            registry=r,
        )
        self.latency = Histogram(
            "lepton_serve_request_duration_seconds",
            "Inference request latency, seconds (parse, queue, forward, reply).",
            ["model"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.inflight_gauge = Gauge(INFLIGHT, "Inference requests being served now.", registry=r)
        self.batch_size = Histogram(
            "lepton_serve_batch_size",
            "Requests per forward pass.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.batch_rows = Histogram(
            "lepton_serve_batch_rows",
            "Samples (rows) per forward pass.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.model_ready = Gauge(MODEL_READY, "1 when the model is loaded and the server accepts requests.", registry=r)
        self.inflight = InFlight()
        r.register(self.inflight)

    def enter(self) -> None:
        self.inflight.enter()
        self.inflight_gauge.inc()

    def leave(self) -> None:
        self.inflight.leave()
        self.inflight_gauge.dec()

    def batch(self, requests: int, rows: int) -> None:
        self.batch_size.observe(requests)
        self.batch_rows.observe(rows)


class CountResponses:
    """ASGI middleware: counts every response by status; an exception escaping the app (Starlette has already
    answered 500) is logged with its traceback here, once, and not re-raised into uvicorn."""

    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app, self.counter = app, counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting)
        except Exception:
            log.exception("unhandled error answering %s %s", scope.get("method"), scope.get("path"))
        finally:
            self.counter.labels(str(status)).inc()
