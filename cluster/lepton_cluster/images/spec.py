"""What goes into each image, and the cache keys that name it. Pure: no process, no I/O but reads.

An image is a chain of layers, each named by a key over its own inputs and its parent's key:
the Debian base (suite, packages, users), then one layer per set of pinned wheels (torch alone, so
a change elsewhere does not rebuild its gigabytes), then our packages, then the run config.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
PYPROJECT = REPO_ROOT / "pyproject.toml"

#: Bump when what a layer holds changes for the same inputs (the build steps themselves).
RECIPE = 2
#: Timestamps of everything we write (files, history, config): the images are reproducible.
SOURCE_DATE_EPOCH = 0
CREATED = "1970-01-01T00:00:00Z"

DEBIAN_SUITE = "bookworm"
#: python-is-python3: the entrypoints say `python`, as in the Dockerfiles.
DEBIAN_PACKAGES = ("python3", "python-is-python3", "ca-certificates")
#: dpkg leaves these out (copyright files stay).
DPKG_EXCLUDES = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/info/*", "/usr/share/locale/*")
DPKG_INCLUDES = ("/usr/share/doc/*/copyright",)
#: bookworm's python3 and glibc: the wheels are chosen for them, not for the building machine.
PYTHON_VERSION = "3.11"
GLIBC_MINOR = 36
SITE_PACKAGES = f"/usr/local/lib/python{PYTHON_VERSION}/dist-packages"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    home: str

    @property
    def spec(self) -> str:
        return f"{self.uid}:{self.uid}"


#: The operator's user is distroless' "nonroot" (the chart's securityContext); the trainer's is the
#: Dockerfile's `lepton`. Both exist in the shared base.
NONROOT = User("nonroot", 65532, "/home/nonroot")
LEPTON = User("lepton", 1000, "/home/lepton")
USERS = (NONROOT, LEPTON)


@dataclass(frozen=True)
class ImageSpec:
    """One image: its wheels (one layer per set), our packages, and how it runs."""

    name: str
    wheel_layers: tuple[tuple[str, ...], ...]
    #: repository-relative package directories, copied into site-packages
    sources: tuple[str, ...]
    user: User
    workdir: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[int, ...] = ()
    #: the digits table is decoded into this directory (owned by the user) at build time, as the
    #: trainer's Dockerfile does: a worker's cold start skips the CSV
    digits_cache: str | None = None

    @property
    def ref(self) -> str:
        return f"localhost/{self.name}:dev"

    def config_args(self) -> list[str]:
        """`umoci config` flags for the run config (the Dockerfile's ENV, USER, WORKDIR, ENTRYPOINT...)."""
        args = [f"--config.user={self.user.spec}", f"--config.workingdir={self.workdir}"]
        args += [f"--config.env={k}={v}" for k, v in (("PATH", PATH), *self.env)]
        args += [f"--config.entrypoint={a}" for a in self.entrypoint]
        args += [f"--config.cmd={a}" for a in self.cmd]
        args += [f"--config.exposedports={p}/tcp" for p in self.ports]
        return args


@dataclass(frozen=True)
class Pins:
    operator: tuple[str, ...]
    trainer: tuple[str, ...]


def read_pins(pyproject: Path = PYPROJECT) -> Pins:
    """The runtime dependencies and the `trainer` extra of pyproject.toml."""
    project = tomllib.loads(pyproject.read_text())["project"]
    return Pins(tuple(project["dependencies"]), tuple(project["optional-dependencies"]["trainer"]))


def requirement_name(requirement: str) -> str:
    """`Foo_Bar==1.0` -> `foo-bar` (PEP 503 normalized)."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def images(pins: Pins | None = None) -> dict[str, ImageSpec]:
    """The operator image and the trainer image, as the Dockerfiles define them."""
    pins = pins or read_pins()
    torch = tuple(p for p in pins.trainer if requirement_name(p) == "torch")
    rest = tuple(p for p in pins.trainer if requirement_name(p) != "torch")
    operator = ImageSpec(
        name="lepton-operator",
        wheel_layers=(pins.operator,),
        # The operator imports the trainer's env contract (stdlib only), as operator/Dockerfile does.
        sources=("operator/lepton_operator", "trainer_image/lepton_trainer"),
        user=NONROOT,
        workdir="/tmp",
        entrypoint=("python", "-m", "lepton_operator"),
        env=(("PYTHONUNBUFFERED", "1"), ("LEPTON_LISTEN_HOST", "0.0.0.0"), ("PYTHONDONTWRITEBYTECODE", "1")),
        ports=(8080, 8000),
    )
    trainer = ImageSpec(
        name="lepton-trainer",
        wheel_layers=(torch, rest),
        sources=("trainer_image/lepton_trainer",),
        user=LEPTON,
        workdir=LEPTON.home,
        entrypoint=("python", "-m", "lepton_trainer.launch"),
        cmd=("-m", "lepton_trainer.train", "--workload", "digits"),
        env=(("PYTHONUNBUFFERED", "1"), ("LEPTON_DATA_CACHE", "/opt/lepton/cache")),
        ports=(29400, 29500),
        digits_cache="/opt/lepton/cache",
    )
    return {operator.name: operator, trainer.name: trainer}


def wheel_platforms(glibc_minor: int = GLIBC_MINOR) -> tuple[str, ...]:
    """Every manylinux tag a glibc 2.<minor> x86_64 system runs, newest first (pip does not expand them)."""
    tags = [f"manylinux_2_{m}_x86_64" for m in range(glibc_minor, 4, -1)]
    return (*tags, "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64")


def key(*parts: object) -> str:
    """A stable sha256 over JSON-able parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def source_files(root: Path, dirs: Iterable[str]) -> list[Path]:
    """The files of our packages that go into an image (no bytecode), sorted."""
    found: list[Path] = []
    for rel in dirs:
        for dirpath, dirnames, filenames in os.walk(root / rel):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            found += [Path(dirpath) / f for f in filenames if not f.endswith((".pyc", ".pyo"))]
    return sorted(found)


def tree_digest(root: Path, dirs: Sequence[str]) -> str:
    """sha256 over the relative paths, executable bits and contents of `source_files`."""
    h = hashlib.sha256()
    for path in source_files(root, dirs):
        h.update(f"{path.relative_to(root)}\0{os.access(path, os.X_OK):d}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def base_key() -> str:
    users = [(u.name, u.uid, u.home) for u in USERS]
    return key("base", RECIPE, DEBIAN_SUITE, DEBIAN_PACKAGES, DPKG_EXCLUDES, DPKG_INCLUDES, users, SOURCE_DATE_EPOCH)


def wheels_key(parent: str, requirements: Sequence[str]) -> str:
    return key("wheels", RECIPE, parent, list(requirements), PYTHON_VERSION, GLIBC_MINOR)


def code_key(parent: str, spec: ImageSpec, root: Path = REPO_ROOT) -> str:
    owner = spec.user.spec if spec.digits_cache else None
    return key("code", RECIPE, parent, list(spec.sources), tree_digest(root, spec.sources), spec.digits_cache, owner)


def config_key(parent: str, spec: ImageSpec) -> str:
    return key("config", RECIPE, parent, spec.ref, spec.config_args())
