"""Hypothesis strategies for the fuzz tests: TrainingJob and InferenceService bodies (plausible, then a few fields
made hostile), pods as a kubelet reports them, and untrusted JSON."""

from __future__ import annotations

import json
import os
import string
from datetime import datetime
from typing import Any

from hypothesis import Phase, settings
from hypothesis import strategies as st
from lepton_operator.api.base import QUANTITY
from lepton_operator.constants import CONTROLLER_NAME

# Derandomized: the same examples on every run (no flaky CI); a new bug class means a new strategy.
# No "explain" phase: its tracer makes a failing run minutes long on Python < 3.12.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate] + ([] if os.environ.get("FUZZ_NO_SHRINK") else [Phase.shrink])
settings.register_profile("fuzz", max_examples=300, deadline=None, derandomize=True, database=None, phases=PHASES)
FUZZ = settings.get_profile("fuzz")

Draw = st.DrawFn

DNS1035 = st.from_regex(r"\A[a-z]([-a-z0-9]{0,46}[a-z0-9])?\Z")  # what the CRD's name rule admits
LABEL_VALUE = st.from_regex(r"\A[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z")
QUANTITIES = st.from_regex(QUANTITY.replace("^", r"\A").replace("$", r"\Z")).filter(lambda q: len(q) <= 32)
ENV_NAME = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,20}\Z").filter(lambda n: not n.startswith(("LEPTON_", "PET_")))
PATH = st.text(min_size=0, max_size=40).map(lambda s: "/" + s)
TEXT = st.text(max_size=64)  # unicode, control characters and surrogates-free code points
GPUS = st.sampled_from(["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L4", "MI300X"]) | LABEL_VALUE
BIG = st.integers(min_value=-(2**70), max_value=2**70)
# As the API server writes them (it parses and re-renders metav1.Time; the operator writes status ones).
TIMESTAMP = st.datetimes(datetime(1970, 1, 1), datetime(2200, 1, 1)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ"))

# Untrusted JSON: huge and negative numbers, NaN/inf, unicode, nesting.
JSON_SCALAR = st.none() | st.booleans() | BIG | st.floats() | st.text(max_size=32)
JSON = st.recursive(
    JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=16,
)


@st.composite
def deep(draw: Draw) -> Any:
    """A value nested 20-200 levels deep in lists and objects."""
    value: Any = draw(JSON_SCALAR)
    for i in range(draw(st.integers(20, 200))):
        value = [value] if i % 2 else {"a": value}
    return value


HOSTILE = JSON | deep()


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def hostile(draw: Draw, plausible: dict[str, st.SearchStrategy[Any]], max_bad: int = 3) -> dict[str, Any]:
    """An object from `plausible` (each key present or not), then up to `max_bad` keys made hostile, removed,
    or added."""
    obj = {k: draw(s) for k, s in plausible.items() if draw(st.booleans())}
    keys = sorted(plausible)
    for _ in range(draw(st.integers(0, max_bad))):
        match draw(st.sampled_from(["hostile", "remove", "extra"])):
            case "hostile":
                obj[draw(st.sampled_from(keys))] = draw(HOSTILE)
            case "remove":
                obj.pop(draw(st.sampled_from(keys)), None)
            case "extra":
                obj[draw(st.text(max_size=16))] = draw(HOSTILE)
    return obj


def _env() -> st.SearchStrategy[dict[str, Any]]:
    ref = st.fixed_dictionaries({"name": st.text(min_size=1, max_size=20), "key": st.text(min_size=1, max_size=20)})
    source = st.one_of(
        st.fixed_dictionaries({"secretKeyRef": ref}),
        st.fixed_dictionaries({"configMapKeyRef": ref}),
        st.fixed_dictionaries({"fieldRef": st.fixed_dictionaries({"fieldPath": st.just("status.podIP")})}),
    )
    return st.fixed_dictionaries({"name": ENV_NAME}, optional={"value": TEXT, "valueFrom": source})


TOLERATION = st.fixed_dictionaries(
    {},
    optional={
        "key": st.text(max_size=20),
        "operator": st.sampled_from(["Exists", "Equal"]),
        "value": LABEL_VALUE,
        "effect": st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute"]),
        "tolerationSeconds": st.integers(0, 2**31),
    },
)
RESOURCES = st.fixed_dictionaries({}, optional={"cpu": QUANTITIES, "memory": QUANTITIES})
CHECKPOINT = st.fixed_dictionaries(
    {
        "volume": st.one_of(
            st.fixed_dictionaries({"persistentVolumeClaim": DNS1035}),
            st.fixed_dictionaries({"hostPath": PATH}),
            st.fixed_dictionaries({"emptyDir": st.just(True)}),
        )
    },
    optional={"path": PATH.filter(lambda p: p != "/dev/shm")},
)
FAILURE_RULE = st.fixed_dictionaries(
    {"action": st.sampled_from(["RestartJob", "FailJob", "Ignore"])},
    optional={
        "onExitCodes": st.fixed_dictionaries(
            {"operator": st.sampled_from(["In", "NotIn"]), "values": st.lists(st.integers(1, 255), min_size=1)}
        ),
        "onReasons": st.lists(
            st.sampled_from(["OOMKilled", "Evicted", "Preempted", "Disrupted", "NodeLost", "PodLost", "Error"]),
            max_size=3,
        ),
        "countsTowardsMaxRestarts": st.booleans(),
    },
)
FAILURE_POLICY = st.fixed_dictionaries(
    {},
    optional={
        "maxRestarts": st.integers(0, 1000),
        "backoff": st.fixed_dictionaries(
            {}, optional={"initialSeconds": st.integers(0, 3600), "maxSeconds": st.integers(0, 86400)}
        ),
        "countDisruptions": st.booleans(),
        "rules": st.lists(FAILURE_RULE, max_size=4),
    },
)
PRICE = st.fixed_dictionaries(
    {"onDemand": st.floats(0, 1000)},
    optional={"spot": st.floats(0, 1000), "relativeSpeed": st.floats(0, 100)},  # 0: the CRD once let it through
)
PRICES = st.fixed_dictionaries(
    {},
    optional={
        "gpus": st.dictionaries(GPUS, PRICE, max_size=3),
        "cpuCoreHour": st.floats(0, 100),
        "memoryGibHour": st.floats(0, 100),
    },
)
CONTAINER_PORT = st.integers(1, 65535).filter(lambda p: p not in (29400, 29500))
TEMPLATE_CONTAINER = st.fixed_dictionaries(
    {"name": st.sampled_from(["trainer", "sidecar", "logger"])},
    optional={
        "env": st.lists(_env(), max_size=3),
        "resources": st.fixed_dictionaries(
            {}, optional={"limits": st.dictionaries(st.sampled_from(["cpu", "memory", "rdma/hca"]), QUANTITIES)}
        ),
        "ports": st.lists(st.fixed_dictionaries({"containerPort": CONTAINER_PORT}), max_size=2),
        "volumeMounts": st.lists(
            st.fixed_dictionaries({"name": st.sampled_from(["data", "cache"]), "mountPath": PATH}), max_size=2
        ),
        "securityContext": st.fixed_dictionaries({}, optional={"runAsUser": st.integers(0, 2**31 - 1)}),
    },
)
# spec.template as the API server lets it through (it validates against the Kubernetes PodTemplateSpec schema, so
# the types are right); the values are still anything that schema and the CEL rules admit.
TEMPLATE = st.fixed_dictionaries(
    {},
    optional={
        "metadata": st.fixed_dictionaries(
            {},
            optional={
                "labels": st.dictionaries(st.sampled_from(["team", "example.com/x"]), LABEL_VALUE, max_size=2),
                "annotations": st.dictionaries(st.text(min_size=1, max_size=10), TEXT, max_size=2),
            },
        ),
        "spec": st.fixed_dictionaries(
            {},
            optional={
                "containers": st.lists(TEMPLATE_CONTAINER, max_size=3, unique_by=lambda c: c["name"]),
                "volumes": st.lists(
                    st.one_of(
                        st.fixed_dictionaries({"name": st.just("data"), "emptyDir": st.just({})}),
                        st.fixed_dictionaries(
                            {"name": st.just("cache"), "hostPath": st.fixed_dictionaries({"path": PATH})}
                        ),
                    ),
                    max_size=2,
                    unique_by=lambda v: v["name"],
                ),
                "tolerations": st.lists(TOLERATION, max_size=2),
                "nodeSelector": st.dictionaries(st.sampled_from(["zone", "pool"]), LABEL_VALUE, max_size=2),
                "affinity": st.just(
                    {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [{"matchExpressions": [{"key": "z", "operator": "Exists"}]}]
                            }
                        }
                    }
                ),
                "automountServiceAccountToken": st.booleans(),
            },
        ),
    },
)

TRAININGJOB_SPEC: dict[str, st.SearchStrategy[Any]] = {
    "image": st.text(min_size=1, max_size=80),
    "template": TEMPLATE,
    "command": st.lists(TEXT, max_size=4),
    "args": st.lists(TEXT, max_size=4),
    "env": st.lists(_env(), max_size=4, unique_by=lambda e: e["name"]),
    "replicas": st.integers(1, 1024),
    "minReplicas": st.integers(1, 1024),
    "maxReplicas": st.integers(1, 1024),
    "gpusPerReplica": st.integers(0, 16),
    "gpuType": GPUS,
    "resources": RESOURCES,
    "nprocPerNode": st.integers(1, 64),
    "checkpoint": CHECKPOINT,
    "failurePolicy": FAILURE_POLICY,
    "elasticPolicy": st.fixed_dictionaries(
        {},
        optional={
            "scaleUpCooldownSeconds": st.integers(0, 86400),
            "unschedulableTimeoutSeconds": st.integers(1, 86400),
        },
    ),
    "budget": st.fixed_dictionaries(
        {"maxUsd": st.floats(0.01, 1e7)}, optional={"basis": st.sampled_from(["Accrued", "Projected"])}
    ),
    "costPolicy": st.sampled_from(["speed", "balanced", "cost"]),
    "prices": PRICES,
    "suspend": st.booleans(),
    "managedBy": st.sampled_from([CONTROLLER_NAME, "kueue.x-k8s.io/multikueue"]),
    "activeDeadlineSeconds": st.integers(1, 2**31),
    "ttlSecondsAfterFinished": st.integers(0, 2**31),
    "nodeSelector": st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=8), LABEL_VALUE, max_size=3),
    "tolerations": st.lists(TOLERATION, max_size=3),
    "priorityClassName": DNS1035,
    "schedulerName": DNS1035,
}

CONDITION = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["Running", "Restarting", "Succeeded", "Failed", "Suspended", "InvalidSpec"]),
        "status": st.sampled_from(["True", "False", "Unknown"]),
    },
    optional={"reason": st.text(max_size=20), "message": TEXT, "lastTransitionTime": TIMESTAMP},
)
TRAININGJOB_STATUS: dict[str, st.SearchStrategy[Any]] = {
    "phase": st.sampled_from(["Pending", "Running", "Restarting", "Suspended", "Succeeded", "Failed"]),
    "conditions": st.lists(CONDITION, max_size=5, unique_by=lambda c: c["type"]),
    "observedGeneration": st.integers(0, 2**62),
    "replicas": st.integers(0, 1024),
    "readyReplicas": st.integers(0, 1024),
    "restarts": st.integers(0, 2**31),
    "restartEpoch": st.integers(0, 5) | st.integers(0, 2**31),
    "lastFailure": st.fixed_dictionaries(
        {
            "pod": st.text(max_size=40),
            "reason": st.text(max_size=20),
            "action": st.sampled_from(["RestartJob", "FailJob", "Ignore"]),
            "counted": st.booleans(),
            "time": TIMESTAMP,
        },
        optional={"exitCode": st.integers(-255, 255), "message": TEXT, "node": st.text(max_size=20)},
    ),
    "cost": st.fixed_dictionaries(
        {},
        optional={
            "gpuHours": st.floats(0, 1e9),
            "accruedUsd": st.floats(0, 1e12),
            "lastAccrual": TIMESTAMP,
            "priceSource": st.text(max_size=20),
        },
    ),
    "progress": st.fixed_dictionaries(
        {},
        optional={"step": st.integers(0, 2**53), "totalSteps": st.integers(0, 2**53), "etaSeconds": st.floats(0, 1e9)},
    ),
    "launched": st.booleans(),
    "epochStartTime": TIMESTAMP,
    "startTime": TIMESTAMP,
    "completionTime": TIMESTAMP,
}


@st.composite
def metadata(draw: Draw) -> dict[str, Any]:
    """What the API server sets: a valid name (the CRD's rule), namespace, uid, generation."""
    return {
        "name": draw(DNS1035),
        "namespace": draw(st.sampled_from(["ml", "team-a"])),
        "uid": draw(st.uuids()).hex,
        "generation": draw(st.integers(1, 2**40)),
        "resourceVersion": "7",
        "creationTimestamp": draw(TIMESTAMP),
    }


@st.composite
def trainingjob(draw: Draw) -> dict[str, Any]:
    spec = draw(hostile(TRAININGJOB_SPEC))
    if draw(st.integers(0, 9)):  # mostly with an image, else the "missing required field" case is all we see
        spec.setdefault("image", "trainer:1")
    return {
        "apiVersion": "lepton.ai/v1alpha1",
        "kind": "TrainingJob",
        "metadata": draw(metadata()),
        "spec": spec,
        "status": draw(hostile(TRAININGJOB_STATUS, max_bad=1)),
    }


MODEL = st.one_of(
    st.fixed_dictionaries({"fromTrainingJob": DNS1035}),
    st.fixed_dictionaries(
        {"modelPath": PATH},
        optional={
            "volume": st.one_of(
                st.fixed_dictionaries({"persistentVolumeClaim": DNS1035}, optional={"mountPath": PATH}),
                st.fixed_dictionaries({"hostPath": PATH}, optional={"mountPath": PATH}),
            )
        },
    ),
)
INFERENCESERVICE_SPEC: dict[str, st.SearchStrategy[Any]] = {
    "model": MODEL,
    "image": st.text(max_size=80),
    "resources": RESOURCES,
    "gpus": st.integers(0, 16),
    "gpuType": GPUS,
    "tolerations": st.lists(TOLERATION, max_size=3),
    "replicas": st.integers(1, 256),
    "minReplicas": st.integers(1, 256),
    "maxReplicas": st.integers(1, 256),
    "autoscaling": st.fixed_dictionaries(
        {},
        optional={
            "enabled": st.booleans(),
            "targetInFlight": st.floats(0.001, 10000),
            "stableWindowSeconds": st.integers(2, 3600),
            "panicWindowSeconds": st.integers(1, 600),
            "panicThreshold": st.floats(1.1, 100),
            "maxScaleDownRate": st.floats(1.0, 1000),
        },
    ),
    "batching": st.fixed_dictionaries(
        {}, optional={"maxBatchSize": st.integers(1, 1024), "maxWaitMs": st.floats(0, 1000)}
    ),
}
INFERENCESERVICE_STATUS: dict[str, st.SearchStrategy[Any]] = {
    "conditions": st.lists(CONDITION, max_size=3, unique_by=lambda c: c["type"]),
    "replicas": st.integers(0, 256),
    "readyReplicas": st.integers(0, 256),
    "lastScaleTime": TIMESTAMP,
    "inFlight": st.text(max_size=8),
}


@st.composite
def inferenceservice(draw: Draw) -> dict[str, Any]:
    spec = draw(hostile(INFERENCESERVICE_SPEC))
    if draw(st.integers(0, 9)):
        spec.setdefault("model", {"modelPath": "/models/m"})
    meta = draw(metadata())
    meta["name"] = meta["name"][:52]
    return {
        "apiVersion": "lepton.ai/v1alpha1",
        "kind": "InferenceService",
        "metadata": meta,
        "spec": spec,
        "status": draw(hostile(INFERENCESERVICE_STATUS, max_bad=1)),
    }


# A pod as the API server stores it: the types are the Pod schema's, the values are what a kubelet (or anyone who
# may edit pods) wrote.
TERMINATED = st.fixed_dictionaries(
    {"exitCode": st.integers(-(2**31), 2**31 - 1) | st.integers(0, 255)},
    optional={
        "reason": st.sampled_from(["OOMKilled", "Error", "Completed", "ContainerCannotRun"]) | TEXT,
        "message": TEXT | JSON.map(json.dumps),
        "startedAt": TIMESTAMP,
        "finishedAt": TIMESTAMP,
    },
)
CONTAINER_STATE = st.one_of(
    st.fixed_dictionaries({"running": st.fixed_dictionaries({}, optional={"startedAt": TIMESTAMP})}),
    st.fixed_dictionaries({"terminated": TERMINATED}),
    st.fixed_dictionaries({"waiting": st.fixed_dictionaries({}, optional={"reason": TEXT})}),
)
POD_CONDITION = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["PodScheduled", "Ready", "DisruptionTarget", "ContainersReady"]),
        "status": st.sampled_from(["True", "False", "Unknown"]),
    },
    optional={"reason": st.sampled_from(["Unschedulable", "EvictionByEvictionAPI"]) | TEXT, "message": TEXT},
)
LABEL_NUMBER = st.integers(0, 3).map(str) | st.integers(0, 2**31).map(str) | LABEL_VALUE


@st.composite
def raw_pod(draw: Draw, job: str = "mnist", epochs: st.SearchStrategy[str] = LABEL_NUMBER) -> dict[str, Any]:
    labels = {
        "lepton.ai/job-name": job,
        "app.kubernetes.io/name": "trainingjob",
        "app.kubernetes.io/managed-by": "lepton-operator",
        "lepton.ai/restart-epoch": draw(epochs),
        "lepton.ai/replica-index": draw(LABEL_NUMBER),
    }
    meta: dict[str, Any] = {"name": draw(st.text(min_size=1, max_size=20)), "namespace": "ml", "labels": labels}
    if draw(st.booleans()):
        meta["creationTimestamp"] = draw(TIMESTAMP)
    if draw(st.integers(0, 4)) == 0:
        meta["deletionTimestamp"] = draw(TIMESTAMP)
    status: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "phase": st.sampled_from(["Pending", "Running", "Succeeded", "Failed", "Unknown"]),
                "reason": st.sampled_from(["Evicted", "NodeLost", "Preempting"]) | TEXT,
                "message": TEXT,
                "podIP": st.ip_addresses().map(str),
                "conditions": st.lists(POD_CONDITION, max_size=3, unique_by=lambda c: c["type"]),
                "containerStatuses": st.lists(
                    st.fixed_dictionaries(
                        {"name": st.sampled_from(["trainer", "sidecar", "server"]), "state": CONTAINER_STATE}
                    ),
                    max_size=2,
                ),
            },
        )
    )
    spec = {"nodeName": draw(st.sampled_from(["gpu-0", "gpu-1", "gone"]))} if draw(st.booleans()) else {}
    return {"metadata": meta, "spec": spec, "status": status}
