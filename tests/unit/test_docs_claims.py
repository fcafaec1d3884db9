"""The docs name only things that exist: env vars, metrics, make targets, Helm values, links, no machine paths.

Every README.md and docs/*.md claim of these kinds is checked against the code, so a rename or a removal
that forgets the docs fails here. Pure text scanning: no cluster, no imports of the operator.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "lepton-operator"
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
# Where settings and metrics are defined (tests only for the test-suite's own switches: conftest files).
CODE_DIRS = ("operator", "trainer_image", "cluster", "charts", "bench")
CODE_SUFFIXES = {".py", ".sh", ".yaml", ".tpl", ".txt", ".env", ".json"}
METRIC_SOURCES = (
    REPO / "operator" / "lepton_operator" / "metrics.py",
    *sorted((REPO / "trainer_image" / "lepton_trainer" / "serve").glob("*.py")),
)
PACKAGES = {"lepton_operator", "lepton_trainer", "lepton_cluster"}

ENV_RE = re.compile(r"\b((?:LEPTON|PET)_[A-Z0-9_]*)")
METRIC_RE = re.compile(r"(?<![\w./-])(lepton_[a-z0-9_]+)(?![\w.(/-])")
MAKE_RE = re.compile(r"(?<![\w-])make ([a-z][a-z0-9-]*)")
LINK_RE = re.compile(r"\]\(([^)\s]+)\)")
SET_RE = re.compile(r"--set[ =]([A-Za-z][\w.]*(?:=[^\s,`]*)?(?:,[A-Za-z][\w.]*=[^\s,`]*)*)")
CHART_VALUE_RE = re.compile(r"chart value `([A-Za-z][\w.]*)`")
# A path into one checkout on one machine: the repository's own folders under /work, /root, /home or /tmp.
MACHINE_PATH_RE = re.compile(
    r"(?:/work/|/root/|/home/(?!lepton\b)|/tmp/[^\s`]*/(?:run|\.venv|operator|cluster|charts|tests)/)[^\s`)]*[^\s`).,;:]"
)
JSONPATH_RE = re.compile(r"\{(?:range )?\.((?:spec|status)(?:\.[A-Za-z]\w*(?:\[[^\]]*\])?)*)")
PATCH_RE = re.compile(r"-p '(\{.*?\})'")
RELATIVE_PATH_RE = re.compile(r"(?<![\w./~-])(\.\./[\w./-]+)")
METRIC_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def doc_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def code_spans(text: str) -> str:
    """Fenced code blocks and inline `code` of a Markdown text (where commands and names are written)."""
    fenced = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    rest = re.sub(r"```.*?```", "", text, flags=re.S)
    return "\n".join([*fenced, *re.findall(r"`([^`\n]+)`", rest)])


def without_links(text: str) -> str:
    return LINK_RE.sub("]()", text)


def code_files() -> Iterator[Path]:
    for top in CODE_DIRS:
        for path in (REPO / top).rglob("*"):
            if path.is_file() and path.suffix in CODE_SUFFIXES and "__pycache__" not in path.parts:
                yield path
    yield REPO / "Makefile"
    yield from (REPO / "tests").rglob("conftest.py")
    ci = REPO / ".ci"
    if ci.is_dir():
        yield from (p for p in ci.rglob("*") if p.is_file())


def env_names_in_code() -> set[str]:
    names: set[str] = set()
    for path in code_files():
        names |= set(ENV_RE.findall(path.read_text(encoding="utf-8", errors="replace")))
    # pydantic-settings fields: LEPTON_<FIELD> (OperatorConfig, env_prefix="LEPTON_").
    config = (REPO / "operator" / "lepton_operator" / "config.py").read_text()
    names |= {f"LEPTON_{f.upper()}" for f in re.findall(r"^    ([a-z][a-z0-9_]*): .*=", config, flags=re.M)}
    return names


def env_claims(text: str) -> set[str]:
    return set(ENV_RE.findall(text))


def env_exists(name: str, known: set[str]) -> bool:
    if name.endswith("_"):  # a prefix (`LEPTON_SERVE_*`, `PET_*`)
        return any(k.startswith(name) for k in known)
    return name in known


def metric_names_in_code() -> set[str]:
    return {m for p in METRIC_SOURCES for m in re.findall(r"[\"'](lepton_[a-z0-9_]+)[\"']", p.read_text())}


def metric_claims(text: str) -> set[str]:
    return {m for m in METRIC_RE.findall(without_links(text)) if m not in PACKAGES}


def metric_exists(name: str, known: set[str]) -> bool:
    if name.endswith("_"):  # a prefix (`lepton_serve_inflight_*`)
        return any(k.startswith(name) for k in known)
    base = next((name[: -len(s)] for s in METRIC_SUFFIXES if name.endswith(s) and name[: -len(s)] in known), name)
    return base in known


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (REPO / "Makefile").read_text(), flags=re.M))


def make_claims(text: str) -> set[str]:
    return set(MAKE_RE.findall(code_spans(text)))


def helm_value_claims(path: Path, text: str) -> set[str]:
    """Value paths in `--set` arguments, "chart value `x.y`", and the first column of docs/chart.md's table."""
    claims: set[str] = set()
    for arg in SET_RE.findall(text):
        claims |= {kv.split("=", 1)[0] for kv in arg.split(",") if kv and kv != "..."}
    claims |= set(CHART_VALUE_RE.findall(text))
    if path.name == "chart.md":
        section = text.split("## Values", 1)[1].split("\n## ", 1)[0]
        for row in re.findall(r"^\| (`.*?) \|", section, flags=re.M):
            names = re.findall(r"`([A-Za-z][\w.]*)`", row)
            parent = names[0].rpartition(".")[0] if names else ""
            # `image.repository` / `tag`: siblings written short after the first full path.
            claims |= {n if ("." in n or not parent) else f"{parent}.{n}" for n in names}
    return claims


def helm_value_exists(dotted: str, values: dict[str, Any]) -> bool:
    node: Any = values
    for key in dotted.split("."):
        if not isinstance(node, dict) or (node and key not in node):
            return False
        if not node:  # a free-form mapping (`prices.table`: {})
            return True
        node = node[key]
    return True


@functools.cache
def crd_schemas() -> list[dict[str, Any]]:
    """The openAPIV3Schema of each generated CRD (crds/*.yaml)."""
    out = []
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=loader)  # CSafeLoader or SafeLoader
        out += [v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]]
    return out


def field_claims(text: str) -> set[str]:
    """Object fields named in `kubectl -o jsonpath` expressions and `kubectl patch -p` documents."""
    claims = {re.sub(r"\[[^\]]*\]", "", m) for m in JSONPATH_RE.findall(text)}
    for doc in PATCH_RE.findall(text):
        stack: list[tuple[str, Any]] = [("", json.loads(doc))]
        while stack:
            prefix, node = stack.pop()
            if isinstance(node, list):
                stack += [(prefix, item) for item in node]
            elif isinstance(node, dict):
                for key, value in node.items():
                    path = f"{prefix}.{key}" if prefix else key
                    claims.add(path)
                    stack.append((path, value))
    return claims


def field_exists(dotted: str, schemas: list[dict[str, Any]]) -> bool:
    for schema in schemas:
        node: dict[str, Any] | None = schema
        for key in dotted.split("."):
            while node is not None and node.get("type") == "array":
                node = node.get("items")
            if node is None or "properties" not in node:
                break  # a free-form object: anything goes below
            node = node["properties"].get(key)
        if node is not None:
            return True
    return False


def github_anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, link text kept, punctuation but `-` and `_` dropped, spaces -> `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", doc_text(path), flags=re.S)
    return {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def broken_links(path: Path, text: str) -> list[str]:
    bad = []
    for target in LINK_RE.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.is_relative_to(REPO):
            bad.append(f"{target} (outside the repository)")
        elif not dest.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target} (no such heading)")
    return bad


def machine_paths(text: str) -> list[str]:
    return [m.group(0) for m in MACHINE_PATH_RE.finditer(text)]


def paths_outside(path: Path, text: str) -> list[str]:
    """`../...` paths named in the text (links or not) that lead out of the repository or to nothing."""
    found = []
    for rel in RELATIVE_PATH_RE.findall(text):
        dest = (path.parent / rel.rstrip(".")).resolve()
        if not dest.is_relative_to(REPO) or not dest.exists():
            found.append(rel)
    return found


@pytest.fixture(scope="module")
def known_env() -> set[str]:
    return env_names_in_code()


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


def doc_id(path: Path) -> str:
    return str(path.relative_to(REPO))


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_env_vars_named_exist_in_the_code(doc: Path, known_env: set[str]) -> None:
    missing = sorted(n for n in env_claims(doc_text(doc)) if not env_exists(n, known_env))
    assert not missing, f"{doc_id(doc)} names variables the code never reads or sets: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_metrics_named_exist(doc: Path) -> None:
    known = metric_names_in_code()
    missing = sorted(m for m in metric_claims(doc_text(doc)) if not metric_exists(m, known))
    assert not missing, f"{doc_id(doc)} names metrics no module defines: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_make_targets_named_exist(doc: Path) -> None:
    missing = sorted(make_claims(doc_text(doc)) - make_targets())
    assert not missing, f"{doc_id(doc)} names make targets the Makefile lacks: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_helm_values_named_exist(doc: Path, values: dict[str, Any]) -> None:
    missing = sorted(v for v in helm_value_claims(doc, doc_text(doc)) if not helm_value_exists(v, values))
    assert not missing, f"{doc_id(doc)} names Helm values values.yaml lacks: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_relative_links_resolve_inside_the_repository(doc: Path) -> None:
    bad = broken_links(doc, doc_text(doc))
    assert not bad, f"{doc_id(doc)}: {bad}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_no_path_of_one_checkout_on_one_machine(doc: Path) -> None:
    found = machine_paths(doc_text(doc))
    assert not found, f"{doc_id(doc)} shows absolute paths of one machine (write run/..., ~/.cache/...): {found}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_no_path_leads_out_of_the_repository(doc: Path) -> None:
    found = paths_outside(doc, doc_text(doc))
    assert not found, f"{doc_id(doc)} names paths outside the repository: {found}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_object_fields_named_exist_in_the_crds(doc: Path) -> None:
    schemas = crd_schemas()
    missing = sorted(f for f in field_claims(doc_text(doc)) if not field_exists(f, schemas))
    assert not missing, f"{doc_id(doc)} names fields no CRD has (jsonpath, patch): {missing}"


def test_the_checks_catch_planted_bad_claims(known_env: set[str], values: dict[str, Any]) -> None:
    """Each check fails on a made-up claim (so a green run means something)."""
    bad = (
        "Set `LEPTON_NO_SUCH_SETTING=1`; scrape `lepton_no_such_metric_total`; run `make no-such-target`;\n"
        "`helm install x charts/lepton-operator --set rbac.noSuchValue=true`; see [x](../shared/notes.md)\n"
        "and [y](docs/missing.md); kubeconfig in /work/main/run/cluster/admin.kubeconfig.\n"
    )
    fake = REPO / "README.md"
    assert not env_exists("LEPTON_NO_SUCH_SETTING", known_env) and "LEPTON_NO_SUCH_SETTING" in env_claims(bad)
    assert "lepton_no_such_metric_total" in metric_claims(bad)
    assert not metric_exists("lepton_no_such_metric_total", metric_names_in_code())
    assert "no-such-target" in make_claims(bad) and "no-such-target" not in make_targets()
    assert "rbac.noSuchValue" in helm_value_claims(fake, bad)
    assert not helm_value_exists("rbac.noSuchValue", values)
    assert len(broken_links(fake, bad)) == 2
    assert machine_paths(bad) == ["/work/main/run/cluster/admin.kubeconfig"]
    assert paths_outside(REPO / "docs" / "trainer.md", "notes in `../shared/notes/baselines.md`") == [
        "../shared/notes/baselines.md"
    ]
    assert paths_outside(REPO / "docs" / "cluster.md", "see `../README.md`") == []
    fields = field_claims(
        "kubectl get tj x -o jsonpath='{.status.lastFailures}' and '{range .status.conditions[*]}{.type}{end}';\n"
        """kubectl patch tj x --type=merge -p '{"spec":{"failurePolicy":{"rules":[{"onExitCode":{"values":[1]}}]}}}'"""
    )
    assert {"status.lastFailures", "status.conditions", "spec.failurePolicy.rules.onExitCode"} <= fields
    missing = {f for f in fields if not field_exists(f, crd_schemas())}
    assert missing == {
        "status.lastFailures",
        "spec.failurePolicy.rules.onExitCode",
        "spec.failurePolicy.rules.onExitCode.values",
    }
    # and what exists passes
    assert env_exists("LEPTON_PRICES_CONFIGMAP", known_env) and env_exists("PET_NNODES", known_env)
    assert metric_exists("lepton_trainingjob_restarts_total", metric_names_in_code())
    assert helm_value_exists("rbac.aggregateToDefaultRoles", values)
    assert helm_value_exists("prices.table.cpuCoreHour", values)
