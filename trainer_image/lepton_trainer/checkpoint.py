"""Checkpoint files: checksummed, written atomically, last K kept, verified on load.

File layout (``step-<step>.ckpt``)::

    8 bytes   magic  b"LPTCKPT1"
    8 bytes   payload length, unsigned big-endian
    32 bytes  SHA-256 of the payload
    payload   torch.save() of a dict of plain tensors / containers (loaded with weights_only=True)

A file whose magic, length or checksum is wrong is skipped with a log line and the previous
checkpoint is used.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import struct
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lepton_trainer.atomic import write_atomic

log = logging.getLogger(__name__)

MAGIC = b"LPTCKPT1"
_HEADER = struct.Struct(">8sQ32s")
_NAME = re.compile(r"^step-(\d{10})\.ckpt$")


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupt or not a checkpoint."""


@dataclass(frozen=True)
class CheckpointFile:
    """One checkpoint on disk."""

    step: int
    path: Path


def file_name(step: int) -> str:
    """The file name of the checkpoint taken after ``step`` optimizer steps."""
    return f"step-{step:010d}.ckpt"


def encode(state: dict[str, Any]) -> bytes:
    """Serialise ``state`` with torch and frame it with magic, length and checksum."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    return _HEADER.pack(MAGIC, len(payload), hashlib.sha256(payload).digest()) + payload


def decode(data: bytes) -> dict[str, Any]:
    """Verify the frame and checksum of ``data`` and deserialise it; raises CheckpointError."""
    import torch

    if len(data) < _HEADER.size:
        raise CheckpointError(f"truncated header ({len(data)} bytes)")
    magic, length, digest = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointError("bad magic")
    payload = memoryview(data)[_HEADER.size :]
    if len(payload) != length:
        raise CheckpointError(f"truncated payload ({len(payload)} of {length} bytes)")
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError("checksum mismatch")
    state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise CheckpointError("payload is not a dict")
    return state


class CheckpointStore:
    """The checkpoints of one job in one directory.

    :meth:`save_async` serialises the state at once (a consistent snapshot) and leaves the write,
    fsync and rename to a background thread, so training continues during the disk I/O; one write
    is in flight at most. :attr:`durable_step` is the newest step known to be on disk.
    """

    def __init__(self, directory: Path, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.directory = directory
        self.keep = keep
        self.durable_step: int | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._pending: Future[Path] | None = None
        self._lock = threading.Lock()

    def files(self) -> list[CheckpointFile]:
        """Checkpoint files present, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for p in self.directory.iterdir():
            m = _NAME.match(p.name)
            if m:
                found.append(CheckpointFile(int(m.group(1)), p))
        return sorted(found, key=lambda f: f.step)

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Write the checkpoint for ``step`` atomically and prune all but the newest ``keep``."""
        self.flush()
        return self._write(step, encode(state))

    def save_async(self, step: int, state: dict[str, Any]) -> None:
        """Snapshot ``state`` now; write it in the background (waits for the previous write)."""
        payload = encode(state)
        self.flush()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._pending = self._writer.submit(self._write, step, payload)

    def flush(self) -> None:
        """Wait for the background write, if any; a failed write is logged, not raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                pending.result()
            except OSError as exc:
                log.error("checkpoint write failed: %s", exc)

    def _write(self, step: int, payload: bytes) -> Path:
        path = self.directory / file_name(step)
        write_atomic(path, payload)
        with self._lock:
            self.durable_step = max(step, self.durable_step or 0)
        self.prune()
        return path

    def prune(self) -> None:
        """Delete all but the newest ``keep`` checkpoints."""
        for old in self.files()[: -self.keep]:
            old.path.unlink(missing_ok=True)

    def load_latest(self) -> tuple[int, dict[str, Any]] | None:
        """The newest checkpoint that verifies, as (step, state); None when there is none."""
        for f in reversed(self.files()):
            try:
                state = decode(f.path.read_bytes())
            except (CheckpointError, OSError) as exc:
                log.warning("checkpoint %s is unusable (%s); falling back to the previous one", f.path, exc)
                continue
            except Exception as exc:  # torch.load raises assorted errors on a valid frame
                log.warning("checkpoint %s failed to deserialise (%s); falling back", f.path, exc)
                continue
            return f.step, state
        return None
