"""The worker pod rendered from examples/trainingjob-own-script.yaml, every field of it."""

from __future__ import annotations

from pathlib import Path

import yaml
from lepton_operator.api.trainingjob import TrainingJob
from lepton_operator.builders.trainingjob import contract_env, worker_pod
from lepton_trainer import contract

from .jobs import make_job


def test_the_examples_worker_pod_field_by_field() -> None:
    """Every field of a worker rendered from examples/trainingjob-own-script.yaml."""
    docs = yaml.safe_load_all((Path(__file__).resolve().parents[2] / "examples" / "trainingjob-own-script.yaml").open())
    body = next(d for d in docs if d["kind"] == "TrainingJob")
    body["metadata"].update(namespace="ml", uid="uid-1")
    pod = worker_pod(TrainingJob.model_validate(body), 0, 1, 2)
    trainer = pod["spec"]["containers"][0]
    assert [e["name"] for e in trainer.pop("env")] == list(contract_env_names())
    assert pod == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "own-script-0-1",
            "namespace": "ml",
            "labels": {
                "team": "vision",
                "lepton.ai/job-name": "own-script",
                "app.kubernetes.io/name": "trainingjob",
                "app.kubernetes.io/managed-by": "lepton-operator",
                "app.kubernetes.io/component": "worker",
                "lepton.ai/restart-epoch": "0",
                "lepton.ai/replica-index": "1",
            },
            "ownerReferences": [
                {
                    "apiVersion": "lepton.ai/v1alpha1",
                    "kind": "TrainingJob",
                    "name": "own-script",
                    "uid": "uid-1",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "annotations": {"example.com/owner": "vision-team"},
        },
        "spec": {
            "serviceAccountName": "own-script",
            "imagePullSecrets": [{"name": "registry-credentials"}],
            "terminationGracePeriodSeconds": 60,
            "containers": [
                {
                    "name": "trainer",
                    "volumeMounts": [
                        {"name": "script", "mountPath": "/scripts", "readOnly": True},
                        {"name": "data", "mountPath": "/data", "readOnly": True},
                        {"name": "checkpoints", "mountPath": "/checkpoints"},
                        {"name": "dshm", "mountPath": "/dev/shm"},
                    ],
                    "image": "ghcr.io/lepton-ai/lepton-trainer:0.1.0",
                    "ports": [
                        {"name": "rendezvous", "containerPort": contract.RDZV_PORT},
                        {"name": "progress", "containerPort": contract.PROGRESS_PORT},
                    ],
                    "terminationMessagePath": contract.TERMINATION_MESSAGE_PATH,
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "args": ["/scripts/train.py"],
                    "resources": {"limits": {"cpu": "2", "memory": "4Gi"}, "requests": {"cpu": "2", "memory": "4Gi"}},
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
            "volumes": [
                {"name": "script", "configMap": {"name": "own-script"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "own-script-data", "readOnly": True}},
                {"name": "checkpoints", "emptyDir": {}},
                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}},
            ],
            "restartPolicy": "Never",
            "hostname": "own-script-0-1",
            "subdomain": "own-script",
            "tolerations": [],
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "runAsGroup": 1000,
                "fsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "automountServiceAccountToken": False,
        },
    }


def contract_env_names() -> list[str]:
    job = make_job()
    return [*contract_env(job, 0, 1, 2), *contract.INJECTED_FIELDS]
