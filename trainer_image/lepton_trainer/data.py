"""Sample data (no downloads) and the elastic data plan: global order, per-rank slices.

The digits data are read straight from the CSV that ships inside scikit-learn, without importing
scikit-learn (which costs ~1 s of worker cold start), and cached as ``.npy`` for the next start.
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lepton_trainer import contract

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch

log = logging.getLogger(__name__)

DIGITS_FEATURES = 64
DIGITS_CLASSES = 10


@dataclass(frozen=True)
class Split:
    """Train and held-out test tensors of one workload."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lepton-trainer"
    return Path(os.environ.get(contract.DATA_CACHE, str(default)))


def _digits_csv() -> Path | None:
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


def load_digits_array() -> npt.NDArray[np.float32]:
    """The 1797 x 65 digits table (64 pixels in 0..16, then the label) as float32."""
    import numpy as np

    cached = cache_dir() / "digits-v1.npy"
    try:
        table: npt.NDArray[np.float32] = np.load(cached)
        return table
    except (OSError, ValueError):
        pass
    csv = _digits_csv()
    if csv is not None:
        with gzip.open(csv, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    else:  # a layout we don't know: let scikit-learn find its own file
        from sklearn.datasets import load_digits

        bunch = load_digits()
        table = np.hstack([bunch.data, bunch.target[:, None]]).astype(np.float32)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.npy")
        np.save(tmp, table)
        os.replace(tmp, cached)
    except OSError as exc:
        log.debug("digits cache not written: %s", exc)
    return table


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random train/test split of ``n`` rows (the same on every rank and restart)."""
    import torch

    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = round(n * test_fraction)
    return perm[n_test:], perm[:n_test]


def digits(seed: int, test_fraction: float = 0.2) -> Split:
    """scikit-learn's bundled 8x8 digits: raw pixel values 0..16 and integer labels."""
    import torch

    table = torch.from_numpy(load_digits_array())
    x, y = table[:, :DIGITS_FEATURES].contiguous(), table[:, DIGITS_FEATURES].long()
    train, test = split_indices(len(table), test_fraction, seed)
    return Split(x[train], y[train], x[test], y[test])


def synthetic(seed: int, samples: int, features: int, classes: int, test_fraction: float = 0.1) -> Split:
    """Random inputs labelled by a fixed random linear teacher: learnable, no files needed."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, features, generator=g)
    teacher = torch.randn(features, classes, generator=g)
    y = (x @ teacher).argmax(dim=1)
    train, test = split_indices(samples, test_fraction, seed)
    return Split(x[train], y[train], x[test], y[test])


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The global sample order of ``epoch``: a pure function of (seed, epoch), nothing to save."""
    import torch

    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def rank_slice(global_batch: int, world_size: int, rank: int) -> tuple[int, int]:
    """This rank's [start, end) of a global batch; sizes differ by at most one sample.

    Keeping the global batch fixed while the world size changes keeps steps, schedule and data
    position identical across elastic restarts.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of {world_size}")
    base, extra = divmod(global_batch, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)
