"""A plain PyTorch DDP training script: nothing of lepton_trainer imported, only the contract of docs/trainer.md
("Bring your own training script") that any torchrun script can rely on.

- torchrun (the image's entrypoint) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/MASTER_PORT;
- $LEPTON_CHECKPOINT_DIR is this job's own folder: resume from it, save into it;
- SIGTERM means "save and exit" (before terminationGracePeriodSeconds runs out);
- progress: the first process of each pod (LOCAL_RANK 0) writes a JSON object to $LEPTON_PROGRESS_FILE
  (status.progress, the PROGRESS column: the operator reads the first pod's, not always global rank 0's);
- the result (or why it failed) as JSON in the termination message, /dev/termination-log (same process).

Data: the 8x8 digits (1797 images) as CSV, by default scikit-learn's copy in the image; `--data` reads another.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

STOP = {"requested": False}


class Digits(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Rows of `pixels..., label` (a CSV, gzipped or not), the pixels scaled to [0, 1]."""

    def __init__(self, table: np.ndarray) -> None:
        self.x = torch.from_numpy(table[:, :-1] / 16.0).float()
        self.y = torch.from_numpy(table[:, -1]).long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def ignore_sigterm(_worker: int) -> None:
    """DataLoader workers share the script's process group, which torchrun signals as a whole: a worker killed by
    SIGTERM would fail the script's next batch before it saved. The script decides; its workers end with it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def default_data() -> Path:
    import sklearn

    return Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"


def write_json(path: Path, doc: dict[str, Any], atomic: bool = True) -> None:
    """Readers never see half a document: write a temporary file, then rename it. The termination message is a
    file the kubelet mounted: written in place, and only when it is there (in a pod)."""
    if not atomic:
        if path.exists():
            path.write_text(json.dumps(doc))
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


def peer_lost(exc: BaseException) -> bool:
    """A collective broke because a peer vanished (its node lost, its container killed), not by this worker."""
    text = f"{type(exc).__name__}: {exc}"
    return "DistNetworkError" in text or "Connection reset by peer" in text or "Connection closed by peer" in text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (they share /dev/shm)")
    ap.add_argument("--step-sleep", type=float, default=0.0, help="idle seconds per step: a visible progress")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: STOP.update(requested=True))

    dist.init_process_group("gloo")  # RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT from torchrun
    rank, world = dist.get_rank(), dist.get_world_size()
    lead = os.environ.get("LOCAL_RANK", "0") == "0"  # the pod's first process: progress and result
    torch.manual_seed(0)
    table = np.loadtxt(args.data or default_data(), delimiter=",", dtype=np.float32)
    order = np.random.default_rng(0).permutation(len(table))
    split = int(0.8 * len(table))
    train, test = Digits(table[order[:split]]), Digits(table[order[split:]])
    sampler: DistributedSampler[int] = DistributedSampler(train, world, rank, seed=0)
    loader = DataLoader(
        train,
        args.batch_size,
        sampler=sampler,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        worker_init_fn=ignore_sigterm,
    )
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)

    ckpt_dir = Path(os.environ.get("LEPTON_CHECKPOINT_DIR", "checkpoints"))
    ckpt = ckpt_dir / "model.pt"
    start = 0
    if ckpt.exists():  # every rank reads the same file (a shared volume); DDP also broadcasts rank 0's weights
        saved = torch.load(ckpt)
        net.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        start = saved["epoch"]
        print(f"rank {rank}: resumed from {ckpt} at epoch {start}", flush=True)
    model = DistributedDataParallel(net)
    progress = Path(os.environ["LEPTON_PROGRESS_FILE"]) if os.environ.get("LEPTON_PROGRESS_FILE") else None
    termination = Path(os.environ.get("LEPTON_TERMINATION_LOG", "/dev/termination-log"))
    total, step, loss = args.epochs * len(loader), start * len(loader), torch.zeros(())

    def save(epoch: int) -> None:
        """Rank 0 writes `epoch` as the one to start from (a partly done epoch is done again)."""
        if rank == 0:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            doc = {"epoch": epoch, "model": net.state_dict(), "optimizer": opt.state_dict()}
            torch.save(doc, ckpt.with_name("model.pt.tmp"))
            ckpt.with_name("model.pt.tmp").replace(ckpt)

    def report(epoch: int, state: str = "Running") -> None:
        if lead and progress is not None:
            doc = {"state": state, "step": step, "totalSteps": total, "epoch": epoch, "loss": round(loss.item(), 4)}
            write_json(progress, doc)

    print(f"rank {rank}/{world}: {len(train)} samples, {args.workers} DataLoader workers, epochs {start}..", flush=True)
    try:
        for epoch in range(start, args.epochs):
            sampler.set_epoch(epoch)
            for x, y in loader:
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                step += 1
                if step % 10 == 0:
                    report(epoch)
                stop = torch.tensor([int(STOP["requested"])])
                dist.all_reduce(stop, op=dist.ReduceOp.MAX)  # every rank stops at the same step
                if stop.item():
                    save(epoch)
                    print(f"rank {rank}: SIGTERM at step {step}: saved epoch {epoch}, exiting", flush=True)
                    report(epoch, "Stopped")
                    dist.destroy_process_group()
                    return
                time.sleep(args.step_sleep)
            save(epoch + 1)
            report(epoch)
            if rank == 0:
                print(f"epoch {epoch} step {step}/{total} loss {loss.item():.4f}", flush=True)
    except Exception as exc:  # say why in the termination message: a lost peer restarts the job, not fails it
        if lead:  # one message per pod
            error = f"{type(exc).__name__}: {exc}"[:1000]
            write_json(termination, {"state": "Failed", "error": error, "peerLost": peer_lost(exc)}, atomic=False)
        raise
    if lead:  # every rank holds the same weights
        with torch.no_grad():
            accuracy = (net(test.x).argmax(1) == test.y).float().mean().item()
        result = {"state": "Succeeded", "step": step, "totalSteps": total, "testAccuracy": round(accuracy, 4)}
        write_json(termination, result, atomic=False)
        print(f"test accuracy {accuracy:.4f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
