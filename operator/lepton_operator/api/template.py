"""spec.template: the PodTemplateSpec every worker pod starts from, and the CEL rules refusing what the operator
owns (each message names the field). Its schema comes from the pinned Kubernetes OpenAPI (crdgen, k8sschema)."""

from __future__ import annotations

from typing import Any

from lepton_trainer import contract
from pydantic import Field

from ..constants import GPU_RESOURCE, LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_NAME
from .base import cel, validations

EMBED = "x-lepton-embed"  # crdgen replaces a node carrying it by the named Kubernetes schema
TRAINER = "trainer"  # the container of the template that is the operator's
RESERVED_VOLUMES = ("checkpoints", "dshm")
OWNED_LABELS = (LABEL_NAME, LABEL_MANAGED_BY, LABEL_COMPONENT)

_RESERVED_ENV = ", ".join(f"'{n}'" for n in sorted(contract.RESERVED_NAMES))
_RESERVED_PREFIX = " || ".join(f"e.name.startsWith('{p}')" for p in contract.RESERVED_PREFIXES)
_SPEC = "!has(self.spec) || "
_CONTAINERS = _SPEC + "!has(self.spec.containers) || self.spec.containers.all(c, "
_TRAINER = _CONTAINERS + f"c.name != '{TRAINER}' || "
_T = f"spec.template.spec.containers[{TRAINER}]"


def _gpu_free(part: str) -> str:
    return f"(!has(c.resources.{part}) || !('{GPU_RESOURCE}' in c.resources.{part}))"


TEMPLATE_RULES = [
    cel(
        "!has(self.metadata) || (!has(self.metadata.name) && !has(self.metadata.generateName) && "
        "!has(self.metadata.namespace))",
        "spec.template.metadata: name, generateName and namespace are the operator's (<job>-<epoch>-<rank> in "
        "the job's namespace)",
        field_path=".metadata",
    ),
    cel(
        "!has(self.metadata) || !has(self.metadata.labels) || self.metadata.labels.all(k, "
        f"!k.startsWith('lepton.ai/') && !(k in [{', '.join(repr(x) for x in OWNED_LABELS)}]))",
        f"spec.template.metadata.labels: lepton.ai/* and {', '.join(OWNED_LABELS)} are the operator's",
        field_path=".metadata.labels",
    ),
    cel(
        _SPEC + "(!has(self.spec.hostname) && !has(self.spec.subdomain))",
        "spec.template.spec.hostname and subdomain are the operator's (<pod>.<job> names for rendezvous)",
        field_path=".spec",
    ),
    cel(
        _SPEC + "!has(self.spec.restartPolicy) || self.spec.restartPolicy == 'Never'",
        "spec.template.spec.restartPolicy: the operator sets Never (restarts are spec.failurePolicy's)",
        field_path=".spec.restartPolicy",
    ),
    cel(
        _SPEC + "!has(self.spec.nodeName)",
        "spec.template.spec.nodeName: placement is the operator's (use affinity or nodeSelector)",
        field_path=".spec.nodeName",
    ),
    cel(
        _SPEC + "!has(self.spec.volumes) || self.spec.volumes.all(v, "
        f"!(v.name in [{', '.join(repr(v) for v in RESERVED_VOLUMES)}]))",
        f"spec.template.spec.volumes: the names {', '.join(RESERVED_VOLUMES)} are the operator's",
        field_path=".spec.volumes",
    ),
    cel(
        _TRAINER + "!has(c.image))",
        f"{_T}.image: set spec.image (the trainer's image is the operator's)",
        field_path=".spec.containers",
    ),
    cel(
        _TRAINER + f"!has(c.env) || c.env.all(e, !(e.name in [{_RESERVED_ENV}]) && !({_RESERVED_PREFIX})))",
        f"{_T}.env: names {', '.join(sorted(contract.RESERVED_NAMES))} and the prefixes "
        f"{', '.join(contract.RESERVED_PREFIXES)} are reserved for the trainer's environment contract",
        field_path=".spec.containers",
    ),
    cel(
        _TRAINER + "!has(c.ports) || c.ports.all(p, "
        f"p.containerPort != {contract.RDZV_PORT} && p.containerPort != {contract.PROGRESS_PORT} && "
        "(!has(p.name) || !(p.name in ['rendezvous', 'progress']))))",
        f"{_T}.ports: port {contract.RDZV_PORT} (rendezvous) and {contract.PROGRESS_PORT} (progress) are the "
        "operator's",
        field_path=".spec.containers",
    ),
    cel(
        _TRAINER + "!has(c.terminationMessagePath))",
        f"{_T}.terminationMessagePath is the operator's (it reads failures from {contract.TERMINATION_MESSAGE_PATH})",
        field_path=".spec.containers",
    ),
    cel(
        _CONTAINERS + f"!has(c.resources) || ({_gpu_free('limits')} && {_gpu_free('requests')}))",
        f"spec.template.spec.containers[].resources: {GPU_RESOURCE} is the operator's (set spec.gpusPerReplica)",
        field_path=".spec.containers",
    ),
]

# On the spec: rules that need another field of it.
TEMPLATE_SPEC_RULES = [
    cel(
        "!has(self.template) || !has(self.checkpoint) || !has(self.template.spec) || "
        "!has(self.template.spec.containers) || self.template.spec.containers.all(c, "
        f"c.name != '{TRAINER}' || !has(c.volumeMounts) || c.volumeMounts.all(m, "
        "m.mountPath != (has(self.checkpoint.path) ? self.checkpoint.path : '/checkpoints')))",
        f"{_T}.volumeMounts: spec.checkpoint.path is the operator's mount",
        field_path=".template",
    ),
]


def template_field() -> Any:
    """The spec.template field (a dict here: the API server validates it against the Kubernetes schema)."""
    return Field(
        default=None,
        description=(
            "PodTemplateSpec every worker pod starts from (the Kubernetes schema). The container named trainer is "
            "the operator's: it gets spec.image, the env contract, ports, GPUs and the checkpoint mount; the pod "
            "gets the operator's labels, name, hostname, placement and restartPolicy Never. Flat fields win over "
            "the template for the same setting (command, args, env by name, cpu/memory, nodeSelector by key, "
            "priorityClassName, schedulerName); lists are added to (tolerations, volumes, affinity terms). "
            "Changes only while suspended; the next epoch's pods use it."
        ),
        json_schema_extra={EMBED: "PodTemplateSpec"} | validations(*TEMPLATE_RULES),
    )
