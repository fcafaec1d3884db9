"""The built-in workloads: data, architecture and defaults for each ``--workload``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lepton_trainer import data


@dataclass(frozen=True)
class Defaults:
    epochs: int
    global_batch_size: int
    lr: float


@dataclass(frozen=True)
class Workload:
    """Everything the training loop and the exporter need to know about one workload."""

    name: str
    architecture: str
    config: dict[str, Any]
    split: data.Split
    labels: list[str]
    input_spec: dict[str, Any] = field(default_factory=dict)


DEFAULTS: dict[str, Defaults] = {
    "digits": Defaults(epochs=30, global_batch_size=64, lr=3e-3),
    "synthetic": Defaults(epochs=2, global_batch_size=512, lr=1e-3),
}


def build(
    name: str, seed: int, *, synthetic_samples: int = 4096, synthetic_features: int = 1024, hidden: int = 2048
) -> Workload:
    """Load the data of workload ``name`` and describe its model."""
    if name == "digits":
        return Workload(
            name=name,
            architecture="digits-cnn",
            config={},
            split=data.digits(seed),
            labels=[str(i) for i in range(data.DIGITS_CLASSES)],
            input_spec={
                "shape": [data.DIGITS_FEATURES],
                "dtype": "float32",
                "description": "8x8 grey image, row-major, pixel values 0..16 (scikit-learn digits)",
            },
        )
    if name == "synthetic":
        classes = 10
        return Workload(
            name=name,
            architecture="mlp",
            config={"features": synthetic_features, "hidden": hidden, "layers": 2, "classes": classes},
            split=data.synthetic(seed, synthetic_samples, synthetic_features, classes),
            labels=[str(i) for i in range(classes)],
            input_spec={
                "shape": [synthetic_features],
                "dtype": "float32",
                "description": "standard normal features",
            },
        )
    raise ValueError(f"unknown workload {name!r}; known: {sorted(DEFAULTS)}")
