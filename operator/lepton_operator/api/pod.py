"""Pod-level fields a spec passes through to its pods: env, tolerations, resources (both kinds)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import QUANTITY, KubeModel, cel, validations

# What the Pod API requires of names it checks (the CRD refuses them, rather than every create of a pod failing).
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CONFIG_KEY = r"^[-._a-zA-Z0-9]+$"
PREFIX = r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
TAINT_KEY = rf"^({PREFIX}[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?)?$"  # a qualified name, or empty
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"


class KeyRef(KubeModel):
    """A key of a Secret or ConfigMap."""

    name: str = Field(
        description="Name of the Secret or ConfigMap.", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN
    )
    key: str = Field(description="Key inside it.", min_length=1, max_length=253, pattern=CONFIG_KEY)
    optional: bool | None = Field(default=None, description="Whether the key may be missing.")


class FieldRef(KubeModel):
    """A field of the pod (downward API)."""

    field_path: str = Field(description="e.g. status.podIP or metadata.name.", min_length=1, max_length=256)


class EnvVarSource(KubeModel):
    """Where an env var's value comes from."""

    secret_key_ref: KeyRef | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: KeyRef | None = Field(default=None, description="A key of a ConfigMap.")
    field_ref: FieldRef | None = Field(default=None, description="A field of the pod.")


class EnvVar(KubeModel):
    """An environment variable for the trainer container."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.value) != has(self.valueFrom)",
                "spec.env: set exactly one of value and valueFrom",
            )
        )
    }

    name: str = Field(
        description="Variable name (C identifier).",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
    )
    value: str | None = Field(default=None, description="Literal value.", max_length=32768)
    value_from: EnvVarSource | None = Field(default=None, description="Value from a Secret, ConfigMap or pod field.")


class Toleration(KubeModel):
    """A pod toleration."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
                "tolerations: operator must be Exists when key is empty (it matches every taint)",
            ),
            cel(
                "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
                "tolerations: value must be empty when operator is Exists",
            ),
        )
    }

    key: str | None = Field(
        default=None,
        description="Taint key; empty matches all keys.",
        max_length=316,
        pattern=TAINT_KEY,
    )
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal.")
    value: str | None = Field(default=None, description="Taint value for Equal.", max_length=63, pattern=LABEL_VALUE)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated.", ge=0, le=2**31
    )


class Resources(KubeModel):
    """CPU and memory for each worker (requests = limits)."""

    cpu: str | None = Field(
        default=None, description="CPU per worker, e.g. 8 or 500m.", max_length=32, pattern=QUANTITY
    )
    memory: str | None = Field(
        default=None, description="Memory per worker, e.g. 64Gi.", max_length=32, pattern=QUANTITY
    )
