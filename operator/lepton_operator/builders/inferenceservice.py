"""Render an InferenceService's Deployment and Service (pure)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..api.inferenceservice import InferenceService
from ..constants import INFERENCESERVICE_KIND, LABEL_ISVC, LABEL_NAME
from .common import (
    INFERENCESERVICE_APP,
    gpu_product_term,
    managed_labels,
    mount_volume,
    required_affinity,
    secure,
    tolerations,
)
from .common import selector as selector_of
from .names import owner_reference
from .resources import container_resources

SERVE_PORT = 8080  # the server's port in the pod (lepton_trainer.serve's default)
SERVICE_PORT = 80
CONTAINER = "server"
MODEL_VOLUME = "model"
TEMPLATE_HASH = "lepton.ai/template-hash"


@dataclass(frozen=True)
class ModelMount:
    """The resolved model: its path in the container and the volume (a Pod volume source) it lives on."""

    path: str
    volume: dict[str, Any] | None = None
    mount_path: str | None = None
    sub_path: str | None = None  # the folder of the volume mounted (a TrainingJob's own, on a shared claim)


def labels(name: str) -> dict[str, str]:
    return {LABEL_ISVC: name, **managed_labels(INFERENCESERVICE_APP)}


def pod_selector(name: str) -> dict[str, str]:
    """The labels that select a service's server pods (its Deployment's and Service's selector)."""
    return {LABEL_ISVC: name, LABEL_NAME: INFERENCESERVICE_APP}


def selector(name: str) -> str:
    return selector_of(pod_selector(name))


def url(isvc: InferenceService) -> str:
    meta = isvc.metadata
    return f"http://{meta['name']}.{meta['namespace']}.svc.cluster.local/v2/models/{meta['name']}"


def server_args(isvc: InferenceService, model: ModelMount) -> list[str]:
    b = isvc.spec.batching
    return [
        "-m", "lepton_trainer.serve",
        "--model-dir", model.path,
        "--name", isvc.metadata["name"],
        "--port", str(SERVE_PORT),
        "--max-batch-size", str(b.max_batch_size),
        "--max-wait-ms", f"{b.max_wait_ms:g}",
    ]  # fmt: skip


def pod_template(isvc: InferenceService, model: ModelMount, image: str) -> dict[str, Any]:
    """The server pod: readiness = model loaded (/v2/health/ready), liveness = process answers."""
    spec, name = isvc.spec, isvc.metadata["name"]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image or image,
        "command": ["python"],
        "args": server_args(isvc, model),
        "ports": [{"name": "http", "containerPort": SERVE_PORT}],
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if resources := container_resources(isvc.spec.resources, isvc.spec.gpus):
        container["resources"] = resources
    pod: dict[str, Any] = {
        "containers": [container],
        "tolerations": tolerations(spec.gpus, spec.tolerations),
        "terminationGracePeriodSeconds": 30,  # the server drains in-flight requests within 25 s
        "enableServiceLinks": False,
    }
    secure(pod, container)
    if spec.gpu_type:
        pod["affinity"] = {"nodeAffinity": required_affinity([gpu_product_term(spec.gpu_type)])}
    if model.volume is not None and model.mount_path:
        mount = (MODEL_VOLUME, model.volume, model.mount_path)
        mount_volume(pod, container, *mount, sub_path=model.sub_path, read_only=True)
    return {"metadata": {"labels": labels(name)}, "spec": pod}


def template_hash(template: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]


def deployment(isvc: InferenceService, model: ModelMount, image: str, replicas: int) -> dict[str, Any]:
    """RollingUpdate with maxUnavailable 0: a new model or image is served before an old replica goes."""
    meta, template = isvc.metadata, pod_template(isvc, model, image)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": labels(meta["name"]),
            "annotations": {TEMPLATE_HASH: template_hash(template)},
            "ownerReferences": [owner_reference(INFERENCESERVICE_KIND, isvc.metadata)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": pod_selector(meta["name"])},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "revisionHistoryLimit": 3,
            "template": template,
        },
    }


def service(isvc: InferenceService) -> dict[str, Any]:
    meta = isvc.metadata
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": labels(meta["name"]),
            "ownerReferences": [owner_reference(INFERENCESERVICE_KIND, isvc.metadata)],
        },
        "spec": {
            "selector": pod_selector(meta["name"]),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}],
        },
    }
