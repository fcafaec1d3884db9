"""The images built here (cached: a cold build takes minutes, see docs/images.md), run, and loaded.

- smoke: each image unpacked by umoci, its Python run chrooted as the image's user in a network
  namespace of its own: imports with valid bytecode; the trainer trains digits for a few steps
  through its real entrypoint.
- load: the operator image imported into a containerd of the test's own (the trainer is too large to
  import twice per run); a second load is skipped because the digest is already there.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lepton_cluster.config import ClusterConfig
from lepton_cluster.images import Builder, BuiltImage, images, load_image
from lepton_cluster.images.load import image_digest
from lepton_cluster.images.smoke import smoke

SPECS = images()


@pytest.fixture(scope="module")
def builder() -> Builder:
    return Builder(ClusterConfig.from_env().cache_dir)


def _build(builder: Builder, name: str) -> BuiltImage:
    built = builder.build(SPECS[name])
    assert built.ref == f"localhost/{name}:dev" and built.archive.is_file()
    return built


@pytest.mark.timeout(2400)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_image_smoke(builder: Builder, name: str) -> None:
    built = _build(builder, name)
    with tempfile.TemporaryDirectory(dir=builder.dir) as tmp:
        out = smoke(builder, SPECS[name], built, Path(tmp))
    assert "stale bytecode 0 []" in out, out
    if name == "lepton-trainer":
        assert "torch 2.15.0" in out, out
        assert "after 3 steps" in out, out[-3000:]  # the trainer's "test accuracy ... after N steps"


@pytest.fixture
def containerd() -> Iterator[Path]:
    """A containerd of this test's own (root, state and socket in a temporary directory), stopped after."""
    home = Path(tempfile.mkdtemp(prefix="ctd-"))
    socket = home / "containerd.sock"
    (home / "config.toml").write_text(
        f'version = 2\nroot = "{home}/root"\nstate = "{home}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{socket}"\n[ttrpc]\n  address = "{home}/ttrpc.sock"\n'
    )
    log = (home / "containerd.log").open("w")
    proc = subprocess.Popen(["containerd", f"--config={home / 'config.toml'}"], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["ctr", f"--address={socket}", "version"], capture_output=True).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, (home / "containerd.log").read_text()
            time.sleep(0.2)
        yield socket
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
        subprocess.run(["umount", "--recursive", "--lazy", str(home / "root")], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.timeout(900)
def test_load_into_containerd_once(builder: Builder, containerd: Path) -> None:
    built = _build(builder, "lepton-operator")
    assert image_digest(containerd, built.ref) is None
    assert load_image(built.archive, containerd) is True
    assert image_digest(containerd, built.ref) == built.digest
    assert load_image(built.archive, containerd) is False  # same digest: skipped
    snapshots = subprocess.run(
        ["ctr", f"--address={containerd}", "-n", "k8s.io", "snapshots", "ls"], capture_output=True, text=True
    )
    assert snapshots.stdout.count("Committed") >= 3, snapshots.stdout  # unpacked: base, wheels, code
    assert os.path.getsize(built.archive) > 20 * 2**20
