"""The launcher's progress endpoint for scripts that do not use lepton_trainer: it serves the JSON object a
script writes to ``$LEPTON_PROGRESS_FILE`` on ``GET :29500/progress`` (what the operator polls on rank 0).

A forked child of the launcher (which then execs torchrun, keeping its pid): it rereads the file twice a second
and ends once its parent is gone. A file that is not a JSON object of at most 64 KiB is not served.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from lepton_trainer.progress import ProgressServer

MAX_BYTES = 64 * 1024
INTERVAL = 0.5


def read_document(path: Path) -> bytes | None:
    """The file's bytes when they hold one JSON object within the bound, else None."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_BYTES:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return data if isinstance(doc, dict) else None


def serve(path: Path, server: ProgressServer, parent: int, interval: float = INTERVAL) -> None:
    """Publish the file's document while `parent` lives (the launcher's pid, torchrun's after the exec)."""
    while os.getppid() == parent:
        if (body := read_document(path)) is not None:
            server.publish(body)
        time.sleep(interval)
    server.close()


def start(path: Path, host: str, port: int) -> int:
    """Fork the serving child (it binds the port itself, so no thread crosses the fork); its pid."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: serve, then leave without running the parent's clean-up
        code = 0
        try:
            serve(path, ProgressServer(host, port), parent)
        except OSError:  # the port is taken: nothing to serve
            code = 1
        finally:
            os._exit(code)
    return pid
