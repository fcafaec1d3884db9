"""Model base (camelCase JSON), the Condition shape and markers the CRD generator reads."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# Keys the CRD generator understands inside json_schema_extra.
VALIDATIONS = "x-kubernetes-validations"
LIST_TYPE = "x-kubernetes-list-type"
LIST_MAP_KEYS = "x-kubernetes-list-map-keys"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
# a label key for CEL's matches(): an optional DNS-subdomain prefix and '/', then a name
LABEL_KEY_CEL = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$"


class KubeModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields ignored (the API server prunes)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_wire(self) -> dict[str, Any]:
        """JSON-ready dict with camelCase keys and unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def cel(rule: str, message: str, *, field_path: str | None = None, reason: str | None = None) -> dict[str, str]:
    """One CEL validation rule for the CRD schema (x-kubernetes-validations)."""
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    if reason:
        out["reason"] = reason
    return out


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """json_schema_extra carrying CEL rules."""
    return {VALIDATIONS: list(rules)}


def immutable(field: str) -> dict[str, str]:
    """A transition rule, placed on the parent, that keeps an optional field as it was created."""
    return cel(
        f"has(self.{field}) == has(oldSelf.{field}) && (!has(self.{field}) || self.{field} == oldSelf.{field})",
        f"{field} is immutable",
        field_path=f".{field}",
    )


class Condition(KubeModel):
    """A metav1.Condition."""

    type: str = Field(description="Condition type, e.g. Running.", max_length=64, pattern=r"^[A-Za-z]+$")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="One CamelCase word for the last transition.", max_length=128)
    message: str = Field(default="", description="A sentence a person can read.", max_length=4096)
    last_transition_time: str | None = Field(
        default=None, description="When status last changed (RFC 3339).", max_length=64
    )
    observed_generation: int | None = Field(
        default=None,
        description="metadata.generation this condition was computed from.",
        ge=0,
        le=2**62,
    )
