"""Export a trained model for serving, and load it back: the InferenceService's model format.

Format ``lepton-model`` version 1 is a directory::

    manifest.json   what to build and how to feed it (below)
    weights.pt      torch.save() of the state_dict: plain tensors, loadable with weights_only=True

manifest.json (camelCase keys)::

    format, formatVersion          "lepton-model", 1
    architecture, config           a name in lepton_trainer.models.ARCHITECTURES and its kwargs
    input                          {"shape": [...per sample...], "dtype": "float32", "description"}
    labels                         class index -> label
    weights                        {"file", "bytes", "sha256"}
    quantization                   null or {"scheme": "int8-dynamic-per-channel"}
    metrics, training, createdAt   informational (test accuracy, steps, job, torch version)

The manifest is written last, so a directory with a manifest is complete; the weights' checksum is
verified on load. Readers refuse a different ``format`` or a newer ``formatVersion``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lepton_trainer import models
from lepton_trainer.atomic import write_atomic
from lepton_trainer.quantize import SCHEME, quantize_int8

FORMAT = "lepton-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"


class ExportFormatError(ValueError):
    """The directory is not a loadable lepton-model export."""


@dataclass(frozen=True)
class ExportedModel:
    """A loaded export: the model in eval mode and its manifest."""

    model: nn.Module
    manifest: dict[str, Any]
    path: Path

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = self.model(inputs.float())
        return out

    def predict(self, inputs: torch.Tensor) -> list[str]:
        """The label of each input row."""
        labels = self.labels
        return [labels[i] for i in self.logits(inputs).argmax(dim=-1).tolist()]


def export_model(
    model: nn.Module,
    directory: Path,
    *,
    architecture: str,
    config: dict[str, Any],
    input_spec: dict[str, Any],
    labels: list[str],
    quantized: bool = False,
    metrics: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``model`` (an nn.Module of ``architecture``, already quantised if ``quantized``).

    The directory is replaced as a whole: files go to a sibling temp directory first.
    Returns the manifest.
    """
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    weights = buf.getvalue()
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "formatVersion": FORMAT_VERSION,
        "architecture": architecture,
        "config": config,
        "input": input_spec,
        "labels": labels,
        "weights": {"file": WEIGHTS, "bytes": len(weights), "sha256": hashlib.sha256(weights).hexdigest()},
        "quantization": {"scheme": SCHEME} if quantized else None,
        "metrics": metrics or {},
        "training": {**(training or {}), "torch": torch.__version__},
        "createdAt": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    directory = directory.resolve()
    tmp = directory.with_name(f".{directory.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_atomic(tmp / WEIGHTS, weights)
    write_atomic(tmp / MANIFEST, json.dumps(manifest, indent=2).encode())
    old = directory.with_name(f".{directory.name}.{os.getpid()}.old")
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ExportFormatError(f"{path}: no readable {MANIFEST} ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise ExportFormatError(f"{path}: format {manifest.get('format')!r} is not {FORMAT!r}")
    version = manifest.get("formatVersion")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ExportFormatError(f"{path}: formatVersion {version!r} is newer than {FORMAT_VERSION}")
    return manifest


def load_exported(path: str | Path) -> ExportedModel:
    """Load an export written by :func:`export_model`; verifies format, version and checksum."""
    path = Path(path)
    manifest = read_manifest(path)
    spec = manifest["weights"]
    data = (path / spec["file"]).read_bytes()
    if hashlib.sha256(data).hexdigest() != spec["sha256"]:
        raise ExportFormatError(f"{path}: weights checksum mismatch")
    model = models.build(manifest["architecture"], manifest["config"])
    quant = manifest.get("quantization")
    if quant:
        if quant.get("scheme") != SCHEME:
            raise ExportFormatError(f"{path}: unknown quantization scheme {quant.get('scheme')!r}")
        model = quantize_int8(model, from_weights=False)
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return ExportedModel(model=model.eval(), manifest=manifest, path=path)
