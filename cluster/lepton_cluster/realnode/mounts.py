"""Mounts a real node leaves behind: containerd's overlay rootfs and shm mounts, network namespace
bind mounts (under containerd's state folder) and the kubelet's volume mounts (tmpfs, bind)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .cgroups import MOUNTINFO, unescape


def mounts_under(prefix: Path, mountinfo: str | None = None) -> list[str]:
    """Mount points at or below `prefix`, deepest (and latest) first."""
    text = MOUNTINFO.read_text() if mountinfo is None else mountinfo
    base = str(prefix).rstrip("/")
    found = []
    for line in text.splitlines():
        point = unescape(line.split(" ")[4])
        if point == base or point.startswith(base + "/"):
            found.append(point)
    found.reverse()  # stacked mounts: the last one first
    return sorted(found, key=lambda p: -p.count("/"))


def unmount_all(prefix: Path) -> list[str]:
    """Unmount everything below `prefix` (lazily when busy); returns what was unmounted."""
    done: list[str] = []
    for _ in range(5):
        points = mounts_under(prefix)
        if not points:
            return done
        for point in points:
            res = subprocess.run(["umount", point], capture_output=True, text=True, timeout=30, check=False)
            if res.returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, text=True, timeout=30, check=False)
            done.append(point)
    left = mounts_under(prefix)
    if left:
        raise RuntimeError(f"mounts left under {prefix}: {left}")
    return done
