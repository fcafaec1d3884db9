"""Process runtime: rank environment, device and backend choice, autocast, seeding, process group."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class RankEnv:
    """What torchrun tells each worker (defaults describe a single standalone process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    restart_count: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> RankEnv:
        e = os.environ if env is None else env
        return cls(
            rank=int(e.get("RANK", "0")),
            world_size=int(e.get("WORLD_SIZE", "1")),
            local_rank=int(e.get("LOCAL_RANK", "0")),
            local_world_size=int(e.get("LOCAL_WORLD_SIZE", "1")),
            restart_count=int(e.get("TORCHELASTIC_RESTART_COUNT", "0")),
        )


def select_device(requested: str, local_rank: int, cuda_available: bool, cuda_count: int) -> str:
    """The device string for this rank: "auto" picks ``cuda:<local_rank>`` when there is a GPU."""
    if requested == "auto":
        requested = "cuda" if cuda_available else "cpu"
    if requested == "cuda":
        if not cuda_available or cuda_count == 0:
            raise RuntimeError("--device cuda requested but CUDA is not available")
        return f"cuda:{local_rank % cuda_count}"
    if requested == "cpu" or requested.startswith("cuda:"):
        return requested
    raise ValueError(f"unknown device {requested!r}")


def select_backend(device_type: str) -> str:
    """NCCL for GPU ranks, gloo for CPU ranks."""
    return "nccl" if device_type == "cuda" else "gloo"


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """bf16 mixed precision on GPU; full precision on CPU (CPU bf16 is slower on most hosts)."""
    import torch

    return torch.bfloat16 if device_type == "cuda" else None


def autocast(device_type: str) -> contextlib.AbstractContextManager[object]:
    """The autocast context for a forward pass on ``device_type``."""
    import torch

    dtype = autocast_dtype(device_type)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def seed_everything(seed: int, device_type: str = "cpu") -> None:
    """Seed python, numpy and torch; on GPU also ask for deterministic kernels.

    On CPU the kernels this trainer uses are deterministic already, and
    ``torch.use_deterministic_algorithms`` imports torch._inductor (~2.7 s of cold start).
    """
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device_type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def apply_thread_env() -> None:
    """Honour OMP_NUM_THREADS even when torch was imported before it was set (zygote children)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        import torch

        torch.set_num_threads(int(value))


def init_process_group(env: RankEnv, device: str, timeout_s: float) -> str | None:
    """Join the torchrun-provided process group; returns the backend (None when standalone)."""
    if not env.distributed:
        return None
    import torch
    import torch.distributed as dist

    backend = select_backend(torch.device(device).type)
    if backend == "nccl":
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return backend
