"""The trainer's command line (``python -m lepton_trainer.train --help``), parsed into a dataclass."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lepton_trainer import contract
from lepton_trainer.workloads import DEFAULTS


@dataclass(frozen=True)
class TrainConfig:
    workload: str
    epochs: int
    max_steps: int | None
    global_batch_size: int
    lr: float
    warmup_steps: int
    seed: int
    device: str
    grad_sync: str
    checkpoint_dir: Path | None
    checkpoint_every: int
    keep_checkpoints: int
    progress_file: Path | None
    progress_listen: str
    log_every: int
    export_dir: Path | None
    quantize: str
    termination_log: Path
    step_sleep: float
    collective_timeout: float
    term_grace: float
    synthetic_samples: int
    synthetic_features: int
    synthetic_hidden: int


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def build_parser() -> argparse.ArgumentParser:
    e = os.environ.get
    p = argparse.ArgumentParser(
        prog="python -m lepton_trainer.train",
        description="Elastic DDP trainer; run it under torchrun (or lepton_trainer.launch).",
    )
    p.add_argument("--workload", choices=sorted(DEFAULTS), default="digits")
    p.add_argument("--epochs", type=int, help="passes over the training split (workload default)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--global-batch-size", type=int, help="samples per step over all ranks (fixed when scaling)")
    p.add_argument("--lr", type=float, help="peak learning rate (workload default)")
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--grad-sync", choices=["auto", "ddp", "allreduce"], default="auto", help="auto: DDP on GPU, all-reduce on CPU"
    )
    p.add_argument("--checkpoint-dir", default=e(contract.CHECKPOINT_DIR), help=f"${contract.CHECKPOINT_DIR}")
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints (0: only on stop)")
    p.add_argument("--keep-checkpoints", type=int, default=3)
    p.add_argument("--progress-file", default=e(contract.PROGRESS_FILE), help=f"${contract.PROGRESS_FILE}")
    p.add_argument(
        "--progress-listen",
        default=e(contract.PROGRESS_LISTEN, contract.default_progress_listen(os.environ)),
        help=f"host:port of GET /progress, or 'off' (${contract.PROGRESS_LISTEN})",
    )
    p.add_argument("--log-every", type=int, default=20, help="steps between progress updates")
    p.add_argument("--export-dir", help="where to export the model (default: <checkpoint-dir>/export)")
    p.add_argument("--quantize", choices=["none", "int8"], default="none", help="int8 dynamic quantisation")
    p.add_argument(
        "--termination-log",
        default=e(contract.TERMINATION_LOG, contract.TERMINATION_MESSAGE_PATH),
        help=f"final result JSON (${contract.TERMINATION_LOG})",
    )
    p.add_argument("--step-sleep", type=float, default=0.0, help="seconds of idle time per step (demos, tests)")
    p.add_argument("--collective-timeout", type=float, default=120.0, help="seconds before a collective fails")
    p.add_argument("--term-grace", type=float, default=10.0, help="seconds to reach a step boundary on SIGTERM")
    p.add_argument("--synthetic-samples", type=int, default=4096)
    p.add_argument("--synthetic-features", type=int, default=1024)
    p.add_argument("--synthetic-hidden", type=int, default=2048)
    return p


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    p = build_parser()
    a = p.parse_args(argv)
    d = DEFAULTS[a.workload]
    checkpoint_dir = _path(a.checkpoint_dir)
    export_dir = _path(a.export_dir) or (checkpoint_dir / "export" if checkpoint_dir else None)
    cfg = TrainConfig(
        workload=a.workload,
        epochs=a.epochs if a.epochs is not None else d.epochs,
        max_steps=a.max_steps,
        global_batch_size=a.global_batch_size or d.global_batch_size,
        lr=a.lr if a.lr is not None else d.lr,
        warmup_steps=a.warmup_steps,
        seed=a.seed,
        device=a.device,
        grad_sync=a.grad_sync,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=a.checkpoint_every,
        keep_checkpoints=a.keep_checkpoints,
        progress_file=_path(a.progress_file),
        progress_listen=a.progress_listen,
        log_every=max(a.log_every, 1),
        export_dir=export_dir,
        quantize=a.quantize,
        termination_log=Path(a.termination_log),
        step_sleep=a.step_sleep,
        collective_timeout=a.collective_timeout,
        term_grace=a.term_grace,
        synthetic_samples=a.synthetic_samples,
        synthetic_features=a.synthetic_features,
        synthetic_hidden=a.synthetic_hidden,
    )
    if cfg.epochs < 1 or cfg.global_batch_size < 1 or cfg.keep_checkpoints < 1:
        p.error("--epochs, --global-batch-size and --keep-checkpoints must be >= 1")
    return cfg
