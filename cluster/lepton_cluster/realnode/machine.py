"""What the kubelet and containerd leave outside our folders, put back when the last real node stops.

- Kernel settings: the kubelet sets vm.overcommit_memory, vm.panic_on_oom, kernel.panic,
  kernel.panic_on_oops and the root key quotas at start (with `protectKernelDefaults: true` it refuses
  to start instead).
- Fixed paths: the kubelet's device-plugin socket (/var/lib/kubelet/device-plugins/kubelet.sock) and
  /var/log/containers, libcni's cache (/var/lib/cni/results), containerd's shim sockets
  (/run/containerd/s): none of them can be configured away.

Before the first real node (of any local cluster) the values and which of those folders exist are
kept in one machine-wide record, written once; when no real node is left they are restored, the
folders that did not exist are removed (when empty) and the record goes.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

KERNEL_SETTINGS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
#: Deepest last: removed in reverse.
FOLDERS = (
    Path("/var/lib/kubelet"),
    Path("/var/lib/kubelet/device-plugins"),
    Path("/var/log/containers"),
    Path("/var/lib/cni"),
    Path("/var/lib/cni/results"),
    Path("/run/containerd"),
    Path("/run/containerd/s"),
)
KUBELET_DEVICE_SOCKET = Path("/var/lib/kubelet/device-plugins/kubelet.sock")
PROC_SYS = Path("/proc/sys")
RECORD = Path("/run/lepton-operator/before-real-nodes.json")
#: The kernel values alone, as the first version wrote them (clusters of older checkouts still do).
LEGACY_RECORD = RECORD.with_name("kernel-settings-before-kubelet.json")


def _legacy(record: Path) -> dict[str, str]:
    try:
        return dict(json.loads(record.with_name(LEGACY_RECORD.name).read_text()))
    except (OSError, ValueError):
        return {}


def save(record: Path = RECORD) -> None:
    """Record the kernel settings and the folders that exist, unless a record exists already."""
    if record.exists():
        return
    record.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "kernel": {k: (PROC_SYS / k).read_text().strip() for k in KERNEL_SETTINGS} | _legacy(record),
        "folders": [str(f) for f in FOLDERS if f.exists()],
    }
    record.write_text(json.dumps(state, indent=1) + "\n")


def restore(record: Path = RECORD) -> list[str]:
    """Put the machine back as recorded and forget the record; returns what was done."""
    try:
        state = json.loads(record.read_text())
    except (OSError, ValueError):
        state = {"kernel": _legacy(record), "folders": [str(f) for f in FOLDERS]} if _legacy(record) else None
    if state is None:
        return []
    done = []
    for key, value in state.get("kernel", {}).items():
        with contextlib.suppress(OSError):
            if (PROC_SYS / key).read_text().strip() != value:
                (PROC_SYS / key).write_text(value)
                done.append(f"{key.replace('/', '.')}={value}")
    KUBELET_DEVICE_SOCKET.unlink(missing_ok=True)
    existed = set(state.get("folders", []))
    for folder in reversed(FOLDERS):
        if str(folder) not in existed:
            with contextlib.suppress(OSError):  # not empty (someone else's), or gone
                folder.rmdir()
                done.append(f"folder {folder}")
    record.unlink(missing_ok=True)
    record.with_name(LEGACY_RECORD.name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        record.parent.rmdir()
    return done
