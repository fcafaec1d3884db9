"""The price table ConfigMap: edits apply to the next reconcile of every job, without a restart."""

from __future__ import annotations

import logging
from typing import Any

import kopf
import yaml
from pydantic import ValidationError

from ..prices import DEFAULT_PRICES, PRICES_CONFIGMAP_KEY
from .trainingjob import TrainingJobController

log = logging.getLogger("lepton_operator.prices")
PRICES_LABEL = {"lepton.ai/prices": "true"}


@kopf.on.event("", "v1", "configmaps", labels=PRICES_LABEL)
def prices_changed(type: str | None, namespace: str, name: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    ctl: TrainingJobController = memo.trainingjobs
    if type == "DELETED":
        ctl.prices = DEFAULT_PRICES
        log.info("price ConfigMap %s/%s deleted: back to the default prices", namespace, name)
        return
    text = (body.get("data") or {}).get(PRICES_CONFIGMAP_KEY, "")
    try:
        ctl.prices = DEFAULT_PRICES.merged(yaml.safe_load(text) or {}, f"configmap {namespace}/{name}")
    except (yaml.YAMLError, ValidationError, TypeError, AttributeError) as exc:
        log.error("price ConfigMap %s/%s is invalid, keeping the previous prices: %s", namespace, name, exc)
        return
    log.info("prices from configmap %s/%s: %d GPU products", namespace, name, len(ctl.prices.gpus))
