"""cgroup v1 folders of the real nodes, in every mounted hierarchy (and the hybrid v2 one).

The kubelet (cgroupfs driver) needs its cgroupRoot in every hierarchy; cpuset children start empty,
so each level we make gets its parent's cpus/mems and `cgroup.clone_children=1` (its own children
inherit them). Every process of a node lives under its root, so the root is also how a node is
killed and how `down` knows nothing is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")


def unescape(field: str) -> str:
    """A mountinfo path field: octal escapes (\\040 for a space) decoded."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def hierarchies(mountinfo: str | None = None) -> list[Path]:
    """Mount points of every cgroup (v1) and cgroup2 hierarchy."""
    text = MOUNTINFO.read_text() if mountinfo is None else mountinfo
    found = []
    for line in text.splitlines():
        pre, _, post = line.partition(" - ")
        if post.split(" ", 1)[0] in ("cgroup", "cgroup2"):
            found.append(Path(unescape(pre.split(" ")[4])))
    return found


def _levels(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def create(path: str) -> None:
    """Make `path` (absolute within each hierarchy) everywhere, cpuset filled, clone_children on."""
    for root in hierarchies():
        for level in _levels(path):
            d = root / level.lstrip("/")
            if d.is_dir():
                continue
            d.mkdir()
            if (d / "cpuset.cpus").exists():
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (d / f).write_text((d.parent / f).read_text())
            if (d / "cgroup.clone_children").exists():
                (d / "cgroup.clone_children").write_text("1")


def joiner(path: str) -> Callable[[], None]:
    """A `preexec_fn` that moves the child into `path` in every hierarchy. The files are found in
    the parent; the child only opens and writes (no locks, no imports between fork and exec)."""
    files = [str(root / path.lstrip("/") / "cgroup.procs") for root in hierarchies()]

    def join() -> None:
        pid = str(os.getpid()).encode()
        for f in files:
            fd = os.open(f, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    return join


def pids(path: str) -> set[int]:
    """Every process in `path` or below, in any hierarchy."""
    found: set[int] = set()
    for root in hierarchies():
        top = root / path.lstrip("/")
        if not top.is_dir():
            continue
        for d, _, _ in os.walk(top):
            with contextlib.suppress(OSError):
                found.update(int(p) for p in Path(d, "cgroup.procs").read_text().split())
    return found


def kill_all(path: str, timeout: float = 10.0) -> int:
    """SIGKILL every process under `path` until none is left; returns how many were signalled."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        live = pids(path)
        if not live:
            return len(killed)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes left in cgroup {path} after SIGKILL: {sorted(live)}")
        for pid in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed |= live
        time.sleep(0.05)


def remove(path: str) -> None:
    """rmdir `path` and everything below it, deepest first, in every hierarchy (must be empty)."""
    for root in hierarchies():
        top = root / path.lstrip("/")
        if not top.is_dir():
            continue
        for d, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            Path(d).rmdir()


def roots(prefix: str) -> list[str]:
    """Top-level cgroups whose names start with `prefix` (in any hierarchy)."""
    found: set[str] = set()
    for root in hierarchies():
        with contextlib.suppress(OSError):
            found.update(f"/{d.name}" for d in root.iterdir() if d.is_dir() and d.name.startswith(prefix))
    return sorted(found)
