"""The PodTemplateSpec schema of spec.template, from the pinned Kubernetes release's OpenAPI v3 document.

`make openapi` (`python -m lepton_operator.k8sschema <kubernetes source>`, then `make crds`) copies the
definitions reachable from io.k8s.api.core.v1.PodTemplateSpec out of `api/openapi-spec/v3/api__v1_openapi.json`
of the release in cluster/versions.env (descriptions dropped) into operator/openapi/; crdgen turns them into a
structural schema: refs inlined, Quantity/IntOrString as int-or-string, defaults kept only where a list-map key
needs one, and the lists CEL rules walk bounded (the CEL cost budget needs maxItems).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VENDORED = REPO / "operator" / "openapi" / "core-v1-podtemplatespec.json"
ROOT = "io.k8s.api.core.v1.PodTemplateSpec"
_INT_OR_STRING = {"io.k8s.apimachinery.pkg.api.resource.Quantity", "io.k8s.apimachinery.pkg.util.intstr.IntOrString"}
_KEEP = {
    "type",
    "format",
    "properties",
    "items",
    "additionalProperties",
    "required",
    "enum",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
}
# Lists a CEL rule walks, bounded so that the API server's cost estimate stays within budget; each worker pod
# copies the template, every epoch, so these also bound what one job stores.
MAX_ITEMS = {"containers": 16, "initContainers": 16, "env": 256, "ports": 64, "volumeMounts": 64, "volumes": 128}
MAX_LENGTH = {"name": 253, "mountPath": 4096}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].split("/")[-1]} if "$ref" in node else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def extract(document: dict[str, Any]) -> dict[str, Any]:
    """The definitions reachable from PodTemplateSpec, without descriptions."""
    schemas = document["components"]["schemas"]
    todo, seen = [ROOT], set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += sorted(_refs(schemas[name]) - _INT_OR_STRING)
    return {name: _strip(schemas[name]) for name in sorted(seen)}


def _inline(node: dict[str, Any], defs: dict[str, Any], depth: int) -> dict[str, Any]:
    if depth > 40:
        raise ValueError("recursive schema")
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
    if "$ref" in node:
        name = node["$ref"].split("/")[-1]
        if name in _INT_OR_STRING:
            return {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
        node = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def structural(node: dict[str, Any], defs: dict[str, Any], name: str = "", depth: int = 0) -> dict[str, Any]:
    """One OpenAPI v3 node of the Kubernetes document as a CRD structural schema node."""
    node = _inline(node, defs, depth)
    if "x-kubernetes-int-or-string" in node:
        return node
    out: dict[str, Any] = {k: v for k, v in node.items() if k in _KEEP}
    if "properties" in out:
        out["properties"] = {k: structural(v, defs, k, depth + 1) for k, v in out["properties"].items()}
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = structural(out["additionalProperties"], defs, "", depth + 1)
    if "items" in out:
        out["items"] = structural(out["items"], defs, "", depth + 1)
        raw_items = _inline(node["items"], defs, depth)
        for key in out.get("x-kubernetes-list-map-keys", []):  # a map key needs a default unless required
            default = raw_items.get("properties", {}).get(key, {}).get("default")
            if key not in out["items"].get("required", []) and default is not None:
                out["items"]["properties"][key]["default"] = default
        if name in MAX_ITEMS:
            out["maxItems"] = MAX_ITEMS[name]
    if out.get("type") == "string" and name in MAX_LENGTH:
        out["maxLength"] = MAX_LENGTH[name]
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def load() -> dict[str, Any]:
    """The vendored document: {kubernetesVersion, source, schemas}."""
    loaded: dict[str, Any] = json.loads(VENDORED.read_text())
    return loaded


def pod_spec_schema() -> dict[str, Any]:
    """The structural schema of a PodSpec (containers optional: the operator adds `trainer` when missing)."""
    defs = load()["schemas"]
    schema = structural({"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}, defs)
    schema.pop("required", None)
    return schema


_MAP = {"type": "object", "maxProperties": 64, "additionalProperties": {"type": "string", "maxLength": 65536}}
_NAME = {"type": "string", "maxLength": 253}


def pod_template_schema() -> dict[str, Any]:
    """properties of a PodTemplateSpec: metadata (labels and annotations; the names only to refuse them), spec."""
    meta = {"labels": _MAP, "annotations": _MAP, "name": _NAME, "generateName": _NAME, "namespace": _NAME}
    return {"properties": {"metadata": {"type": "object", "properties": meta}, "spec": pod_spec_schema()}}


def vendored_text(kubernetes: Path) -> str:
    """The vendored file's text from a Kubernetes source tree named `kubernetes@<version>` (the Go module cache's)."""
    source = kubernetes / "api" / "openapi-spec" / "v3" / "api__v1_openapi.json"
    out: dict[str, Any] = {
        "kubernetesVersion": kubernetes.name.split("@")[-1],
        "source": str(source.relative_to(kubernetes)),
    }
    out["schemas"] = extract(json.loads(source.read_text()))
    return json.dumps(out, indent=1, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    """Vendor the definitions from a Kubernetes source tree (`make openapi`: the Go module cache's
    k8s.io/kubernetes of the release in cluster/versions.env)."""
    VENDORED.parent.mkdir(parents=True, exist_ok=True)
    VENDORED.write_text(vendored_text(Path(argv[0])))
    print(f"wrote {VENDORED.relative_to(REPO)} from {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
