"""`python -m lepton_cluster.images build|load|smoke`: our images, built here without Docker."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from ..config import ClusterConfig
from .build import Builder
from .load import LoadError, load_image
from .smoke import smoke
from .spec import images
from .tools import BuildError


def main(argv: list[str] | None = None) -> int:
    specs = images()
    parser = argparse.ArgumentParser(prog="python -m lepton_cluster.images", description=__doc__)
    parser.add_argument("--cache-dir", type=Path, help="default: $LEPTON_CACHE_DIR or ~/.cache/lepton-operator")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("build", "build the images (only what changed) into OCI archives in the cache"),
        ("smoke", "build, unpack and run each image's smoke checks (chroot, own network namespace)"),
        ("load", "build, then import into a containerd (skipped when it has the same digest)"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("names", nargs="*", choices=[[], *specs], help="images (default: all)")
        if name == "load":
            cmd.add_argument("--address", required=True, help="containerd socket")
    args = parser.parse_args(argv)
    builder = Builder(args.cache_dir or ClusterConfig.from_env().cache_dir)
    try:
        for name in args.names or specs:
            started = time.monotonic()
            built = builder.build(specs[name])
            size_mib = built.archive.stat().st_size / 2**20
            print(f"{built.ref} {built.digest} {size_mib:.0f} MiB {time.monotonic() - started:.1f} s {built.archive}")
            if args.command == "smoke":
                with tempfile.TemporaryDirectory(dir=builder.dir) as tmp:
                    print(smoke(builder, specs[name], built, Path(tmp)), end="")
            elif args.command == "load":
                loaded = load_image(built.archive, args.address)
                print(f"{built.ref}: {'imported' if loaded else 'already there'} ({args.address})")
    except (BuildError, LoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
