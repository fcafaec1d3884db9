"""The contents of each layer, staged in a directory: Debian base, pinned wheels, our packages."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from .spec import (
    DEBIAN_PACKAGES,
    DEBIAN_SUITE,
    DPKG_EXCLUDES,
    DPKG_INCLUDES,
    PYTHON_VERSION,
    SITE_PACKAGES,
    SOURCE_DATE_EPOCH,
    USERS,
    ImageSpec,
    source_files,
    wheel_platforms,
)
from .tools import chroot, run


def site(stage: Path) -> Path:
    return stage / SITE_PACKAGES.lstrip("/")


def base_hooks() -> list[str]:
    """mmdebstrap customize hooks: no host files left in, our users (with homes) added."""
    hooks = ['rm -f "$1/etc/resolv.conf" "$1/etc/hostname"']
    for u in USERS:
        hooks += [
            f"echo '{u.name}:x:{u.uid}:{u.uid}:{u.name}:{u.home}:/usr/sbin/nologin' >> \"$1/etc/passwd\"",
            f"echo '{u.name}:x:{u.uid}:' >> \"$1/etc/group\"",
            f'install -d -m 0755 -o {u.uid} -g {u.uid} "$1{u.home}"',
        ]
    return hooks


def debian_rootfs(rootfs: Path) -> None:
    """Debian (minbase + our packages) into `rootfs` with mmdebstrap, reproducibly for the same mirror state."""
    part = rootfs.with_name(rootfs.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    argv = [
        "mmdebstrap",
        "--quiet",
        "--mode=root",
        "--variant=minbase",
        f"--include={','.join(DEBIAN_PACKAGES)}",
        *(f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES),
        *(f"--dpkgopt=path-include={p}" for p in DPKG_INCLUDES),
        *(f"--customize-hook={h}" for h in base_hooks()),
        DEBIAN_SUITE,
        str(part),
    ]
    run(argv, env={"SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)})
    part.rename(rootfs)


def pip_stage(stage: Path, requirements: Sequence[str], constraints: Sequence[str], report: Path) -> list[str]:
    """Install `requirements` (and what they need) for the image's Python into `stage`'s site-packages.

    Wheels only, chosen for bookworm's Python and glibc rather than this machine's; `constraints`
    hold the versions a lower layer installed, so a shared dependency is the same in both.
    Console scripts and data files are left out (their shebangs name this machine's Python; the
    images run `python -m`). Returns the installed `name==version`s.
    """
    target = site(stage)
    target.mkdir(parents=True)
    constraint_file = report.with_suffix(".constraints.txt")
    constraint_file.write_text("".join(f"{c}\n" for c in constraints))
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--only-binary=:all:"]
    argv += [f"--platform={p}" for p in wheel_platforms()]
    argv += [f"--python-version={PYTHON_VERSION}", "--implementation=cp", f"--abi=cp{PYTHON_VERSION.replace('.', '')}"]
    argv += [f"--target={target}", f"--report={report}", f"--constraint={constraint_file}", *requirements]
    run(argv, env={"PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    for extra in ("bin", "share"):
        shutil.rmtree(target / extra, ignore_errors=True)
    installed = json.loads(report.read_text())["install"]
    return sorted(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in installed)


def code_stage(stage: Path, spec: ImageSpec, root: Path) -> None:
    """Our packages into `stage`'s site-packages; the digits table decoded where the spec says."""
    target = site(stage)
    for package in spec.sources:
        for path in source_files(root, [package]):
            dest = target / path.relative_to((root / package).parent)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    if spec.digits_cache:
        cache = stage / spec.digits_cache.lstrip("/")
        cache.mkdir(parents=True)
        # The table is plain .npy (numpy's format): decoded by the same code and pinned numpy here.
        env = {"LEPTON_DATA_CACHE": str(cache), "PYTHONPATH": str(root / "trainer_image")}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        run([sys.executable, "-c", "from lepton_trainer import data; data.load_digits_array()"], env=env)
        if not any(cache.iterdir()):
            raise RuntimeError(f"the digits table was not written to {cache}")
        shutil.chown(cache, spec.user.uid, spec.user.uid)
        for path in cache.rglob("*"):
            shutil.chown(path, spec.user.uid, spec.user.uid)


def compile_site(base_rootfs: Path, stage: Path, *, strict: bool = True) -> None:
    """Bytecode for `stage`'s site-packages, by the image's own Python (chrooted in the base).

    Unchecked-hash .pyc files stay valid whatever the files' times: nothing compiles at start-up
    (the operator's root filesystem is read-only) and the layer's times can be fixed. `force`:
    a .pyc already there (written by an import at start-up) is replaced. Not `strict`:
    files this Python cannot compile are left as they are, as pip does (torch ships 3.12-only tests).
    """
    script = (
        "import compileall, py_compile, sys\n"
        f"ok = compileall.compile_dir({SITE_PACKAGES!r}, quiet={1 if strict else 2}, workers=0, force=True,"
        " invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n"
        f"sys.exit(0 if ok or not {strict} else 1)\n"
    )
    # A .pth may import a module at start-up: it must not leave a timestamp .pyc that `force` then keeps.
    env = {"PYTHONDONTWRITEBYTECODE": "1"}
    chroot(base_rootfs, ["python3", "-c", script], binds={site(stage): SITE_PACKAGES}, env=env)
