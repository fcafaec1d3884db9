"""The per-container supervisor: `ip netns exec <netns> python -m lepton_cluster.procnode.shim <attempt dir>`.

Like containerd's shim it outlives the agent, so a restarted agent adopts running containers and still
learns their exit codes. It runs inside the pod's network namespace and the private mount namespace
`ip netns exec` made (with the pod's /etc/hosts and resolv.conf bound in), and:

1. unshares UTS (the pod's hostname) and PID namespaces, then forks an init: PID 1 of the container;
2. the init mounts /proc, the pod's private /tmp and its volumes (bind mounts), drops capabilities that
   could change the network or mounts (NET_ADMIN, NET_RAW, SYS_ADMIN, ...), and runs the command as PID 2;
   it forwards signals, reaps orphans and exits with the command's code (128+N for signal N). When it
   exits the kernel kills whatever is left in the PID namespace: no stray processes;
3. the shim records `run.json` (pids, start times) and, when the init ends, `exit.json`.

Only the standard library: it starts fast and needs nothing from the agent.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from .procfs import now_rfc3339, start_ticks, write_json

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
MS_SLAVE = 1 << 19
PR_CAPBSET_DROP = 24
#: NET_ADMIN, NET_RAW, SYS_MODULE, SYS_RAWIO, SYS_ADMIN, SYS_BOOT, SYS_TIME, MKNOD
DROPPED_CAPABILITIES = (12, 13, 16, 17, 21, 22, 25, 27)
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int) -> None:
    _check(
        _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags, None),
        f"mount {source} on {target}",
    )


def _make_mountpoint(target: str, created: list[str]) -> None:
    path = Path(target)
    if path.exists():
        return
    missing = path
    while not missing.parent.exists():
        missing = missing.parent
    path.mkdir(parents=True)
    created.append(str(missing))


def _tops_under_tmp(*paths: str) -> list[str]:
    """The top folders under /tmp that hold `paths` (e.g. /tmp/checkout for /tmp/checkout/.venv)."""
    tops = {f"/tmp/{Path(p).parts[2]}" for p in paths if len(Path(p).parts) > 2 and Path(p).parts[1] == "tmp"}
    return sorted(tops)


def enter_own_mount_namespace() -> None:
    """A mount namespace of the container's own, so that its mounts never change what the shim sees.

    `ip netns exec` gives the shim and its init one mount namespace; when the init mounted the pod's
    /tmp there, the shim (writing run.json under a checkout in /tmp) saw its folder vanish until the
    init bound it back: a race that failed containers with exit 128 and orphaned their commands.
    Slave propagation: the host's mounts still show up here, ours never travel back.
    """
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(_libc.mount(None, b"/", None, MS_REC | MS_SLAVE, None), "make / a slave mount")


def prepare_filesystem(launch: dict[str, Any], attempt: Path) -> None:
    """In the container's own mount namespace (nothing propagates back to the shim or the host)."""
    enter_own_mount_namespace()
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # sources are opened before the private /tmp hides the host's (a hostPath may live under /tmp)
    sources = [os.open(m["source"], os.O_PATH) for m in launch["mounts"]]
    # a checkout under /tmp (the venv, the repo, the agent's state) must stay visible at the same paths
    keep = [(top, os.open(top, os.O_PATH | os.O_DIRECTORY)) for top in _tops_under_tmp(sys.prefix, str(attempt))]
    _mount(launch["tmp"], "/tmp", None, MS_BIND | MS_REC)
    for top, fd in keep:
        Path(top).mkdir(exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", top, None, MS_BIND | MS_REC)
        os.close(fd)
    created: list[str] = []
    for m, fd in zip(launch["mounts"], sources, strict=True):
        source = f"/proc/self/fd/{fd}"
        _make_mountpoint(m["target"], created)
        # recorded before mounting: the agent removes them again with the pod, even after a failed mount
        write_json(attempt / "mountpoints.json", [c for c in created if not c.startswith("/tmp/")])
        _mount(source, m["target"], None, MS_BIND | MS_REC)
        if m.get("readOnly"):
            _mount(source, m["target"], None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        os.close(fd)


def _forward_to(pid: int) -> None:
    """Relay signals to `pid`; signals that arrived while they were blocked (before the fork) follow now."""

    def handler(sig: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    for sig in FORWARDED:
        signal.signal(sig, handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def run_command(launch: dict[str, Any]) -> None:
    """PID 2: the container's command. Never returns."""
    try:
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)  # exec keeps the mask
        os.chdir(launch.get("workdir") or "/tmp")
        for cap in DROPPED_CAPABILITIES:
            _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
        argv = launch["argv"]
        os.execvpe(argv[0], argv, launch["env"])
    except OSError as e:
        print(f"procnode: cannot start {launch['argv'][0]!r}: {e}", file=sys.stderr, flush=True)
        os._exit(127)


def init(launch: dict[str, Any], attempt: Path) -> None:
    """PID 1 of the container. Never returns."""
    try:
        prepare_filesystem(launch, attempt)
    except OSError as e:
        print(f"procnode: cannot prepare the container's filesystem: {e}", file=sys.stderr, flush=True)
        os._exit(128)
    child = os.fork()
    if child == 0:
        run_command(launch)
    _forward_to(child)
    while True:
        pid, status = os.wait()
        if pid == child:
            os._exit(_exit_code(status))


def main(argv: list[str]) -> int:
    attempt = Path(argv[1])
    launch = json.loads((attempt / "launch.json").read_text())
    # blocked until a handler can relay them: a SIGTERM that comes early must not kill the shim alone
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    _check(_libc.unshare(CLONE_NEWUTS | CLONE_NEWPID), "unshare")
    socket.sethostname(launch["hostname"])
    child = os.fork()
    if child == 0:
        init(launch, attempt)
    shim = os.getpid()
    try:
        write_json(
            attempt / "run.json",
            {
                "shimPid": shim,
                "shimTicks": start_ticks(shim),
                "initPid": child,
                "initTicks": start_ticks(child),
                "startedAt": now_rfc3339(),
            },
        )
    except OSError:
        # nobody could find (and so stop) a container whose pids are not recorded: it must not run
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        raise
    _forward_to(child)
    _, status = os.waitpid(child, 0)
    write_json(attempt / "exit.json", {"exitCode": _exit_code(status), "finishedAt": now_rfc3339()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
