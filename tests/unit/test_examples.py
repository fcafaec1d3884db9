"""Every example parses with the models and is applied by an e2e test (a folder's kustomization.yaml is kustomize's,
not a manifest)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lepton_operator.api.resources import RESOURCES

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (REPO / "examples").rglob("*.yaml") if p.name != "kustomization.yaml")
MODELS = {r.kind: r.model for r in RESOURCES}


def test_there_are_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(REPO / "examples")))
def test_example_is_valid_and_applied_by_an_e2e_test(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text()))
    ours = [d for d in docs if d["kind"] in MODELS]  # beside them: ConfigMaps, claims, ServiceAccounts
    assert ours, f"examples/{path.name} holds no TrainingJob or InferenceService"
    for doc in ours:
        MODELS[doc["kind"]].model_validate(doc)
    e2e_sources = "".join(p.read_text() for p in (REPO / "tests" / "e2e").glob("test_*.py"))
    name = path.relative_to(REPO / "examples").as_posix()
    assert name in e2e_sources, f"no e2e test applies examples/{name}"
