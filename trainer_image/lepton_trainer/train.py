"""``python -m lepton_trainer.train``: one worker of an elastic training job (run it under torchrun).

Exit codes: 0 done, 143 stopped by SIGTERM (after a checkpoint), 1 failed.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence

from lepton_trainer.config import parse_args
from lepton_trainer.result import peer_lost, write_termination_message
from lepton_trainer.runtime import RankEnv
from lepton_trainer.stop import EXIT_CODE, StopSignal, hard_exit


def configure_logging(rank: int) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one worker: in a child of the launcher's zygote when there is one, else here."""
    args = list(sys.argv[1:] if argv is None else argv)
    from lepton_trainer.zygote import run_via_zygote

    code = run_via_zygote(args)
    return run(args) if code is None else code


def run(argv: Sequence[str]) -> int:
    """The worker itself."""
    env = RankEnv.from_env()
    configure_logging(env.rank)
    cfg = parse_args(argv)
    stop = StopSignal(cfg.term_grace)
    stop.install()
    log = logging.getLogger("lepton_trainer")

    t0 = time.perf_counter()
    from lepton_trainer.trainer import Stopped, Trainer  # imports torch

    trainer = Trainer(cfg, env, stop)
    trainer.phases["import"] = round(time.perf_counter() - t0, 3)
    try:
        trainer.setup()
        trainer.train()
        result = trainer.finish()
    except Stopped:
        if trainer.reporter is not None:
            trainer.reporter.finish("Stopped")
        stop.done.set()
        log.info("stopped by SIGTERM at step=%d", trainer.run_state.step)
        hard_exit(EXIT_CODE)
    except BaseException as exc:  # the process boundary: report, then let torchrun see the failure
        stop.done.set()
        log.exception("training failed at step=%d", trainer.run_state.step)
        if trainer.reporter is not None:
            trainer.reporter.finish("Interrupted", error=str(exc)[:300])
        if env.local_rank == 0:
            write_termination_message(
                {
                    "state": "Failed",
                    "step": trainer.run_state.step,
                    "error": f"{type(exc).__name__}: {exc}"[:1000],
                    "peerLost": peer_lost(exc),
                },
                cfg.termination_log,
            )
        raise
    stop.done.set()
    if env.local_rank == 0:
        write_termination_message(result, cfg.termination_log)
    if trainer.reporter is not None:
        trainer.reporter.finish("Succeeded", result=result)
    log.info("result %s", result)
    if env.distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
