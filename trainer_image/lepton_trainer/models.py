"""Model architectures, registered by name so an export can be rebuilt from its manifest."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """A small CNN (~38k parameters) for 8x8 digits; takes raw pixels 0..16, flat or 8x8."""

    def __init__(self, channels: int = 16, hidden: int = 64, classes: int = 10, input_scale: float = 1 / 16):
        super().__init__()
        self.input_scale = input_scale
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * channels * 16, hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 1, 8, 8) * self.input_scale
        out: torch.Tensor = self.head(self.features(x))
        return out


class MLP(nn.Module):
    """A plain multi-layer perceptron; the synthetic throughput workload's model."""

    def __init__(self, features: int = 1024, hidden: int = 2048, layers: int = 2, classes: int = 10):
        super().__init__()
        dims = [features] + [hidden] * layers
        blocks: list[nn.Module] = []
        for d_in, d_out in itertools.pairwise(dims):
            blocks += [nn.Linear(d_in, d_out), nn.ReLU()]
        blocks.append(nn.Linear(dims[-1], classes))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"digits-cnn": DigitsCNN, "mlp": MLP}


def build(architecture: str, config: dict[str, Any]) -> nn.Module:
    """Instantiate a registered architecture with its keyword config."""
    try:
        factory = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}") from None
    return factory(**config)
