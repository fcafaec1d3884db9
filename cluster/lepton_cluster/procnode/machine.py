"""What this machine offers: CPU cores, memory and local NVIDIA GPUs."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no MemTotal in {meminfo}")


def gpu_indices(dev: Path = Path("/dev")) -> list[int]:
    """Indices of /dev/nvidia<N> devices (0 GPUs on a machine without the NVIDIA driver)."""
    found = [int(m.group(1)) for p in dev.glob("nvidia*") if (m := re.fullmatch(r"nvidia(\d+)", p.name))]
    return sorted(found)


def kernel_version() -> str:
    return platform.release()
