"""`python -m lepton_operator`: run the operator against the current kubeconfig (or in-cluster)."""

from __future__ import annotations

import asyncio
import logging

import kopf

from . import handlers, settings  # noqa: F401  (registers the handlers)
from .config import OperatorConfig


def main() -> None:
    config = OperatorConfig()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    probe = f"http://127.0.0.1:{config.liveness_port}/healthz" if config.liveness_port else None
    asyncio.run(
        kopf.operator(
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            standalone=True,
            liveness_endpoint=probe,
        )
    )


if __name__ == "__main__":
    main()
