"""Kernel settings the kubelet changes at start-up, put back when the last real node stops.

The kubelet sets vm.overcommit_memory, vm.panic_on_oom, kernel.panic, kernel.panic_on_oops and the
root key quotas (with `protectKernelDefaults: true` it refuses to start instead). The values from
before the first kubelet are kept in one machine-wide file, written once, and restored (and the file
removed) when no kubelet of any local cluster is left.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

KEYS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
PROC_SYS = Path("/proc/sys")
SAVED = Path("/run/lepton-operator/kernel-settings-before-kubelet.json")


def save(saved: Path = SAVED) -> None:
    """Record the current values unless a record exists (a kubelet may have changed them since)."""
    if saved.exists():
        return
    saved.parent.mkdir(parents=True, exist_ok=True)
    values = {k: (PROC_SYS / k).read_text().strip() for k in KEYS}
    saved.write_text(json.dumps(values, indent=1) + "\n")


def restore(saved: Path = SAVED) -> dict[str, str]:
    """Write the recorded values back and forget them; returns what was restored."""
    try:
        values: dict[str, str] = json.loads(saved.read_text())
    except (OSError, ValueError):
        return {}
    for key, value in values.items():
        with contextlib.suppress(OSError):
            (PROC_SYS / key).write_text(value)
    saved.unlink(missing_ok=True)
    return values
