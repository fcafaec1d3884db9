"""Operator configuration from the environment (LEPTON_* variables)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorConfig(BaseSettings):
    """Settings read once at start-up."""

    model_config = SettingsConfigDict(env_prefix="LEPTON_", extra="ignore")

    namespaces: list[str] = Field(default_factory=list, description="Namespaces to watch; empty = all.")
    api_connections: int = Field(default=64, ge=1, le=1024, description="Concurrent API connections.")
    requeue_backoff_max: float = Field(default=30.0, gt=0, description="Cap of the retry delay after API errors.")
    metrics_port: int = Field(default=8000, ge=0, le=65535, description="Prometheus /metrics port; 0 disables it.")
    listen_host: str = Field(default="127.0.0.1", description="Address of /metrics and /healthz (0.0.0.0 in a pod).")
    prices_configmap: str = Field(
        default="",
        description="namespace/name of the price ConfigMap (key prices.yaml); empty = the built-in prices.",
        pattern=r"^([a-z0-9-]+/[a-z0-9.-]+)?$",
    )
    liveness_port: int = Field(default=8080, ge=0, le=65535, description="kopf's /healthz port; 0 disables it.")
