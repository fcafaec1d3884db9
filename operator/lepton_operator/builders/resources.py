"""Container resources: CPU, memory and GPUs, requests equal to limits (Guaranteed QoS for GPU pods)."""

from __future__ import annotations

from typing import Any

from ..api.pod import Resources
from ..constants import GPU_RESOURCE


def container_resources(resources: Resources | None, gpus: int) -> dict[str, Any]:
    amounts: dict[str, str] = {}
    if resources and resources.cpu:
        amounts["cpu"] = resources.cpu
    if resources and resources.memory:
        amounts["memory"] = resources.memory
    if gpus:
        amounts[GPU_RESOURCE] = str(gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}
