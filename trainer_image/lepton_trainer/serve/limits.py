"""The server's limits: request size, timeouts, queue and connection bounds (flags, env LEPTON_SERVE_*)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Limits:
    """Every bound the server enforces; the defaults are the documented ones (docs/inferenceservice.md)."""

    max_body_bytes: int = 4 * 1024 * 1024  # 413 beyond; parsing 4 MiB of JSON takes ~0.1 s here
    max_buffered_bytes: int = 64 * 1024 * 1024  # all bodies being received or parsed at once; 503 beyond
    max_rows: int = 1024  # samples per request (400 beyond)
    max_elements: int = 1 << 20  # tensor values per request (400 beyond)
    max_depth: int = 8  # nesting of inputs[0].data (400 beyond)
    max_queue_batches: int = 8  # admitted requests (queued or running) <= this x max batch size; 503 beyond
    queue_timeout: float = 5.0  # s a request may wait for its result from the batcher; 503 after
    header_timeout: float = 10.0  # s from connection (or last response) to complete request headers; 408
    body_timeout: float = 30.0  # s to receive the whole body once headers arrived; 408
    keep_alive: float = 5.0  # s an idle keep-alive connection stays open (uvicorn timeout_keep_alive)
    max_header_bytes: int = 16 * 1024  # request line + headers (uvicorn h11_max_incomplete_event_size); 400
    max_connections: int = 512  # open connections + tasks; uvicorn answers 503 beyond (limit_concurrency)
    inline_parse_bytes: int = 64 * 1024  # bodies above this are parsed in a worker thread

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise ValueError(f"{f.name} must be > 0")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per limit, its default from LEPTON_SERVE_<NAME> or the dataclass."""
    group = p.add_argument_group("limits (docs/inferenceservice.md)")
    for f in fields(Limits):
        env = f"LEPTON_SERVE_{f.name.upper()}"
        kind = int if isinstance(f.default, int) else float
        default = kind(os.environ.get(env, str(f.default)))
        group.add_argument(
            _flag(f.name), dest=f.name, type=kind, default=default, help=f"(${env}, default {f.default})"
        )


def from_args(args: argparse.Namespace) -> Limits:
    return Limits(**{f.name: getattr(args, f.name) for f in fields(Limits)})
