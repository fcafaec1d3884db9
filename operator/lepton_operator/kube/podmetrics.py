"""Scrape model servers in pods: /metrics for the in-flight integral, /v2/health/ready for why not loaded."""

from __future__ import annotations

import math
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from ..untrusted import loads
from .client import MAX_POD_REPLY, BadReply, read_limited

INFLIGHT_SECONDS = "lepton_serve_inflight_seconds"
INFLIGHT = "lepton_serve_inflight_requests"
MODEL_READY = "lepton_serve_model_ready"
MAX_METRICS = 1024 * 1024  # bytes of a server's /metrics the operator will read


@dataclass(frozen=True)
class PodReport:
    """One server's answer."""

    inflight_seconds: float  # the counter: request-seconds since the server started
    inflight: float  # requests in flight at the scrape
    loaded: bool
    state: str = ""  # Loading, Failed, Draining when not loaded
    reason: str = ""
    version: str = ""


def parse_metrics(text: str) -> tuple[float, float, bool]:
    """(in-flight request-seconds, in flight now, model loaded); ValueError when unusable: not the text format, or
    a figure that is negative, NaN or infinite (the autoscaler's arithmetic would fail on it)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = sample.value
    seconds, inflight = values.get(f"{INFLIGHT_SECONDS}_total", 0.0), values.get(INFLIGHT, 0.0)
    if not all(math.isfinite(x) and x >= 0 for x in (seconds, inflight)):
        raise ValueError(f"in-flight figures {seconds!r}, {inflight!r} are not finite non-negative numbers")
    return seconds, inflight, values.get(MODEL_READY, 0.0) == 1


class PodScraper:
    """HTTP to pod IPs with short timeouts (one aiohttp session)."""

    def __init__(self, timeout: float = 1.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def _get(self, url: str, limit: int) -> tuple[int, str]:
        """Status and body (at most `limit` bytes: BadReply beyond; the server in a pod is untrusted)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.get(url) as resp:
            return resp.status, (await read_limited(resp, limit)).decode("utf-8", "replace")

    async def scrape(self, ip: str, port: int, want_version: bool) -> PodReport | None:
        """None when the server does not answer (not started, gone, or no server at all)."""
        base = f"http://{ip}:{port}"
        try:
            code, text = await self._get(f"{base}/metrics", MAX_METRICS)
            if code != 200:
                return None
            seconds, inflight, loaded = parse_metrics(text)
            if loaded and not want_version:
                return PodReport(seconds, inflight, True)
            _, body = await self._get(f"{base}/v2/health/ready", MAX_POD_REPLY)
            doc = loads(body)
        except (aiohttp.ClientError, TimeoutError, ValueError, BadReply):  # unusable: as if it did not answer
            return None
        if not isinstance(doc, dict):
            doc = {}
        return PodReport(
            seconds,
            inflight,
            bool(doc.get("ready")),
            str(doc.get("state", ""))[:32],
            str(doc.get("reason", ""))[:512],
            str(doc.get("version", ""))[:128],
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
