"""Generate structural CRD YAML from the pydantic models (`make crds`).

`python -m lepton_operator.crdgen --write` rewrites crds/ and the Helm chart's CRD templates
(charts/lepton-operator/templates/crds/: the same CRD, wrapped in the chart's `crds.install` switch and
`crds.keep` annotation); `--check` exits 1 when any of them is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from . import k8sschema
from .api.resources import RESOURCES, Resource
from .api.template import EMBED
from .constants import GROUP, VERSION

REPO = Path(__file__).resolve().parents[2]
CRD_DIRS = [REPO / "crds"]
CHART_CRD_DIR = REPO / "charts" / "lepton-operator" / "templates" / "crds"
_DROP = {"title", "discriminator", "$defs"}


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline $ref / allOf-of-one / Optional (anyOf with null), keeping the outer keys."""
    node = dict(node)
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**node.pop("allOf")[0], **node}
    if "$ref" in node:
        target = defs[node.pop("$ref").split("/")[-1]]
        node = {**target, **{k: v for k, v in node.items() if k != "title"}}
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"union types are not structural: {options}")
        node = {**_resolve(options[0], defs), **node}
    if node.get("default", 0) is None:
        node.pop("default")
    return node


def structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Convert one pydantic JSON-schema node into a Kubernetes structural schema node."""
    node = _resolve(node, defs)
    if EMBED in node:
        return _embedded(node)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif (key == "items" and isinstance(value, dict)) or (
            key == "additionalProperties" and isinstance(value, dict)
        ):
            out[key] = structural(value, defs)
        else:
            out[key] = value
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), int | float) and not isinstance(out[bound], bool):
            out[limit], out[bound] = out[bound], True  # OpenAPI v3.0 spelling
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "const" in out:
        out["enum"] = [out.pop("const")]
        out.setdefault("type", "string")
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _embedded(node: dict[str, Any]) -> dict[str, Any]:
    """A field typed by a Kubernetes schema (spec.template: PodTemplateSpec), its description and CEL rules kept."""
    if node[EMBED] != "PodTemplateSpec":
        raise ValueError(f"no Kubernetes schema for {node[EMBED]}")
    keep: dict[str, Any] = {k: node[k] for k in ("description", "x-kubernetes-validations") if k in node}
    return {"type": "object", **keep, **k8sschema.pod_template_schema()}


def schema_for(resource: Resource) -> dict[str, Any]:
    """The openAPIV3Schema of a resource."""
    raw = resource.model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    root = structural(raw, defs)
    props = root["properties"]
    props["apiVersion"] = {"type": "string", "description": props["apiVersion"]["description"]}
    props["kind"] = {"type": "string", "description": props["kind"]["description"]}
    props["metadata"] = {"type": "object"}
    root["required"] = ["spec"]
    return root


def crd_for(resource: Resource) -> dict[str, Any]:
    """The CustomResourceDefinition of a resource."""
    subresources: dict[str, Any] = {"status": {}}
    if resource.scale:
        subresources["scale"] = resource.scale
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": resource.crd_name, "labels": {"app.kubernetes.io/part-of": "lepton-operator"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.kind.lower(),
                "shortNames": resource.short_names,
                "categories": resource.categories,
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema_for(resource)},
                    "subresources": subresources,
                    "additionalPrinterColumns": resource.printer_columns,
                }
            ],
        },
    }


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(resource: Resource) -> str:
    header = "# GENERATED by `make crds` from operator/lepton_operator/api - do not edit.\n"
    return header + yaml.dump(crd_for(resource), Dumper=_NoAliases, sort_keys=False, width=120)


def render_chart(resource: Resource) -> str:
    """The CRD as a Helm template: rendered only with `crds.install`, kept on uninstall with `crds.keep`."""
    crd = crd_for(resource)
    head = yaml.dump({k: crd[k] for k in ("apiVersion", "kind")}, Dumper=_NoAliases, sort_keys=False)
    spec = yaml.dump({"spec": crd["spec"]}, Dumper=_NoAliases, sort_keys=False, width=120)
    if "{{" in spec or "}}" in spec:
        raise ValueError(f"{resource.crd_name}: '{{{{' or '}}}}' in the schema would be read as a Helm template")
    labels = "".join(f"    {k}: {v}\n" for k, v in crd["metadata"]["labels"].items())
    return (
        "{{- if .Values.crds.install }}\n"
        "# GENERATED by `make crds` from operator/lepton_operator/api - do not edit.\n"
        + head
        + "metadata:\n"
        + f"  name: {crd['metadata']['name']}\n"
        + "  labels:\n"
        + labels
        + '    {{- include "lepton-operator.labels" . | nindent 4 }}\n'
        + "  {{- if .Values.crds.keep }}\n"
        + "  annotations:\n"
        + "    # `helm uninstall` leaves the CRD (and so every TrainingJob) in place.\n"
        + "    helm.sh/resource-policy: keep\n"
        + "  {{- end }}\n"
        + spec
        + "{{- end }}\n"
    )


def rendered_files() -> dict[Path, str]:
    """Every generated file and its content: crds/ and the chart's CRD templates."""
    files = {d / f"{r.crd_name}.yaml": render(r) for d in CRD_DIRS for r in RESOURCES}
    files.update({CHART_CRD_DIR / f"{r.crd_name}.yaml": render_chart(r) for r in RESOURCES})
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="write the files")
    parser.add_argument("--check", action="store_true", help="exit 1 when a committed file is stale")
    args = parser.parse_args(argv)
    stale = [p for p, text in rendered_files().items() if not p.exists() or p.read_text() != text]
    if args.write:
        for path, text in rendered_files().items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO)}")
        return 0
    if stale:
        print("stale generated files (run `make crds`):", *[str(p.relative_to(REPO)) for p in stale], sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
