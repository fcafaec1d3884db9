"""One way to start a long-running component: detached, its output in a log headed by its command line."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Callable
from pathlib import Path


def spawn_logged(
    argv: list[str],
    *,
    log_path: Path,
    pid_file: Path,
    cwd: Path,
    env: dict[str, str],
    append: bool = False,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in a session of its own (a Ctrl-C of the caller leaves it be), stdout and stderr to
    `log_path` (after a `# <time> <argv>` line), and record its pid in `pid_file`."""
    with open(log_path, "ab" if append else "wb") as log:
        log.write(f"# {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc
