"""Smoke test of a built image: unpacked as a runtime would, its programs run chrooted as its user.

The trainer image trains the digits workload for a few steps through its real entrypoint (torchrun
behind our launcher) in a network namespace of its own; both images must import without compiling
anything (their root filesystems are read-only in pods).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .build import Builder, BuiltImage
from .spec import ImageSpec
from .tools import chroot

#: Run in the image after its imports: every module loaded from /usr must have valid bytecode.
BYTECODE_CHECK = """
import importlib.util, os, sys
stale = []
for mod in list(sys.modules.values()):
    src = getattr(mod, "__file__", None) or ""
    if not (src.startswith("/usr/") and src.endswith(".py")):
        continue
    try:
        with open(importlib.util.cache_from_source(src), "rb") as f:
            head = f.read(16)
    except OSError:
        stale.append(src)
        continue
    st = os.stat(src)
    if not int.from_bytes(head[4:8], "little") & 1 and (
        int.from_bytes(head[8:12], "little") != int(st.st_mtime) & 0xFFFFFFFF
        or int.from_bytes(head[12:16], "little") != st.st_size & 0xFFFFFFFF
    ):
        stale.append(src)
print("modules", len(sys.modules), "stale bytecode", len(stale), stale[:5])
sys.exit(1 if stale else 0)
"""

IMPORTS = {
    "lepton-operator": "import lepton_operator.settings, lepton_operator.handlers, kopf, aiohttp, pydantic\n",
    "lepton-trainer": (
        "import torch, numpy, lepton_trainer.train, lepton_trainer.launch, lepton_trainer.serve.app\n"
        "from lepton_trainer import data\n"
        "assert data.load_digits_array().shape == (1797, 65)\n"
        "assert os.path.isfile('/opt/lepton/cache/digits-v1.npy')\n"
        "print('torch', torch.__version__, 'cuda', torch.version.cuda)\n"
    ),
}
#: Appended to the trainer image's own entrypoint and command: a short CPU run.
TRAIN_ARGS = ("--max-steps=3", "--device=cpu", "--checkpoint-dir=/tmp/smoke-ckpt", "--log-every=1")


HOSTNAME = "image-smoke"


def run_in_image(rootfs: Path, spec: ImageSpec, argv: list[str]) -> str:
    """`argv` in the unpacked image as its user, in its working directory, with its environment.

    The /etc/hosts a runtime would mount (the image has none) is written into the unpacked tree.
    """
    (rootfs / "etc" / "hosts").write_text(f"127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost\n")
    env = {**dict(spec.env), "HOME": spec.user.home}
    return chroot(rootfs, argv, user=spec.user.spec, env=env, cwd=spec.workdir, hostname=HOSTNAME)


def smoke(builder: Builder, spec: ImageSpec, built: BuiltImage, workdir: Path) -> str:
    """Unpack `built` under `workdir`, run the checks, return their output; the unpacked tree is removed."""
    rootfs = workdir / f"{spec.name}-rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    try:
        builder.store.unpack(built.tag, rootfs)
        out = run_in_image(rootfs, spec, ["python", "-c", "import os\n" + IMPORTS[spec.name] + BYTECODE_CHECK])
        if spec.name == "lepton-trainer":
            out += run_in_image(rootfs, spec, [*spec.entrypoint, *spec.cmd, *TRAIN_ARGS])
        return out
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
