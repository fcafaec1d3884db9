"""The elastic training loop: resume, step, checkpoint, report, evaluate, export."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from lepton_trainer import contract, data, gradsync, models, rng, runtime, workloads
from lepton_trainer.checkpoint import CheckpointStore
from lepton_trainer.config import TrainConfig
from lepton_trainer.optim import Adam, Scheduler
from lepton_trainer.progress import ProgressReporter, ProgressServer, parse_listen
from lepton_trainer.schedule import WarmupCosine
from lepton_trainer.stop import StopSignal

log = logging.getLogger("lepton_trainer")

CHECKPOINT_FORMAT = 1


class Stopped(Exception):
    """Training stopped on SIGTERM after saving a checkpoint."""


@dataclass
class RunState:
    """Counters of the current run (what a checkpoint's data position is made of)."""

    step: int = 0  # optimizer steps completed
    last_checkpoint: int | None = None
    consistent: bool = True  # False while the optimizer is updating parameters


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on (x, y), in eval mode without autograd."""
    was_training = model.training
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            correct += int((model(x[i : i + batch]).argmax(dim=1) == y[i : i + batch]).sum())
    model.train(was_training)
    return correct / max(len(x), 1)


def state_bytes(model: nn.Module) -> int:
    """Bytes of a module's parameters and buffers (what its export's weights file holds)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


class Trainer:
    """One worker process of an elastic DDP job."""

    def __init__(self, cfg: TrainConfig, env: runtime.RankEnv, stop: StopSignal) -> None:
        self.cfg, self.env, self.stop = cfg, env, stop
        self.run_state = RunState()
        self.checkpoint_seconds = 0.0  # main-thread time spent on interval checkpoints
        self.phases: dict[str, float] = {}  # start-up phase -> seconds
        self.reporter: ProgressReporter | None = None

    # --- setup -----------------------------------------------------------------------------
    def _phase(self, name: str, t0: float) -> float:
        now = time.perf_counter()
        self.phases[name] = round(now - t0, 3)
        return now

    def setup(self) -> None:
        cfg, env = self.cfg, self.env
        t = time.perf_counter()
        runtime.apply_thread_env()
        self.device = torch.device(
            runtime.select_device(cfg.device, env.local_rank, torch.cuda.is_available(), torch.cuda.device_count())
        )
        self.backend = runtime.init_process_group(env, str(self.device), cfg.collective_timeout)
        t = self._phase("process_group", t)
        runtime.seed_everything(cfg.seed, self.device.type)
        self.workload = workloads.build(
            cfg.workload,
            cfg.seed,
            synthetic_samples=cfg.synthetic_samples,
            synthetic_features=cfg.synthetic_features,
            hidden=cfg.synthetic_hidden,
        )
        split = self.workload.split
        self.x_train, self.y_train = split.x_train.to(self.device), split.y_train.to(self.device)
        self.model = models.build(self.workload.architecture, self.workload.config).to(self.device)
        self.optimizer = Adam(self.model.parameters(), lr=cfg.lr)
        g = cfg.global_batch_size
        if g < env.world_size:
            raise ValueError(f"--global-batch-size {g} is smaller than the world size {env.world_size}")
        self.steps_per_epoch = max(len(self.x_train) // g, 1)
        total = cfg.epochs * self.steps_per_epoch
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
        self.scheduler = Scheduler(
            self.optimizer, WarmupCosine(min(cfg.warmup_steps, self.total_steps), self.total_steps)
        )
        self.store = CheckpointStore(cfg.checkpoint_dir, cfg.keep_checkpoints) if cfg.checkpoint_dir else None
        t = self._phase("data_model", t)
        self.resume()
        t = self._phase("resume", t)
        strategy = gradsync.select_strategy(cfg.grad_sync, self.device.type, env.world_size)
        self.sync = gradsync.build(strategy, self.model, self.device, env.world_size)
        if env.local_rank == 0:
            self.reporter = self._make_reporter()
        self._phase("grad_sync_progress", t)
        log.info("set up in %s s", self.phases)

    def _make_reporter(self) -> ProgressReporter:
        server = None
        listen = parse_listen(self.cfg.progress_listen, contract.PROGRESS_PORT)
        if listen is not None:
            try:
                server = ProgressServer(*listen)
            except OSError as exc:
                log.warning("progress endpoint %s:%s not started: %s", *listen, exc)
        return ProgressReporter(
            total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
            global_batch=self.cfg.global_batch_size,
            file=self.cfg.progress_file,
            server=server,
            static={
                "job": os.environ.get(contract.JOB_NAME),
                "restartEpoch": os.environ.get(contract.RESTART_EPOCH),
                "workload": self.cfg.workload,
                "rank": self.env.rank,
                "worldSize": self.env.world_size,
                "restartCount": self.env.restart_count,
            },
        )

    # --- checkpoints -------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        step = self.run_state.step
        return {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "workload": self.cfg.workload,
            "data": {
                "seed": self.cfg.seed,
                "global_batch_size": self.cfg.global_batch_size,
                "epoch": step // self.steps_per_epoch,
                "batch_in_epoch": step % self.steps_per_epoch,
                "samples_seen": step * self.cfg.global_batch_size,
            },
            "world_size": self.env.world_size,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng.capture(),
        }

    def save_checkpoint(self, reason: str, *, background: bool = False) -> None:
        """Rank 0 saves the state after ``run_state.step`` steps (others just note the step)."""
        rs = self.run_state
        if self.store is not None and not background:
            self.store.flush()  # an in-flight interval write must land before we stop or finish
        if self.store is None or not rs.consistent or rs.last_checkpoint == rs.step:
            return
        rs.last_checkpoint = rs.step
        if self.env.rank != 0:
            return
        t = time.perf_counter()
        if background:
            self.store.save_async(rs.step, self.checkpoint_state())
        else:
            self.store.save(rs.step, self.checkpoint_state())
        blocked = time.perf_counter() - t
        if background:
            self.checkpoint_seconds += blocked
        log.info("checkpoint step=%d (%s) blocked %.1f ms", rs.step, reason, 1e3 * blocked)

    def resume(self) -> None:
        """Load the newest valid checkpoint; all ranks end up on the same step."""
        loaded = self.store.load_latest() if self.store is not None else None
        step, state = loaded if loaded is not None else (-1, None)
        if self.env.distributed:
            steps = [torch.zeros(1, dtype=torch.long) for _ in range(self.env.world_size)]
            dist.all_gather(steps, torch.tensor([step], dtype=torch.long))
            seen = [int(s) for s in steps]
            if len(set(seen)) > 1:  # checkpoint dirs not shared: take the newest over the network
                src = max(range(len(seen)), key=lambda r: seen[r])
                log.warning("ranks see different checkpoints %s; using rank %d's", seen, src)
                box: list[Any] = [state]
                dist.broadcast_object_list(box, src=src)
                step, state = seen[src], box[0]
        if state is None:
            log.info("no checkpoint to resume from; starting at step 0")
            return
        if state.get("workload") != self.cfg.workload:
            raise ValueError(f"checkpoint is for workload {state.get('workload')!r}, not {self.cfg.workload!r}")
        if state["data"]["global_batch_size"] != self.cfg.global_batch_size:
            log.warning(
                "checkpoint used global batch %s; data position is kept as a step count",
                state["data"]["global_batch_size"],
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rng.restore(state["rng"])
        self.run_state.step = self.run_state.last_checkpoint = step
        log.info(
            "resumed from checkpoint step=%d (epoch %d, world size then %s, now %d)",
            step,
            state["data"]["epoch"],
            state.get("world_size"),
            self.env.world_size,
        )

    # --- training ----------------------------------------------------------------------------
    def train(self) -> None:
        cfg, env, rs = self.cfg, self.env, self.run_state
        g = cfg.global_batch_size
        lo, hi = data.rank_slice(g, env.world_size, env.rank)
        scale = self.sync.loss_scale(g)  # synced gradients are those of the global-batch mean loss
        order_epoch, order = -1, torch.empty(0, dtype=torch.long)
        window_loss = torch.zeros((), device=self.device)
        window_steps = 0
        start = rs.step
        warm = start + min(10, max((self.total_steps - start) // 10, 1))
        self.measure: tuple[float, int] | None = None
        self.sync.module.train()
        if self.reporter is not None:
            self.reporter.start(start, rs.last_checkpoint)
        self.stop.in_loop.set()
        while rs.step < self.total_steps:
            epoch, batch = divmod(rs.step, self.steps_per_epoch)
            if epoch != order_epoch:
                order_epoch, order = (
                    epoch,
                    data.epoch_order(len(self.x_train), cfg.seed, epoch).to(self.device),
                )
            idx = order[batch * g + lo : batch * g + hi]
            x, y = self.x_train[idx], self.y_train[idx]
            try:
                if self._stop_agreed():  # a collective: a peer lost here is a collective failure below
                    self.save_checkpoint("SIGTERM")
                    raise Stopped
                with runtime.autocast(self.device.type):
                    logits = self.sync.module(x)
                loss_sum = F.cross_entropy(logits.float(), y, reduction="sum")
                self.sync.zero_grad()
                torch.autograd.backward(loss_sum * scale)
                self.sync.after_backward()
                rs.consistent = False
                self.optimizer.step()
                self.scheduler.step()
                rs.step += 1
                rs.consistent = True
                window_loss += loss_sum.detach()
                window_steps += 1
                if rs.step == start + 1:
                    log.info("first step after start: step=%d wall=%.3f", rs.step, time.time())
                if rs.step == warm:
                    self.measure = (time.perf_counter(), rs.step)
                if cfg.checkpoint_every and rs.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint("interval", background=True)
                if rs.step % cfg.log_every == 0 or rs.step == self.total_steps:
                    mean = self._global_mean_loss(window_loss, window_steps * g)
                    window_loss.zero_()
                    window_steps = 0
                    if self.reporter is not None:
                        if self.store is not None and self.store.durable_step is not None:
                            self.reporter.checkpointed(self.store.durable_step)
                        self.reporter.step(rs.step, mean)
            except (RuntimeError, dist.DistBackendError) as exc:
                log.error("stopped after step=%d: %s", rs.step, str(exc).splitlines()[0][:300])
                self.save_checkpoint("collective failure")
                raise
            if cfg.step_sleep:
                time.sleep(cfg.step_sleep)
        self.loop_end = time.perf_counter()
        self.stop.in_loop.clear()
        self.save_checkpoint("final")

    def _stop_agreed(self) -> bool:
        """Whether any rank got SIGTERM, agreed by all at this step boundary. The pods' kubelets signal the ranks
        at different moments: deciding alone, one rank stopped while another waited for it in the next step's
        collective, which then failed (that rank ended on a peer failure, not on its stop)."""
        asked = self.stop.requested.is_set()
        if not self.env.distributed:
            return asked
        flag = torch.tensor([1 if asked else 0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _global_mean_loss(self, window_loss: torch.Tensor, samples: int) -> float:
        total = window_loss.detach().clone()
        if self.env.distributed:
            dist.all_reduce(total)
        return float(total) / max(samples, 1)

    # --- end of training ---------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        """Evaluate, export (rank 0) and return the result document."""
        cfg, rs = self.cfg, self.run_state
        split = self.workload.split
        model = self.model.to("cpu").eval()
        acc = accuracy(model, split.x_test, split.y_test)
        result: dict[str, Any] = {
            "state": "Succeeded",
            "workload": cfg.workload,
            "testAccuracy": round(acc, 4),
            "steps": rs.step,
            "epochs": rs.step // self.steps_per_epoch,
            "worldSize": self.env.world_size,
            "gradSync": self.sync.name,
            "lastCheckpointStep": rs.last_checkpoint,
        }
        if self.measure is not None:
            t0, s0 = self.measure
            dt = self.loop_end - t0
            if rs.step > s0 and dt > 0:
                result["samplesPerSecond"] = round((rs.step - s0) * cfg.global_batch_size / dt, 1)
                result["measuredSteps"] = rs.step - s0
                result["measuredSeconds"] = round(dt, 3)
            if self.env.rank == 0 and self.store is not None:
                result["checkpointSeconds"] = round(self.checkpoint_seconds, 4)
        log.info("test accuracy %.4f after %d steps", acc, rs.step)
        served: nn.Module = model
        if cfg.quantize == "int8":
            from lepton_trainer.quantize import SCHEME, quantize_int8

            served = quantize_int8(model)
            q_acc = accuracy(served, split.x_test, split.y_test)
            fp32_b, int8_b = state_bytes(model), state_bytes(served)
            result["quantization"] = {
                "scheme": SCHEME,
                "testAccuracy": round(q_acc, 4),
                "accuracyChange": round(q_acc - acc, 4),
                "fp32Bytes": fp32_b,
                "int8Bytes": int8_b,
                "sizeRatio": round(int8_b / fp32_b, 3),
            }
            log.info("int8: accuracy %.4f (%+.4f), weights %d -> %d bytes", q_acc, q_acc - acc, fp32_b, int8_b)
        if self.env.rank == 0 and cfg.export_dir is not None:
            from lepton_trainer.model_io import export_model

            export_model(
                served,
                cfg.export_dir,
                architecture=self.workload.architecture,
                config=self.workload.config,
                input_spec=self.workload.input_spec,
                labels=self.workload.labels,
                quantized=cfg.quantize == "int8",
                metrics={k: v for k, v in result.items() if k in ("testAccuracy", "quantization")},
                training={
                    "job": os.environ.get(contract.JOB_NAME),
                    "workload": cfg.workload,
                    "steps": rs.step,
                },
            )
            result["exportPath"] = str(cfg.export_dir)
            log.info("exported the model to %s", cfg.export_dir)
        return result
