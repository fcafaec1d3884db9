"""Scrape model servers in pods: /metrics for the in-flight integral, /v2/health/ready for why not loaded."""

from __future__ import annotations

import json
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

INFLIGHT_SECONDS = "lepton_serve_inflight_seconds"
INFLIGHT = "lepton_serve_inflight_requests"
MODEL_READY = "lepton_serve_model_ready"


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
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = sample.value
    return values.get(f"{INFLIGHT_SECONDS}_total", 0.0), values.get(INFLIGHT, 0.0), values.get(MODEL_READY, 0.0) == 1


class PodScraper:
    """HTTP to pod IPs with short timeouts (one aiohttp session)."""

    def __init__(self, timeout: float = 1.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def _get(self, url: str) -> tuple[int, str]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.get(url) as resp:
            return resp.status, await resp.text()

    async def scrape(self, ip: str, port: int, want_version: bool) -> PodReport | None:
        """None when the server does not answer (not started, gone, or no server at all)."""
        base = f"http://{ip}:{port}"
        try:
            code, text = await self._get(f"{base}/metrics")
            if code != 200:
                return None
            seconds, inflight, loaded = parse_metrics(text)
            if loaded and not want_version:
                return PodReport(seconds, inflight, True)
            _, body = await self._get(f"{base}/v2/health/ready")
            doc = json.loads(body)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        return PodReport(
            seconds,
            inflight,
            bool(doc.get("ready")),
            str(doc.get("state", "")),
            str(doc.get("reason", "")),
            str(doc.get("version", "")),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
