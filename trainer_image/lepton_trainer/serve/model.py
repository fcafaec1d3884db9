"""The served model: loaded in a background thread; state Loading -> Ready or Failed (with the reason)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .tensors import TORCH_TO_OIP, InputSpec

if TYPE_CHECKING:
    from lepton_trainer.model_io import ExportedModel

log = logging.getLogger("lepton_trainer.serve")
INPUT_NAME = "input"
OUTPUTS = ["label", "logits"]


@dataclass
class ServedModel:
    """One model under one name. ``state`` is Loading, Ready, Failed or Draining."""

    name: str
    path: Path
    simulated_latency: float = 0.0  # seconds added to each forward pass (tests and demos: a slower model)
    state: str = "Loading"
    reason: str = ""
    exported: ExportedModel | None = None
    input: InputSpec = field(default_factory=lambda: InputSpec(INPUT_NAME, (), "FP32"))

    async def load(self) -> None:
        """Load the export without blocking the event loop; any failure becomes state Failed + reason."""
        try:
            self.exported = await asyncio.to_thread(_load, self.path)
            spec = self.exported.manifest.get("input") or {}
            shape = tuple(int(d) for d in spec.get("shape") or [])
            self.input = InputSpec(INPUT_NAME, shape, TORCH_TO_OIP.get(str(spec.get("dtype", "float32")), "FP32"))
            self.state, self.reason = "Ready", ""
            log.info("model %s loaded from %s (version %s)", self.name, self.path, self.version)
        except Exception as exc:  # anything that stops loading is reported, the server stays up to say why
            self.state, self.reason = "Failed", f"cannot load the model from {self.path}: {exc}"
            log.error("%s", self.reason)

    @property
    def version(self) -> str:
        if self.exported is None:
            return ""
        return str(self.exported.manifest["weights"]["sha256"])[:12]

    @property
    def labels(self) -> list[str]:
        return self.exported.labels if self.exported is not None else []

    def metadata(self) -> dict[str, Any]:
        """OIP v2 model metadata."""
        manifest = self.exported.manifest if self.exported is not None else {}
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "pytorch",
            "inputs": [
                {"name": self.input.name, "datatype": self.input.datatype, "shape": [-1, *self.input.sample_shape]}
            ],
            "outputs": [
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "logits", "datatype": "FP32", "shape": [-1, len(self.labels)]},
            ],
            "parameters": {
                "architecture": manifest.get("architecture"),
                "description": (manifest.get("input") or {}).get("description"),
                "metrics": manifest.get("metrics") or {},
            },
        }

    def forward(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Logits of a batch (blocking: call from a worker thread)."""
        import torch

        assert self.exported is not None
        out: npt.NDArray[np.float32] = self.exported.logits(torch.from_numpy(rows)).numpy()
        return out

    async def forward_async(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        out = await asyncio.to_thread(self.forward, rows)
        if self.simulated_latency:
            await asyncio.sleep(self.simulated_latency)
        return out


def _load(path: Path) -> ExportedModel:
    from lepton_trainer.model_io import load_exported

    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return load_exported(path)
