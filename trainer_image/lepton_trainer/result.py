"""The final result, written as compact JSON to the container's termination message file.

Kubernetes copies that file (at most 4 KiB) into the pod's status, where the operator reads it:
no API access from the pod needed.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from lepton_trainer import contract

log = logging.getLogger(__name__)

MAX_BYTES = 4096

#: torch.distributed's own errors for a broken peer connection or store (by name: no torch import here)
PEER_ERRORS = frozenset({"DistNetworkError", "DistStoreError"})
#: what gloo and NCCL say when a peer vanished mid-collective (gloo raises a plain RuntimeError)
PEER_MESSAGES = re.compile(
    r"Connection (reset|closed) by peer|Broken pipe|Connection refused|Socket Timeout|Timed out waiting"
    r"|NCCL communicator was aborted|remote process exited|ncclRemoteError",
    re.IGNORECASE,
)


def peer_lost(exc: BaseException) -> bool:
    """Whether the worker failed because a peer vanished (its node lost, its container killed), not by itself:
    the operator then restarts the epoch instead of failing the job on this worker's exit code 1."""
    if any(cls.__name__ in PEER_ERRORS for cls in type(exc).__mro__):
        return True
    return bool(PEER_MESSAGES.search(str(exc)))


def termination_log_path() -> Path:
    return Path(os.environ.get(contract.TERMINATION_LOG, contract.TERMINATION_MESSAGE_PATH))


def encode_result(result: dict[str, Any], limit: int = MAX_BYTES) -> bytes:
    """Compact JSON under ``limit`` bytes: drops the largest fields until it fits."""
    doc = dict(result)
    body = json.dumps(doc, separators=(",", ":")).encode()
    while len(body) > limit and doc:
        biggest = max(doc, key=lambda k: len(json.dumps(doc[k])))
        doc.pop(biggest)
        doc["truncated"] = True
        body = json.dumps(doc, separators=(",", ":")).encode()
    return body


def write_termination_message(result: dict[str, Any], path: Path | None = None) -> bool:
    """Write ``result``; returns False (with a log line) when the file isn't writable."""
    target = path or termination_log_path()
    body = encode_result(result)
    try:
        # Not a rename: the kubelet bind-mounts this exact file into the container.
        with open(target, "wb") as f:
            f.write(body)
    except OSError as exc:
        log.info("termination message not written to %s (%s)", target, exc)
        return False
    return True
