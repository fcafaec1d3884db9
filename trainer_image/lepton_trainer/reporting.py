"""Progress for any training script, in one call: ``lepton_trainer.report(step=, total_steps=, loss=, ...)``.

The local rank 0 of every pod publishes (``LOCAL_RANK`` unset counts as 0): the operator polls the epoch's
first pod (replica 0) on ``GET :29500/progress``, and that pod's processes are not always global rank 0 (the
rendezvous ranks pods by host name: `<job>-<epoch>-10` before `<job>-<epoch>-2`). The operator shows the
document in ``status.progress`` and the PROGRESS column. It is also written to ``$LEPTON_PROGRESS_FILE``; the
rate and ETA are computed from the steps reported.

Scripts in other languages write the same JSON object (``step``, ``totalSteps``, ``epoch``, ``loss``, ...) to
``$LEPTON_PROGRESS_FILE`` themselves: the image's launcher serves that file (``lepton_trainer.launch``). Under
the launcher, ``report`` only writes the file; without it (a custom command), it starts the endpoint itself.
Nothing here imports torch, and a failure to publish is logged, never raised into the training loop.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lepton_trainer import contract
from lepton_trainer.atomic import write_atomic
from lepton_trainer.progress import SCHEMA_VERSION, ProgressServer, parse_listen

log = logging.getLogger(__name__)
SERVED = contract.PROGRESS_SERVED


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


class Reporter:
    """The progress document of one process, published to a file and (optionally) an HTTP endpoint."""

    def __init__(
        self, file: Path | None, server: ProgressServer | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.file, self.server, self.clock = file, server, clock
        self.doc: dict[str, Any] = {"version": SCHEMA_VERSION, "state": "Running"}
        self._mark: tuple[float, int] | None = None
        self._rate: float | None = None  # smoothed steps/s

    def update(self, step: int | None, total_steps: int | None, fields: Mapping[str, Any]) -> None:
        if step is not None:
            self._step(step)
            self.doc["step"] = step
        if total_steps is not None:
            self.doc["totalSteps"] = total_steps
        self.doc.update({_camel(k): v for k, v in fields.items() if v is not None})
        remaining = (self.doc.get("totalSteps") or 0) - (self.doc.get("step") or 0)
        if self.doc.get("state") == "Succeeded":
            self.doc["etaSeconds"] = 0.0
        elif self._rate and remaining >= 0:
            self.doc["etaSeconds"] = round(remaining / self._rate, 1)
        self.doc["updatedAt"] = datetime.now(UTC).isoformat(timespec="milliseconds")
        self._publish(json.dumps(self.doc, separators=(",", ":")).encode())

    def _step(self, step: int) -> None:
        now = self.clock()
        if self._mark is not None and now > self._mark[0] and step > self._mark[1]:
            rate = (step - self._mark[1]) / (now - self._mark[0])
            self._rate = rate if self._rate is None else 0.7 * self._rate + 0.3 * rate
        self._mark = (now, step)

    def _publish(self, body: bytes) -> None:
        if self.server is not None:
            self.server.publish(body)
        if self.file is not None:
            try:
                write_atomic(self.file, body, durable=False)
            except OSError as exc:
                log.warning("cannot write progress file %s: %s", self.file, exc)
                self.file = None


_reporter: Reporter | None = None
_lock = threading.Lock()


def _make(env: Mapping[str, str]) -> Reporter:
    file = Path(env[contract.PROGRESS_FILE]) if env.get(contract.PROGRESS_FILE) else None
    server = None
    listen = parse_listen(env.get(contract.PROGRESS_LISTEN, ""), contract.PROGRESS_PORT)
    if env.get(SERVED) != "1" and listen is not None:
        try:
            server = ProgressServer(*listen)
        except OSError as exc:  # the port is taken (another process of the pod serves it)
            log.warning("progress endpoint %s:%s not started: %s", *listen, exc)
    return Reporter(file, server)


def report(
    step: int | None = None,
    total_steps: int | None = None,
    *,
    loss: float | None = None,
    epoch: int | None = None,
    state: str | None = None,
    **fields: Any,
) -> None:
    """Publish progress from the pod's local rank 0 (other processes: nothing). ``state`` Succeeded or Failed at
    the end; ``fields`` e.g. ``samples_per_second``, ``last_checkpoint_step``, ``test_accuracy`` (camelCase)."""
    global _reporter
    if os.environ.get("LOCAL_RANK", "0") != "0":
        return
    with _lock:
        if _reporter is None:
            env = {contract.PROGRESS_LISTEN: f"0.0.0.0:{contract.PROGRESS_PORT}", **os.environ}
            _reporter = _make(env)
        _reporter.update(step, total_steps, {"loss": loss, "epoch": epoch, "state": state, **fields})
