"""Soft placement of a new epoch's pods: preferred (GPU product, capacity type) options and spot toleration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..constants import CAPACITY_TYPE_LABEL, GPU_PRODUCT_LABEL

SPOT_TOLERATION = {"key": "lepton.ai/spot", "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True)
class Placement:
    preferred: list[tuple[int, str, bool]]  # (weight 1-100, GPU product, spot)
    tolerate_spot: bool

    def preferred_terms(self) -> list[dict[str, Any]]:
        """preferredDuringSchedulingIgnoredDuringExecution terms, one per option."""
        return [
            {
                "weight": weight,
                "preference": {
                    "matchExpressions": [
                        {"key": GPU_PRODUCT_LABEL, "operator": "In", "values": [product]},
                        {"key": CAPACITY_TYPE_LABEL, "operator": "In", "values": ["spot" if spot else "on-demand"]},
                    ]
                },
            }
            for weight, product, spot in self.preferred
        ]
