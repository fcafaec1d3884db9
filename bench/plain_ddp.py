"""The baseline for trainer throughput: a minimal plain DDP loop on the same model and data.

Run under torchrun; rank 0 prints ``RESULT {json}`` with steady-state samples/s (steps after the
first 10, as the trainer measures them).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lepton_trainer import data, models
from torch.nn.parallel import DistributedDataParallel


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workload", choices=["digits", "synthetic"], default="digits")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--global-batch-size", type=int, required=True)
    p.add_argument("--lr", type=float, default=3e-3)
    a = p.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    if a.workload == "digits":
        split, model = data.digits(0), models.DigitsCNN()
    else:
        split = data.synthetic(0, 4096, 1024, 10)
        model = models.MLP(1024, 2048, 2, 10)
    ddp = DistributedDataParallel(model)
    opt = torch.optim.Adam(ddp.parameters(), lr=a.lr)
    per_rank = a.global_batch_size // world
    n = len(split.x_train)
    steps_per_epoch = n // a.global_batch_size
    t0 = 0.0
    for step in range(a.steps):
        epoch, b = divmod(step, steps_per_epoch)
        if b == 0:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        idx = order[b * a.global_batch_size + rank * per_rank : b * a.global_batch_size + (rank + 1) * per_rank]
        opt.zero_grad()
        F.cross_entropy(ddp(split.x_train[idx]), split.y_train[idx]).backward()
        opt.step()
        if step + 1 == 10:
            t0 = time.perf_counter()
    dt = time.perf_counter() - t0
    if rank == 0:
        sps = (a.steps - 10) * per_rank * world / dt
        print("RESULT " + json.dumps({"samplesPerSecond": round(sps, 1), "seconds": round(dt, 3)}), flush=True)
    dist.destroy_process_group()
    os._exit(0)


if __name__ == "__main__":
    main()
