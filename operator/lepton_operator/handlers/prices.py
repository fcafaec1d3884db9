"""The price table ConfigMap: one named ConfigMap in the operator's namespace, re-read every few seconds.

Only that object is read (RBAC: `get` on it by name, nothing else), so no one who can create ConfigMaps
elsewhere can change prices and get around budgets. Edits apply to the next reconcile of every job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp
import yaml
from pydantic import ValidationError

from ..kube.client import Kube
from ..kube.errors import ApiError
from ..prices import DEFAULT_PRICES, PRICES_CONFIGMAP_KEY, PriceTable

log = logging.getLogger("lepton_operator.prices")
POLL_SECONDS = 10.0


def parse(text: str, source: str) -> PriceTable:
    """The defaults overridden by a `prices.yaml` document (a partial table, camelCase)."""
    return DEFAULT_PRICES.merged(yaml.safe_load(text) or {}, source)


async def follow(kube: Kube, ref: str, apply: Callable[[PriceTable], None]) -> None:
    """Poll `namespace/name` forever, calling `apply` whenever the table changes."""
    namespace, _, name = ref.partition("/")
    last: str | None = None
    while True:
        try:
            cm = await kube.get("v1", "configmaps", namespace, name)
            text = ((cm or {}).get("data") or {}).get(PRICES_CONFIGMAP_KEY)
            if text != last:
                last = text
                apply(DEFAULT_PRICES if text is None else parse(text, f"configmap {ref}"))
                log.info("prices from %s", "defaults (no ConfigMap)" if text is None else f"configmap {ref}")
        except (yaml.YAMLError, ValidationError, TypeError, AttributeError) as exc:
            log.error("price ConfigMap %s is invalid, keeping the previous prices: %s", ref, exc)
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("cannot read price ConfigMap %s: %s", ref, exc)
        await asyncio.sleep(POLL_SECONDS)
