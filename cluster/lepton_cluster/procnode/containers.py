"""One run (attempt) of a container: its folder, the shim that supervises it, signals and the exit code.

Folder `<pod dir>/containers/<name>/<attempt>/`: launch.json (what to run), log (stdout and stderr),
termination-log, run.json and exit.json (written by the shim), mountpoints.json (by its init).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .podspec import SYSTEM_PATH, ContainerLaunch
from .procfs import alive, read_json, signal_process, write_json


@dataclass
class Attempt:
    dir: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        return self.dir / "log"

    @property
    def termination_log(self) -> Path:
        return self.dir / "termination-log"

    def run_info(self) -> dict[str, Any] | None:
        doc = read_json(self.dir / "run.json")
        return doc if isinstance(doc, dict) else None

    def exit_info(self) -> dict[str, Any] | None:
        if self.popen is not None:
            self.popen.poll()  # reap our own child; adopted shims are reaped by init
        doc = read_json(self.dir / "exit.json")
        return doc if isinstance(doc, dict) else None

    def shim_alive(self) -> bool:
        if self.popen is not None and self.popen.poll() is None:
            return True
        run = self.run_info()
        return run is not None and alive(run["shimPid"], run.get("shimTicks"))

    def init_alive(self) -> bool:
        run = self.run_info()
        return run is not None and alive(run["initPid"], run.get("initTicks"))

    def mountpoints(self) -> list[str]:
        doc = read_json(self.dir / "mountpoints.json")
        return [str(p) for p in doc] if isinstance(doc, list) else []

    def signal(self, sig: int) -> None:
        """SIGTERM goes to the shim (relayed to the command); SIGKILL to the container's PID 1 (kills all)."""
        run = self.run_info()
        if run is None:
            if self.popen is not None and self.popen.poll() is None:
                self.popen.send_signal(sig)
            return
        if sig == signal.SIGKILL or not signal_process(run["shimPid"], run.get("shimTicks"), sig):
            signal_process(run["initPid"], run.get("initTicks"), sig)

    def stop(self, grace: float, poll: float = 0.05) -> None:
        """SIGTERM, up to `grace` seconds, then SIGKILL; returns when the shim has recorded the end."""
        if self.exit_info() is not None:
            return
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.exit_info() is None and self.shim_alive():
            time.sleep(poll)
        if self.exit_info() is None:
            self.signal(signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.exit_info() is None and (self.shim_alive() or self.init_alive()):
                time.sleep(poll)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)

    def log_tail(self, max_bytes: int = 65536) -> str:
        try:
            with self.log.open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - max_bytes))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def termination_text(self) -> str:
        try:
            return self.termination_log.read_text(errors="replace")
        except OSError:
            return ""


def start(attempt_dir: Path, netns: str, launch: ContainerLaunch, *, hostname: str, tmp_dir: Path) -> Attempt:
    """Launch the shim in the pod's network namespace; it returns at once (the shim runs on its own)."""
    attempt_dir.mkdir(parents=True, exist_ok=True)
    for (
        m
    ) in launch.mounts:  # a volume's own folder exists already: a missing source is a subPath, made as the kubelet does
        if not os.path.lexists(m.source):
            Path(m.source).mkdir(parents=True)
    write_json(
        attempt_dir / "launch.json",
        {
            "argv": launch.argv,
            "env": launch.env,
            "workdir": launch.workdir,
            "hostname": hostname,
            "tmp": str(tmp_dir),
            "mounts": [{"source": m.source, "target": m.target, "readOnly": m.read_only} for m in launch.mounts],
        },
    )
    with (attempt_dir / "log").open("ab") as log:
        popen = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "lepton_cluster.procnode.shim", str(attempt_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not in the agent's process group: an agent's Ctrl-C or crash leaves it be
            env={"PATH": SYSTEM_PATH},
            close_fds=True,
        )
    return Attempt(attempt_dir, popen)
