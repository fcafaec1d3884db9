"""The custom resources this operator serves, as the CRD generator needs them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ..constants import GROUP, INFERENCESERVICE_KIND, INFERENCESERVICE_PLURAL, TRAININGJOB_KIND, TRAININGJOB_PLURAL
from . import inferenceservice, trainingjob


@dataclass(frozen=True)
class Resource:
    """One kind: its model and the CRD settings that are not part of the schema."""

    kind: str
    plural: str
    short_names: list[str]
    model: type[BaseModel]
    printer_columns: list[dict[str, Any]]
    scale: dict[str, str] | None = None
    categories: list[str] = field(default_factory=lambda: ["lepton"])

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


RESOURCES: list[Resource] = [
    Resource(
        kind=TRAININGJOB_KIND,
        plural=TRAININGJOB_PLURAL,
        short_names=["tj"],
        model=trainingjob.TrainingJob,
        printer_columns=trainingjob.PRINTER_COLUMNS,
        scale={
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    ),
    Resource(
        kind=INFERENCESERVICE_KIND,
        plural=INFERENCESERVICE_PLURAL,
        short_names=["lisvc"],
        model=inferenceservice.InferenceService,
        printer_columns=inferenceservice.PRINTER_COLUMNS,
        scale={
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    ),
]
