"""``python -m lepton_trainer.launch [torchrun args] SCRIPT|-m MODULE [args]``: torchrun with safe defaults.

The image's entrypoint. It fills in defaults the operator (or a user) did not set, then execs
torchrun, which reads every ``PET_*`` variable itself:

- ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``: with the shared store, restarted workers dialled a dead
  worker's port and burnt restarts (see docs/trainer.md);
- rendezvous keep-alive every 1 s, a node declared dead after 3 missed beats (not fewer: 2 split a
  job in two), a 2 s last call: survivors of a lost node re-form in seconds, not ~48 s;
- ``PET_NNODES`` / ``PET_NPROC_PER_NODE`` default to ``1`` / ``1`` so the bare image runs standalone;
- for ``lepton_trainer.train`` it forks a zygote that imports torch once, so (re)started workers
  skip the import (``LEPTON_ZYGOTE=0`` turns that off; see lepton_trainer.zygote).

It imports nothing heavy itself.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path

from lepton_trainer import contract

RDZV_CONF_DEFAULTS: Mapping[str, str] = {
    "keep_alive_interval": "1",
    "keep_alive_max_attempt": "3",
    "last_call_timeout": "2",
}
ENV_DEFAULTS: Mapping[str, str] = {
    contract.DISABLE_SHARED_RDZV_STORE: "1",
    contract.NNODES: "1",
    contract.NPROC_PER_NODE: "1",
    contract.MONITOR_INTERVAL: "0.1",
    "PYTHONUNBUFFERED": "1",
}


def merge_rdzv_conf(conf: str, defaults: Mapping[str, str] = RDZV_CONF_DEFAULTS) -> str:
    """Add the default ``key=value`` pairs that ``conf`` ("k=v,k=v") does not set."""
    pairs = [p.strip() for p in conf.split(",") if p.strip()]
    present = {p.split("=", 1)[0].strip() for p in pairs}
    pairs += [f"{k}={v}" for k, v in defaults.items() if k not in present]
    return ",".join(pairs)


def prepare_env(env: MutableMapping[str, str]) -> None:
    """Apply the launcher's defaults to ``env`` without overriding anything already set."""
    for key, value in ENV_DEFAULTS.items():
        env.setdefault(key, value)
    env[contract.RDZV_CONF] = merge_rdzv_conf(env.get(contract.RDZV_CONF, ""))


def torchrun_argv(args: Sequence[str]) -> list[str]:
    """The command that runs torchrun with ``args`` under this interpreter."""
    return [sys.executable, "-m", "torch.distributed.run", *args]


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return
    prepare_env(os.environ)
    if "lepton_trainer.train" in args and os.environ.get(contract.ZYGOTE, "1") != "0":
        from lepton_trainer import zygote

        path = os.path.join(tempfile.gettempdir(), f"lepton-zygote-{os.getpid()}.sock")
        zygote.start(path)
        os.environ[contract.ZYGOTE_SOCKET] = path
    train = "lepton_trainer.train" in args  # the trainer serves its own progress
    if not train and (file := os.environ.get(contract.PROGRESS_FILE)) and (listen := progress_listen(os.environ)):
        from lepton_trainer import progress_file, reporting

        progress_file.start(Path(file), *listen)  # any script's progress file, on GET /progress
        os.environ[reporting.SERVED] = "1"
    cmd = torchrun_argv(args)
    os.execv(cmd[0], cmd)


def progress_listen(env: Mapping[str, str]) -> tuple[str, int] | None:
    """Where the progress endpoint listens ($LEPTON_PROGRESS_LISTEN, default the pod's own address)."""
    from lepton_trainer.progress import parse_listen

    listen = env.get(contract.PROGRESS_LISTEN, contract.default_progress_listen(env))
    return parse_listen(listen, contract.PROGRESS_PORT)


if __name__ == "__main__":
    main()
