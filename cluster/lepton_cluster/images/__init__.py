"""Our images built without Docker: Debian packages (mmdebstrap), pinned PyPI wheels, our packages.

`python -m lepton_cluster.images build` writes `localhost/lepton-operator:dev` and
`localhost/lepton-trainer:dev` as OCI archives into the cache ($LEPTON_CACHE_DIR/images), rebuilding
only the layers whose inputs changed; `load_image` imports an archive into a node's containerd.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .build import Builder, BuiltImage
from .load import LoadError, load_image
from .spec import ImageSpec, images
from .tools import BuildError

__all__ = ["BuildError", "Builder", "BuiltImage", "ImageSpec", "LoadError", "build_all", "images", "load_image"]


def build_all(cache_dir: Path | None = None, names: Sequence[str] | None = None) -> list[BuiltImage]:
    """Build (or find in the cache) the images named (default: all) and return them."""
    from ..config import ClusterConfig

    builder = Builder(cache_dir or ClusterConfig.from_env().cache_dir)
    specs = images()
    return [builder.build(specs[name]) for name in (names or specs)]
