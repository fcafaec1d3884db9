"""The price table: $/GPU-hour per product (on-demand and spot), $/CPU-core-hour, $/GiB-hour.

Defaults (override from Helm values -> a ConfigMap the operator watches, or per job):
- GPUs: AWS us-east-1 on-demand list prices per GPU, from the 8-GPU instances after AWS's June 2025
  cut (p5.48xlarge H100 $55.04/h -> $6.88; p4de.24xlarge A100-80GB $40.97/h -> $5.12); spot at the
  typical ~40 % of on-demand. Approximate: set your own.
- CPU and memory: OpenCost's default custom pricing ($0.031611 per core-hour, $0.004237 per GiB-hour).
- relativeSpeed: training throughput relative to an A100 (H100 ~2.5x on bf16 transformer training);
  costPolicy=balanced ranks GPU types by relativeSpeed per dollar.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .api.base import KubeModel

PRICES_CONFIGMAP_KEY = "prices.yaml"


class GpuPrice(KubeModel):
    """Hourly price of one GPU of a product."""

    on_demand: float = Field(description="$/GPU-hour on on-demand nodes.", ge=0, le=1000)
    spot: float | None = Field(default=None, description="$/GPU-hour on spot nodes.", ge=0, le=1000)
    relative_speed: float = Field(default=1.0, description="Throughput relative to an A100.", gt=0, le=100)

    def hourly(self, spot: bool) -> float:
        return self.spot if spot and self.spot is not None else self.on_demand


class PriceTable(KubeModel):
    """Prices used for cost in status, budgets and costPolicy."""

    gpus: dict[str, GpuPrice] = Field(description="By nvidia.com/gpu.product.", max_length=64)
    default_gpu: GpuPrice = Field(description="For GPU products missing from the table.")
    cpu_core_hour: float = Field(default=0.031611, description="$/CPU-core-hour.", ge=0, le=100)
    memory_gib_hour: float = Field(default=0.004237, description="$/GiB-hour.", ge=0, le=100)
    source: str = Field(default="defaults", description="Where the prices came from.", max_length=256)

    def gpu(self, product: str | None) -> GpuPrice:
        return self.gpus.get(product or "", self.default_gpu)

    def merged(self, override: dict[str, Any] | None, source: str) -> PriceTable:
        """This table with some entries replaced (a job's spec.prices, or a ConfigMap)."""
        if not override:
            return self
        base = self.to_wire()
        gpus = {**base["gpus"], **(override.get("gpus") or {})}
        return PriceTable.model_validate({**base, **override, "gpus": gpus, "source": source})


DEFAULT_PRICES = PriceTable(
    gpus={
        "NVIDIA-H100-80GB-HBM3": GpuPrice(on_demand=6.88, spot=2.75, relative_speed=2.5),
        "NVIDIA-A100-SXM4-80GB": GpuPrice(on_demand=5.12, spot=2.05, relative_speed=1.0),
        "NVIDIA-A100-SXM4-40GB": GpuPrice(on_demand=4.10, spot=1.64, relative_speed=0.9),
        "NVIDIA-L4": GpuPrice(on_demand=0.98, spot=0.39, relative_speed=0.25),
    },
    default_gpu=GpuPrice(on_demand=0.95, spot=None, relative_speed=0.5),
    source="defaults: AWS on-demand list prices (2025), OpenCost CPU/RAM defaults",
)
