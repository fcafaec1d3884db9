"""A TrainingJob's cost cap and its own prices."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import KubeModel


class Budget(KubeModel):
    """A cost cap: the job is suspended (BudgetExceeded) when it is reached; raising it resumes the job."""

    max_usd: float = Field(description="Most the job may cost, in USD.", gt=0, le=10_000_000)
    basis: Literal["Accrued", "Projected"] = Field(
        default="Accrued",
        description="Accrued: stop when the cost so far reaches maxUSD; Projected: also when the projected total "
        "(cost so far + rate x ETA) would exceed it.",
    )


class PriceOverride(KubeModel):
    """This job's prices, replacing entries of the operator's price table."""

    gpus: dict[str, dict[str, float]] | None = Field(
        default=None,
        description="By GPU product: {onDemand, spot, relativeSpeed} ($/GPU-hour).",
        max_length=16,
        json_schema_extra={
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "onDemand": {"type": "number", "minimum": 0, "maximum": 1000, "description": "$/GPU-hour."},
                    "spot": {"type": "number", "minimum": 0, "maximum": 1000, "description": "$/GPU-hour on spot."},
                    "relativeSpeed": {
                        "type": "number",
                        "minimum": 0,
                        "exclusiveMinimum": True,
                        "maximum": 100,
                        "description": "Training throughput vs an A100 (> 0).",
                    },
                },
                "required": ["onDemand"],
            }
        },
    )
    cpu_core_hour: float | None = Field(default=None, description="$/CPU-core-hour.", ge=0, le=100)
    memory_gib_hour: float | None = Field(default=None, description="$/GiB-hour.", ge=0, le=100)
