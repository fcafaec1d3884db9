"""The commands an image build runs: a logged runner, reproducible layer tarballs, chroot runs."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .spec import PATH, SOURCE_DATE_EPOCH

#: Builds share the machine with other work: every command runs at a lower CPU priority.
NICE = ("nice", "-n", "10")


class BuildError(RuntimeError):
    """A build step failed; the message names the command and the end of its output."""


def say(msg: str) -> None:
    print(f"[images] {msg}", file=sys.stderr, flush=True)


def run(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, capture: bool = False, inherit_env: bool = True
) -> str:
    """Run `argv` niced; raise BuildError with the tail of its output when it fails."""
    started = time.monotonic()
    proc = subprocess.run(
        [*NICE, *argv],
        env={**(os.environ if inherit_env else {}), **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if capture else subprocess.STDOUT,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + (proc.stderr or "")).splitlines()[-25:])
        raise BuildError(f"{shlex.join(argv)} exited {proc.returncode}:\n{tail}")
    if time.monotonic() - started > 5:
        words = [Path(argv[0]).name, *(a for a in argv[1:4] if not a.startswith("-"))][:3]
        say(f"{' '.join(words)}: {time.monotonic() - started:.0f} s")
    return proc.stdout


def tar_layer(stage: Path, out: Path, *, clamp_mtime: bool = True, exclude: Sequence[str] = ()) -> None:
    """An uncompressed layer tarball of `stage`'s entries (not `stage` itself: `/` keeps its mode).

    Sorted, numeric owners as staged, no atime/ctime; with `clamp_mtime` nothing is newer than the
    epoch, so the same staged files give the same layer digest.
    """
    argv = [
        "tar",
        "--create",
        f"--file={out}",
        f"--directory={stage}",
        "--sort=name",
        "--numeric-owner",
        "--format=posix",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
        *(f"--exclude={e}" for e in exclude),
    ]
    if clamp_mtime:
        argv += [f"--mtime=@{SOURCE_DATE_EPOCH}", "--clamp-mtime"]
    run([*argv, *sorted(p.name for p in stage.iterdir())])


def chroot(
    root: Path,
    argv: Sequence[str],
    *,
    binds: Mapping[Path, str] | None = None,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str = "/",
    hostname: str | None = None,
) -> str:
    """Run `argv` chrooted in `root`, in a private mount namespace with /dev, /proc and `binds` mounted.

    Every mount goes away with the namespace: nothing is left behind on the host, even on a crash.
    With `hostname`, it gets network and UTS namespaces of its own: only loopback, that host name.
    """
    steps = ["ip link set lo up", shlex.join(["hostname", hostname])] if hostname else []
    steps += [f"mount --rbind /dev {shlex.quote(str(root / 'dev'))}"]
    steps += [f"mount -t proc proc {shlex.quote(str(root / 'proc'))}"]
    for src, dst in (binds or {}).items():
        target = root / dst.lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        steps.append(f"mount --bind {shlex.quote(str(src))} {shlex.quote(str(target))}")
    userspec = [f"--userspec={user}"] if user else []
    steps.append(shlex.join(["exec", "chroot", *userspec, str(root), "env", f"--chdir={cwd}", *argv]))
    unshare = ["unshare", "--mount", "--propagation=private", *(["--net", "--uts"] if hostname else [])]
    base_env = {"PATH": PATH, "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    return run([*unshare, "sh", "-ec", "; ".join(steps)], env={**base_env, **(env or {})}, inherit_env=False)
