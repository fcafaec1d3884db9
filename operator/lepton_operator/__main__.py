"""`python -m lepton_operator`: run the operator against the current kubeconfig (or in-cluster)."""

from __future__ import annotations

import asyncio
import logging

import kopf

from . import handlers, metrics, settings  # noqa: F401  (registers the handlers)
from .config import OperatorConfig


def main() -> None:
    config = OperatorConfig()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One INFO line per decision is ours; kopf's per-handler lines and the liveness probe's (one per kubelet
    # probe: every 10 s in a pod's log) are noise.
    for noisy in ("kopf.objects", "kopf.activities.probe", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    probe = f"http://{config.listen_host}:{config.liveness_port}/healthz" if config.liveness_port else None
    if config.metrics_port:
        metrics.serve(config.metrics_port, config.listen_host)
    asyncio.run(
        kopf.operator(
            clusterwide=not config.exact_namespaces,
            namespaces=config.exact_namespaces,
            standalone=True,
            liveness_endpoint=probe,
        )
    )


if __name__ == "__main__":
    main()
