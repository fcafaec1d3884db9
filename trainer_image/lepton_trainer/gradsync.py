"""Gradient synchronisation strategies for data-parallel training.

- ``local``: one process, nothing to synchronise.
- ``ddp``: torch's DistributedDataParallel (overlaps all-reduce with backward: the GPU default).
- ``allreduce``: gradients live as views in one flat buffer, all-reduced once after backward.
  The CPU default: as fast as DDP for models that fit one DDP bucket (25 MB), and constructing
  DDP imports ``torch._dynamo`` (~2 s of worker cold start on 2 cores), which this avoids.

Each strategy also fixes how the per-rank loss is scaled so that the synchronised gradient is
the gradient of the mean loss over the *global* batch, even when ranks hold unequal slices.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.distributed as dist
from torch import nn

CHOICES = ("auto", "ddp", "allreduce")


def select_strategy(requested: str, device_type: str, world_size: int) -> str:
    """``auto`` is DDP on GPU and the flat all-reduce on CPU; one process needs neither."""
    if world_size <= 1:
        return "local"
    if requested == "auto":
        return "ddp" if device_type == "cuda" else "allreduce"
    if requested not in CHOICES:
        raise ValueError(f"unknown gradient sync {requested!r}")
    return requested


class GradSync(Protocol):
    name: str
    module: nn.Module  # call forward on this

    def loss_scale(self, global_batch: int) -> float:
        """Multiplier for this rank's summed loss before backward."""
        ...

    def zero_grad(self) -> None: ...

    def after_backward(self) -> None: ...


class LocalSync:
    name = "local"

    def __init__(self, model: nn.Module) -> None:
        self.module = model
        self._params = [p for p in model.parameters() if p.requires_grad]

    def loss_scale(self, global_batch: int) -> float:
        return 1.0 / global_batch

    def zero_grad(self) -> None:
        for p in self._params:
            p.grad = None

    def after_backward(self) -> None:
        pass


class DDPSync(LocalSync):
    name = "ddp"

    def __init__(self, model: nn.Module, device: torch.device, world_size: int) -> None:
        super().__init__(model)
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        self.module = DistributedDataParallel(model, device_ids=ids)
        self.world_size = world_size

    def loss_scale(self, global_batch: int) -> float:
        return self.world_size / global_batch  # DDP averages over ranks


class FlatAllReduceSync:
    name = "allreduce"

    def __init__(self, model: nn.Module) -> None:
        self.module = model
        params = [p for p in model.parameters() if p.requires_grad]
        dtypes = {p.dtype for p in params}
        if len(dtypes) != 1:
            raise ValueError(f"flat all-reduce needs one parameter dtype, got {dtypes}")
        self.buffer = torch.zeros(sum(p.numel() for p in params), dtype=params[0].dtype, device=params[0].device)
        offset = 0
        for p in params:
            p.grad = self.buffer[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        self._params = params
        self._ptrs = [p.grad.data_ptr() for p in params if p.grad is not None]
        with torch.no_grad():  # start every rank from rank 0's weights, as DDP does
            flat = torch.cat([p.detach().reshape(-1) for p in params])
            dist.broadcast(flat, src=0)
            offset = 0
            for p in params:
                p.copy_(flat[offset : offset + p.numel()].view_as(p))
                offset += p.numel()

    def loss_scale(self, global_batch: int) -> float:
        return 1.0 / global_batch  # all-reduce sums over ranks

    def zero_grad(self) -> None:
        self.buffer.zero_()

    def after_backward(self) -> None:
        if [p.grad.data_ptr() for p in self._params if p.grad is not None] != self._ptrs:
            raise RuntimeError("a gradient was replaced; the flat gradient buffer no longer backs it")
        dist.all_reduce(self.buffer)


def build(strategy: str, model: nn.Module, device: torch.device, world_size: int) -> GradSync:
    if strategy == "local":
        return LocalSync(model)
    if strategy == "ddp":
        return DDPSync(model, device, world_size)
    if strategy == "allreduce":
        return FlatAllReduceSync(model)
    raise ValueError(f"unknown gradient sync {strategy!r}")
