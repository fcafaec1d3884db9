"""`python -m lepton_trainer.serve --model-dir DIR --name NAME [--port 8080] [--host 0.0.0.0]`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

import uvicorn

from . import limits
from .app import BatchingConfig, Server
from .model import ServedModel
from .protocol import protocol

DEFAULT_PORT = 8080


class _DrainingServer(uvicorn.Server):
    """uvicorn already stops accepting and waits for in-flight requests on SIGTERM; first flip readiness."""

    def __init__(self, config: uvicorn.Config, on_exit: Server) -> None:
        super().__init__(config)
        self._app_server = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app_server.drain()
        super().handle_exit(sig, frame)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m lepton_trainer.serve", description=__doc__)
    p.add_argument("--model-dir", type=Path, required=True, help="a lepton-model export directory")
    p.add_argument("--name", required=True, help="the model name in /v2/models/{name}")
    p.add_argument("--host", default=env("LEPTON_SERVE_HOST", "0.0.0.0"))
    p.add_argument("--port", type=int, default=int(env("LEPTON_SERVE_PORT", str(DEFAULT_PORT))))
    p.add_argument("--max-batch-size", type=int, default=32, help="rows per forward pass; 1 = no batching")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="longest wait for a batch to fill")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--drain-seconds", type=float, default=25.0, help="most time SIGTERM waits for in-flight requests")
    p.add_argument("--simulated-latency-ms", type=float, default=0.0, help="added per forward pass (tests, demos)")
    p.add_argument("--log-level", default="info")
    limits.add_arguments(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(max(1, args.threads))
    model = ServedModel(args.name, args.model_dir, simulated_latency=args.simulated_latency_ms / 1000)
    bounds = limits.from_args(args)
    server = Server(model, BatchingConfig(max(1, args.max_batch_size), max(0.0, args.max_wait_ms)), bounds)
    config = uvicorn.Config(
        server.app,
        host=args.host,
        port=args.port,
        http=protocol(bounds.header_timeout),
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=int(args.drain_seconds),
        timeout_keep_alive=max(1, round(bounds.keep_alive)),
        h11_max_incomplete_event_size=bounds.max_header_bytes,
        limit_concurrency=bounds.max_connections,
        lifespan="on",
    )
    # uvicorn re-raises the signal after its graceful shutdown; by then every request is answered: exit 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _DrainingServer(config, server).run()


if __name__ == "__main__":
    main()
