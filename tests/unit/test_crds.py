"""The committed CRDs are what the models generate, and every field is described and bounded."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lepton_operator import crdgen, k8sschema
from lepton_operator.api.resources import RESOURCES


def test_committed_crds_are_fresh() -> None:
    stale = [p.name for p, text in crdgen.rendered_files().items() if not p.exists() or p.read_text() != text]
    assert stale == [], f"run `make crds`: {stale}"


def walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    if path == "spec.template":  # the Kubernetes schema (test_template_schema_is_the_pinned_kubernetes_one)
        return
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


def pinned_kubernetes_source() -> Path | None:
    """k8s.io/kubernetes of cluster/versions.env's release in the Go module cache (cluster/build.sh puts it there)."""
    versions = (crdgen.REPO / "cluster" / "versions.env").read_text()
    version = next(line.split("=", 1)[1] for line in versions.splitlines() if line.startswith("KUBE_VERSION="))
    if shutil.which("go") is None:
        return None
    cache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    source = Path(cache) / "k8s.io" / f"kubernetes@{version}"
    return source if source.is_dir() else None


def test_vendored_openapi_is_what_make_openapi_writes_from_the_pinned_release() -> None:
    """operator/openapi/ is generated (`make openapi`) from the release in cluster/versions.env, not hand-edited."""
    source = pinned_kubernetes_source()
    if source is None:
        pytest.skip("the pinned k8s.io/kubernetes is not in the Go module cache (make cluster-build puts it there)")
    assert k8sschema.vendored_text(source) == k8sschema.VENDORED.read_text(), "run `make openapi`"


def test_template_schema_is_the_pinned_kubernetes_one() -> None:
    """spec.template is the PodSpec of the Kubernetes release the cluster runs, structural, containers optional."""
    vendored = k8sschema.load()
    versions = (crdgen.REPO / "cluster" / "versions.env").read_text()
    assert f"KUBE_VERSION={vendored['kubernetesVersion']}" in versions
    template = crdgen.schema_for(RESOURCES[0])["properties"]["spec"]["properties"]["template"]
    spec = template["properties"]["spec"]
    assert spec == k8sschema.pod_spec_schema() and "required" not in spec
    container = spec["properties"]["containers"]["items"]
    assert container["required"] == ["name"] and spec["properties"]["containers"]["maxItems"] == 16
    limits = container["properties"]["resources"]["properties"]["limits"]["additionalProperties"]
    assert limits["x-kubernetes-int-or-string"] is True
    ports = container["properties"]["ports"]
    assert ports["x-kubernetes-list-map-keys"] == ["containerPort", "protocol"]
    assert ports["items"]["properties"]["protocol"]["default"] == "TCP"
    for path, node in walk_all(template, "spec.template"):
        assert ("$ref" not in node and "description" not in node) or path == "spec.template", path
        assert "default" not in node or path.endswith((".protocol", ".items.name")), path  # list-map keys


def walk_all(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from walk_all(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from walk_all(node[key], f"{path}.{key}")


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


@pytest.mark.parametrize(
    "spec",
    [
        {"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "&Not_DNS", "key": "k"}}}]},
        {"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "a b"}}}]},
        {"tolerations": [{"key": "\x83>", "operator": "Exists"}]},
        {"tolerations": [{"key": "k", "operator": "Equal", "value": "a b"}]},
    ],
)
def test_names_the_pod_api_checks_are_refused_by_the_crd_not_at_every_pod_create(spec: dict[str, Any]) -> None:
    """Found by tests/e2e/test_fuzz_api.py: the CRD let these through and every create of the job's pods was then
    refused (ReplicaFailure, retried with backoff). The patterns are the CRD's and the model's."""
    from lepton_operator.api.trainingjob import TrainingJob
    from pydantic import ValidationError

    from .jobs import job_body

    with pytest.raises(ValidationError):
        TrainingJob.model_validate(job_body(**spec))


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_tolerations_the_pod_api_refuses_are_refused_by_a_cel_rule_naming_the_field(resource: Any) -> None:
    item = crdgen.schema_for(resource)["properties"]["spec"]["properties"]["tolerations"]["items"]
    rules = {r["rule"]: r["message"] for r in item["x-kubernetes-validations"]}
    assert all(m.startswith("tolerations: ") for m in rules.values())
    assert any("'Exists'" in r and "self.key" in r for r in rules)  # an empty key matches every taint: Exists
    assert any("self.value" in r for r in rules)  # Exists takes no value


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_an_image_the_pod_api_refuses_is_refused_by_a_cel_rule_naming_the_field(resource: Any) -> None:
    """Found by tests/e2e/test_fuzz_api.py: an image with a leading space was accepted, then every pod refused."""
    rules = crdgen.schema_for(resource)["properties"]["spec"]["x-kubernetes-validations"]
    (rule,) = [r for r in rules if "trim()" in r["rule"]]
    assert rule["fieldPath"] == ".image" and rule["message"].startswith("spec.image: ")
