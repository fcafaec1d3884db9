"""The images' definitions: the Dockerfiles install the same pins as pyproject.toml and the image build,
the cache keys move exactly with their inputs, and the archive/containerd plumbing parses what it reads."""

from __future__ import annotations

import io
import json
import re
import shlex
import tarfile
from pathlib import Path

import pytest
from lepton_cluster.images import spec
from lepton_cluster.images.load import parse_image_list
from lepton_cluster.images.oci import read_archive

OPERATOR_DOCKERFILE = spec.REPO_ROOT / "operator" / "Dockerfile"
TRAINER_DOCKERFILE = spec.REPO_ROOT / "trainer_image" / "Dockerfile"


def instructions(path: Path) -> list[tuple[str, str]]:
    """A Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(w.split(None, 1)[0].upper(), w.split(None, 1)[1]) for w in joined.splitlines() if w.strip()]


def arg_default(path: Path, name: str) -> str:
    return next(a.split("=", 1)[1] for i, a in instructions(path) if i == "ARG" and a.startswith(f"{name}="))


def only(path: Path, instruction: str) -> str:
    found = [a for i, a in instructions(path) if i == instruction]
    assert len(found) == 1, (path, instruction, found)
    return found[0]


def pip_installs(path: Path) -> list[list[str]]:
    """The arguments of every `pip install` in the Dockerfile's RUN steps."""
    runs = [a for i, a in instructions(path) if i == "RUN"]
    commands = [c.strip() for r in runs for c in r.split("&&")]
    return [shlex.split(c)[2:] for c in commands if c.startswith("pip install")]


IMAGES = spec.images()
OPERATOR, TRAINER = IMAGES["lepton-operator"], IMAGES["lepton-trainer"]
PINS = spec.read_pins()


def test_operator_dockerfile_installs_pyprojects_pins_on_the_same_debian_release() -> None:
    # `pip install .` installs exactly pyproject's runtime dependencies: the image build's wheel layer.
    assert pip_installs(OPERATOR_DOCKERFILE) == [["."]]
    assert any(i == "COPY" and a.startswith("pyproject.toml ") for i, a in instructions(OPERATOR_DOCKERFILE))
    assert OPERATOR.wheel_layers == (PINS.operator,)
    assert arg_default(OPERATOR_DOCKERFILE, "PYTHON_IMAGE").endswith(f"-{spec.DEBIAN_SUITE}")


def test_trainer_dockerfile_installs_the_trainer_extras_pins() -> None:
    (installed,) = pip_installs(TRAINER_DOCKERFILE)[:1]
    torch = next(p for p in PINS.trainer if spec.requirement_name(p) == "torch")
    assert sorted([*installed, torch]) == sorted(PINS.trainer)
    # torch comes with the base image, whose tag carries the pinned version.
    base = arg_default(TRAINER_DOCKERFILE, "BASE_IMAGE")
    assert base.split(":", 1)[1].startswith(torch.split("==", 1)[1] + "-"), base
    assert sorted(p for layer in TRAINER.wheel_layers for p in layer) == sorted(PINS.trainer)


@pytest.mark.parametrize(("image", "dockerfile"), [(OPERATOR, OPERATOR_DOCKERFILE), (TRAINER, TRAINER_DOCKERFILE)])
def test_images_run_like_the_dockerfiles(image: spec.ImageSpec, dockerfile: Path) -> None:
    assert tuple(json.loads(only(dockerfile, "ENTRYPOINT"))) == image.entrypoint
    cmds = [a for i, a in instructions(dockerfile) if i == "CMD"]
    assert tuple(json.loads(cmds[0]) if cmds else ()) == image.cmd
    assert only(dockerfile, "USER") == image.user.spec
    assert [a for i, a in instructions(dockerfile) if i == "WORKDIR"][-1] == image.workdir
    assert sorted(int(p) for p in only(dockerfile, "EXPOSE").split()) == sorted(image.ports)
    env = " ".join(a for i, a in instructions(dockerfile) if i == "ENV")
    for name, value in image.env:
        assert f"{name}={value}" in env, name


def test_torch_has_a_layer_of_its_own() -> None:
    first, rest = TRAINER.wheel_layers
    assert [spec.requirement_name(p) for p in first] == ["torch"]
    assert "torch" not in {spec.requirement_name(p) for p in rest} and rest


@pytest.mark.parametrize(
    ("requirement", "name"),
    [("torch==2.15.0", "torch"), ("PyYAML==6.0.3", "pyyaml"), ("pydantic_settings>=2", "pydantic-settings"),
     ("zope.interface", "zope-interface")],
)  # fmt: skip
def test_requirement_name(requirement: str, name: str) -> None:
    assert spec.requirement_name(requirement) == name


def test_wheel_platforms_are_every_manylinux_bookworm_runs() -> None:
    tags = spec.wheel_platforms()
    assert tags[0] == "manylinux_2_36_x86_64"
    assert {"manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"} <= set(tags)
    assert "manylinux_2_37_x86_64" not in tags and len(tags) == len(set(tags))


def test_config_args_carry_the_run_config() -> None:
    args = TRAINER.config_args()
    assert "--config.user=1000:1000" in args and f"--config.env=PATH={spec.PATH}" in args
    entry = [a.split("=", 1)[1] for a in args if a.startswith("--config.entrypoint=")]
    assert entry == ["python", "-m", "lepton_trainer.launch"]
    assert [a for a in args if a.startswith("--config.exposedports=")] == [
        "--config.exposedports=29400/tcp",
        "--config.exposedports=29500/tcp",
    ]


def _tree(root: Path) -> None:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "sub" / "mod.py").write_text("X = 1\n")


def test_code_key_moves_with_sources_only(tmp_path: Path) -> None:
    _tree(tmp_path)
    image = spec.ImageSpec("x", (), ("pkg",), spec.NONROOT, "/", ("python",))
    first = spec.code_key("parent", image, tmp_path)
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"junk")
    assert spec.code_key("parent", image, tmp_path) == first
    (tmp_path / "pkg" / "sub" / "mod.py").write_text("X = 2\n")
    changed = spec.code_key("parent", image, tmp_path)
    assert changed != first
    assert spec.code_key("other-parent", image, tmp_path) != changed
    (tmp_path / "pkg" / "sub" / "new.py").write_text("")
    assert spec.code_key("parent", image, tmp_path) not in (first, changed)


def test_wheel_keys_move_with_pins_and_parent() -> None:
    a = spec.wheels_key("base", ("torch==2.15.0",))
    assert a == spec.wheels_key("base", ("torch==2.15.0",))
    assert a != spec.wheels_key("base", ("torch==2.15.1",))
    assert a != spec.wheels_key("base2", ("torch==2.15.0",))
    assert spec.base_key() == spec.base_key()


def test_users_are_non_root_and_distinct() -> None:
    assert all(u.uid >= 1000 for u in spec.USERS)
    assert len({u.uid for u in spec.USERS}) == len(spec.USERS)
    assert OPERATOR.user.uid == 65532  # the chart's securityContext


CTR_LS = """REF                           TYPE                                       DIGEST                                                                  SIZE     PLATFORMS   LABELS
localhost/lepton-operator:dev application/vnd.oci.image.manifest.v1+json sha256:69112fe34c8c86bb61d4c5300935a78ac5085ece4d00a6c4af1ed4c58830af06 56.3 MiB linux/amd64 -
sha256:69112fe34c8c86bb61d4c5300935a78ac5085ece4d00a6c4af1ed4c58830af06 application/vnd.oci.image.manifest.v1+json sha256:69112fe34c8c86bb61d4c5300935a78ac5085ece4d00a6c4af1ed4c58830af06 56.3 MiB linux/amd64 -
"""  # noqa: E501


def test_parse_image_list() -> None:
    digest = "sha256:69112fe34c8c86bb61d4c5300935a78ac5085ece4d00a6c4af1ed4c58830af06"
    images = parse_image_list(CTR_LS)
    assert images["localhost/lepton-operator:dev"] == digest and len(images) == 2
    assert parse_image_list("REF TYPE DIGEST SIZE PLATFORMS LABELS\n") == {}


def _archive(path: Path, manifests: list[dict[str, object]]) -> Path:
    data = json.dumps({"schemaVersion": 2, "manifests": manifests}).encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("index.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_read_archive(tmp_path: Path) -> None:
    named = {"digest": "sha256:ab", "annotations": {"org.opencontainers.image.ref.name": "localhost/x:dev"}}
    info = read_archive(_archive(tmp_path / "a.tar", [named]))
    assert (info.ref, info.digest) == ("localhost/x:dev", "sha256:ab")
    with pytest.raises(ValueError, match="2 manifests"):
        read_archive(_archive(tmp_path / "b.tar", [named, named]))
    with pytest.raises(ValueError, match="no reference"):
        read_archive(_archive(tmp_path / "c.tar", [{"digest": "sha256:ab"}]))
