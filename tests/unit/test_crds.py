"""The committed CRDs are what the models generate, and every field is described and bounded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from lepton_operator import crdgen
from lepton_operator.api.resources import RESOURCES


def test_committed_crds_are_fresh() -> None:
    stale = [p.name for p, text in crdgen.rendered_files().items() if not p.exists() or p.read_text() != text]
    assert stale == [], f"run `make crds`: {stale}"


def walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_every_field_is_described_and_bounded(resource: Any) -> None:
    schema = crdgen.schema_for(resource)
    problems = []
    for path, node in walk(schema["properties"]["spec"], "spec"):
        is_item = path.endswith(("[]", "}"))
        if not is_item and not node.get("description"):
            problems.append(f"{path}: no description")
        kind = node.get("type")
        if kind == "string" and "maxLength" not in node and "enum" not in node:
            problems.append(f"{path}: string without maxLength")
        if kind == "integer" and ("minimum" not in node or "maximum" not in node):
            problems.append(f"{path}: integer without minimum/maximum")
        if kind == "array" and "maxItems" not in node:
            problems.append(f"{path}: array without maxItems")
        if kind == "object" and "additionalProperties" in node and "maxProperties" not in node:
            problems.append(f"{path}: map without maxProperties")
        if "anyOf" in node or "$ref" in node:
            problems.append(f"{path}: not structural")
    assert problems == []


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_status_is_never_required(resource: Any) -> None:
    schema = crdgen.schema_for(resource)
    assert "status" not in schema["required"]
    assert schema["required"] == ["spec"]


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_printer_columns_and_scale_paths_exist_in_the_schema(resource: Any) -> None:
    schema = crdgen.schema_for(resource)
    paths = [c["jsonPath"] for c in resource.printer_columns if not c["jsonPath"].startswith(".metadata")]
    paths += [p for p in (resource.scale or {}).values()]
    for path in paths:
        node = schema
        for part in path.strip(".").split("."):
            assert part in node.get("properties", {}), f"{path}: no field {part!r}"
            node = node["properties"][part]


def test_what_every_pod_copies_is_capped_in_all_by_a_rule_naming_the_fields() -> None:
    spec = crdgen.schema_for(RESOURCES[0])["properties"]["spec"]
    rules = {r["fieldPath"]: r for r in spec["x-kubernetes-validations"] if ".sum()" in r["rule"]}
    env, args = rules[".env"], rules[".args"]
    assert ".sum() <= 32768" in env["rule"] and env["message"].startswith("spec.env: names and values at most 32768")
    assert "self.command" in args["rule"] and "self.args" in args["rule"] and args["rule"].endswith("<= 32768")
    assert args["message"].startswith("spec.command and spec.args: at most 32768 characters")
