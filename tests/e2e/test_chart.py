"""The Helm chart: lint, schema, server-side dry-run, install/uninstall (CRDs kept), least privilege.

Every test here needs the built helm/kubectl and most need the local control plane, so they are e2e.
The CRD is shared with every other e2e test (and other sessions): the install test adopts it into its
release only with `crds.keep=true` checked in the release manifest first, so an uninstall never deletes it.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from lepton_cluster.chart import CHART, REPO, apply_identity, template
from lepton_cluster.cluster import Cluster
from lepton_cluster.testing import unique_name, wait_for
from lepton_operator.api.resources import RESOURCES

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

CRD = "trainingjobs.lepton.ai"
ALL_CRDS = [r.crd_name for r in RESOURCES]
ALL_OPTIONAL = (
    "networkPolicy.enabled=true",
    "networkPolicy.apiServerCIDRs={10.0.0.1/32}",
    "grafanaDashboard.enabled=true",
    "prices.table.cpuCoreHour=1",  # --set parses floats as strings
)


def helm(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cluster.helm(*args, check=check)


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def kinds(text: str) -> list[str]:
    return sorted(d["kind"] for d in docs(text))


# -- lint and schema -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sets",
    [(), ("rbac.scope=namespace",), ALL_OPTIONAL, ("metrics.serviceMonitor.enabled=true",)],
    ids=["defaults", "namespace-scope", "optional-objects", "servicemonitor"],
)
def test_helm_lint_is_clean(cluster: Cluster, sets: tuple[str, ...]) -> None:
    args = ["lint", str(CHART), "--strict", *(a for s in sets for a in ("--set", s))]
    res = helm(cluster, *args)
    assert "1 chart(s) linted, 0 chart(s) failed" in res.stdout
    assert "[WARNING]" not in res.stdout and "[ERROR]" not in res.stdout, res.stdout


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"crds": {"instal": False}}, "at '/crds': additional properties 'instal' not allowed"),
        ({"operatr": {"deploy": False}}, "additional properties 'operatr' not allowed"),
        ({"operator": {"metricsPort": "8000"}}, "at '/operator/metricsPort': got string, want integer"),
        ({"operator": {"metricsPort": 99999}}, "at '/operator/metricsPort': maximum"),
        ({"rbac": {"scope": "global"}}, "at '/rbac/scope': value must be one of 'cluster', 'namespace'"),
        ({"crds": {"keep": "yes"}}, "at '/crds/keep': got string, want boolean"),
        ({"prices": {"table": {"gpus": {"X": {"ondemand": 1}}}}}, "missing property 'onDemand'"),
    ],
    ids=["typo-nested", "typo-top", "wrong-type", "out-of-range", "bad-enum", "bool-as-string", "price-typo"],
)
def test_schema_refuses_typos_and_wrong_types(
    cluster: Cluster, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    bad = tmp_path / "values.yaml"
    bad.write_text(yaml.safe_dump(values))
    for cmd in (
        ["lint", str(CHART)],
        ["template", "t", str(CHART)],
        ["install", "refused", str(CHART), "-n", "default"],
    ):
        res = helm(cluster, *cmd, "-f", str(bad), check=False)
        assert res.returncode != 0, f"helm {cmd[0]} accepted {values}"
        assert "values don't meet the specifications of the schema" in res.stdout + res.stderr
        assert message in res.stdout + res.stderr, res.stdout + res.stderr
    assert helm(cluster, "status", "refused", "-n", "default", check=False).returncode != 0  # nothing installed


def test_cross_field_rules_fail_with_a_message(cluster: Cluster) -> None:
    res = helm(
        cluster, "template", "t", str(CHART), "--set", "rbac.scope=namespace", "--set", "operator.namespaces={a}",
        check=False,
    )  # fmt: skip
    assert res.returncode != 0 and "operator.namespaces is for rbac.scope=cluster" in res.stderr
    for sets, message in (
        (("replicas=2", "leaderElection.enabled=false"), "replicas > 1 needs leaderElection.enabled"),
        (("leaderElection.renewDeadline=15",), "leaderElection needs retryPeriod < renewDeadline < leaseDuration"),
    ):
        res = helm(cluster, "template", "t", str(CHART), *(a for s in sets for a in ("--set", s)), check=False)
        assert res.returncode != 0 and message in res.stderr, res.stderr


# -- rendering -------------------------------------------------------------------------------------
def test_defaults_render_secure_deployment_and_crd_switches(cluster: Cluster) -> None:
    out = docs(template(cluster, "t", "lepton-system"))
    by_kind = {d["kind"]: d for d in out if d["kind"] != "CustomResourceDefinition"}
    by_kind["CustomResourceDefinition"] = next(d for d in out if d["metadata"]["name"] == CRD)
    assert sorted(by_kind) == [
        "ClusterRole", "ClusterRoleBinding", "ConfigMap", "CustomResourceDefinition", "Deployment",
        "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount",
    ]  # fmt: skip
    assert sorted(d["metadata"]["name"] for d in out if d["kind"] == "CustomResourceDefinition") == sorted(ALL_CRDS)
    dep = by_kind["Deployment"]["spec"]
    assert dep["replicas"] == 2 and dep["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert by_kind["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    pod = dep["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsUser"] == 65532
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"health": 8080, "metrics": 8000}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["LEPTON_LEADER_ELECTION"] == "true" and env["LEPTON_LEADER_ELECTION_NAME"] == "t-lepton-operator"
    assert float(env["LEPTON_RETRY_PERIOD"]) < float(env["LEPTON_RENEW_DEADLINE"]) < float(env["LEPTON_LEASE_DURATION"])
    lease_role = next(d for d in out if d["kind"] == "Role" and d["metadata"]["name"].endswith("-leader-election"))
    assert lease_role["rules"][0]["resourceNames"] == ["t-lepton-operator"]
    assert lease_role["rules"][0]["verbs"] == ["get", "update"] and lease_role["rules"][1]["verbs"] == ["create"]
    assert env["LEPTON_LISTEN_HOST"] == "0.0.0.0" and env["LEPTON_NAMESPACES"] == "[]"
    assert env["LEPTON_LIVENESS_PORT"] == "8080" and env["LEPTON_METRICS_PORT"] == "8000"
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert by_kind["CustomResourceDefinition"]["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert by_kind["ConfigMap"]["metadata"]["labels"]["lepton.ai/prices"] == "true"
    # The CRD in the chart is the generated one (same spec as crds/).
    generated = yaml.safe_load((REPO / "crds" / f"{CRD}.yaml").read_text())
    assert by_kind["CustomResourceDefinition"]["spec"] == generated["spec"]

    no_keep = docs(template(cluster, "t", "lepton-system", "crds.keep=false"))
    crd = next(d for d in no_keep if d["kind"] == "CustomResourceDefinition")
    assert "annotations" not in crd["metadata"]
    assert "CustomResourceDefinition" not in kinds(template(cluster, "t", "lepton-system", "crds.install=false"))
    identity = kinds(template(cluster, "t", "lepton-system", "operator.deploy=false", "crds.install=false"))
    # the operator's ClusterRole and the people's -edit and -view
    assert identity == [
        "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Role", "Role", "RoleBinding",
        "RoleBinding", "ServiceAccount",
    ]  # fmt: skip
    single = docs(template(cluster, "t", "lepton-system", "replicas=1", "leaderElection.enabled=false"))
    dep1 = next(d for d in single if d["kind"] == "Deployment")["spec"]
    assert dep1["replicas"] == 1 and dep1["strategy"] == {"type": "Recreate"}
    assert "PodDisruptionBudget" not in {d["kind"] for d in single}


def test_optional_objects_render(cluster: Cluster) -> None:
    out = kinds(template(cluster, "t", "lepton-system", *ALL_OPTIONAL, "metrics.serviceMonitor.enabled=true"))
    for kind in ("NetworkPolicy", "ServiceMonitor"):
        assert kind in out
    dash = next(
        d for d in docs(template(cluster, "t", "lepton-system", "grafanaDashboard.enabled=true"))
        if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]
    )  # fmt: skip
    board = json.loads(dash["data"]["lepton-operator.json"])
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    for metric in (
        "lepton_trainingjobs", "lepton_trainingjob_restarts_total", "lepton_gpu_hours", "lepton_cost_usd",
        "lepton_reconcile_duration_seconds", "lepton_apply_to_pods_created_seconds", "lepton_failover_duration_seconds",
    ):  # fmt: skip
        assert metric in exprs


@pytest.mark.parametrize("scope", ["cluster", "namespace"])
def test_template_passes_server_side_dry_run(cluster: Cluster, namespace: str, scope: str) -> None:
    sets = [*ALL_OPTIONAL, f"rbac.scope={scope}"]
    if scope == "namespace":
        sets.append(f"rbac.namespace={namespace}")
    manifests = template(cluster, unique_name("dry"), namespace, *sets)
    assert "CustomResourceDefinition" in kinds(manifests)
    res = cluster.kubectl(
        "apply", "--dry-run=server", "--server-side", "--force-conflicts", "--field-manager=chart-dry-run",
        "-f", "-", input=manifests,
    )  # fmt: skip
    applied = [line for line in res.stdout.splitlines() if line.strip()]
    assert len(applied) == len(docs(manifests)), res.stdout
    assert all("(server dry run)" in line for line in applied), res.stdout


# -- install / uninstall ---------------------------------------------------------------------------
@contextmanager
def crd_adoption_lock() -> Iterator[None]:
    """One session at a time adopts the shared CRD into a release (concurrent e2e sessions share the cluster)."""
    path = REPO / "run" / "chart-crd.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def exists(cluster: Cluster, kind: str, name: str, namespace: str | None = None) -> bool:
    args = ["get", kind, name, "--ignore-not-found", "-o", "name"]
    if namespace:
        args += ["-n", namespace]
    return bool(cluster.kubectl(*args).stdout.strip())


def release_objects(fullname: str, namespace: str) -> list[tuple[str, str, str | None]]:
    """What `helm install` with the defaults makes (besides the CRDs), and `helm uninstall` removes."""
    return [
        ("serviceaccount", fullname, namespace),
        ("deployment", fullname, namespace),
        ("service", f"{fullname}-metrics", namespace),
        ("configmap", f"{fullname}-prices", namespace),
        ("role", f"{fullname}-prices", namespace),
        ("rolebinding", f"{fullname}-prices", namespace),
        ("clusterrole", fullname, None),
        ("clusterrolebinding", fullname, None),
        ("clusterrole", f"{fullname}-edit", None),
        ("clusterrole", f"{fullname}-view", None),
    ]


@pytest.mark.usefixtures("crds")
def test_install_creates_everything_and_uninstall_keeps_the_crd(cluster: Cluster, namespace: str) -> None:
    release = unique_name("lo")
    fullname = f"{release}-lepton-operator"
    with crd_adoption_lock():
        # The CRDs exist (crds fixture, other sessions): hand them to this release the way Helm adopts objects.
        for crd in ALL_CRDS:
            cluster.kubectl("label", "crd", crd, "--overwrite", "app.kubernetes.io/managed-by=Helm")
            cluster.kubectl(
                "annotate", "crd", crd, "--overwrite",
                f"meta.helm.sh/release-name={release}", f"meta.helm.sh/release-namespace={namespace}",
            )  # fmt: skip
        job = {
            "apiVersion": "lepton.ai/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "survivor", "namespace": namespace},
            "spec": {"image": "lepton/trainer:test", "replicas": 1, "gpusPerReplica": 0, "suspend": True},
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(job))
        helm(cluster, "install", release, str(CHART), "-n", namespace, "--set", "crds.install=true", "--timeout", "60s")
        try:
            manifest = helm(cluster, "get", "manifest", release, "-n", namespace).stdout
            crd_doc = next(d for d in docs(manifest) if d["kind"] == "CustomResourceDefinition")
            assert crd_doc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            live = cluster.kubectl_json("get", "crd", CRD)
            assert live["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            for kind, name, ns in release_objects(fullname, namespace):
                assert exists(cluster, kind, name, ns), f"{kind}/{name} not created"
            dep = cluster.kubectl_json("get", "deployment", fullname, "-n", namespace)
            # two replicas, one leader (a Lease): a rolling update that never drops below one replica
            assert dep["spec"]["replicas"] == 2
            assert dep["spec"]["strategy"] == {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            }
            assert "lepton-operator" in helm(cluster, "status", release, "-n", namespace).stdout
        finally:
            res = helm(cluster, "uninstall", release, "-n", namespace, "--wait", "--timeout", "60s")
        assert "kept due to the resource policy" in res.stdout + res.stderr, res.stdout + res.stderr
    for kind, name, ns in release_objects(fullname, namespace):
        assert not exists(cluster, kind, name, ns), f"{kind}/{name} left after uninstall"
    assert exists(cluster, "crd", CRD), "the CRD was deleted by helm uninstall"
    assert exists(cluster, "trainingjob", "survivor", namespace), "a TrainingJob was lost with the release"


# -- least privilege -------------------------------------------------------------------------------
def can_i(cluster: Cluster, user: str, verb: str, resource: str, namespace: str | None) -> bool:
    resource, _, sub = resource.partition("/")
    args = ["auth", "can-i", verb, resource, f"--as={user}"]
    if sub:
        args.append(f"--subresource={sub}")
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    res = cluster.kubectl(*args, check=False)
    return res.stdout.strip() == "yes"


NEEDED = [
    ("list", "trainingjobs.lepton.ai"),
    ("watch", "trainingjobs.lepton.ai"),
    ("delete", "trainingjobs.lepton.ai"),
    ("patch", "trainingjobs.lepton.ai/status"),
    ("update", "trainingjobs.lepton.ai/finalizers"),
    ("list", "pods"),
    ("watch", "pods"),
    ("create", "pods"),
    ("delete", "pods"),
    ("list", "services"),
    ("watch", "services"),
    ("create", "services"),
    ("list", "endpointslices.discovery.k8s.io"),
    ("watch", "endpointslices.discovery.k8s.io"),
    ("create", "endpointslices.discovery.k8s.io"),
    ("patch", "endpointslices.discovery.k8s.io"),
    ("create", "events"),
]
FORBIDDEN = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("watch", "secrets"),
    ("create", "pods/exec"),
    ("patch", "pods"),
    ("update", "pods"),
    ("get", "configmaps"),
    ("list", "configmaps"),
    ("watch", "configmaps"),
    ("create", "configmaps"),
    ("delete", "services"),
    ("delete", "endpointslices.discovery.k8s.io"),
    ("update", "endpoints"),
    ("create", "trainingjobs.lepton.ai"),
    ("update", "trainingjobs.lepton.ai"),
    ("patch", "trainingjobs.lepton.ai"),
    ("create", "serviceaccounts/token"),
    ("impersonate", "serviceaccounts"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("update", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    ("patch", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("delete", "nodes"),
    ("patch", "nodes"),
    ("update", "nodes/status"),
    ("create", "pods/eviction"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "namespaces"),
    ("*", "*"),
]


def test_cluster_scope_identity_is_least_privilege(cluster: Cluster, namespace: str) -> None:
    """The identity the e2e operator runs with (tests/e2e/conftest.py): exactly what it needs."""
    sa = apply_identity(cluster)
    user = f"system:serviceaccount:lepton-system:{sa}"
    for ns in (namespace, None):
        for verb, resource in NEEDED:
            assert can_i(cluster, user, verb, resource, ns), f"cannot {verb} {resource} in {ns or 'all namespaces'}"
        for verb, resource in FORBIDDEN:
            assert not can_i(cluster, user, verb, resource, ns), f"may {verb} {resource} in {ns or 'all namespaces'}"
    assert can_i(cluster, user, "list", "nodes", None) and can_i(cluster, user, "watch", "nodes", None)
    assert not can_i(cluster, user, "get", "nodes", None)


@pytest.mark.usefixtures("crds")
def test_people_with_edit_submit_jobs_and_with_view_read_them(cluster: Cluster, namespace: str) -> None:
    """The chart's -edit/-view ClusterRoles reach Kubernetes' default edit/admin/view roles by aggregation."""
    release = unique_name("ur")
    manifests = template(cluster, release, namespace, show_only=("templates/user-roles.yaml",))
    roles = [d["metadata"]["name"] for d in docs(manifests)]
    assert roles == [f"{release}-lepton-operator-edit", f"{release}-lepton-operator-view"]
    cluster.kubectl("apply", "--server-side", f"--field-manager={release}", "-f", "-", input=manifests)
    try:
        for user, role in (("alice", "edit"), ("bob", "view"), ("carol", "admin")):
            cluster.kubectl("create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}", f"--user={user}",
                            "-n", namespace)  # fmt: skip
        # The controller-manager's clusterrole-aggregation controller copies the rules in asynchronously.
        for user in ("alice", "bob", "carol"):
            wait_for(lambda u=user: can_i(cluster, u, "list", "trainingjobs.lepton.ai", namespace), 30,
                     message=f"{user} to read TrainingJobs through aggregation")  # fmt: skip
        wait_for(lambda: can_i(cluster, "alice", "create", "trainingjobs.lepton.ai", namespace), 30,
                 message="alice (edit) to create TrainingJobs")  # fmt: skip
        for user in ("alice", "carol"):
            for verb, resource in (
                ("create", "trainingjobs.lepton.ai"), ("delete", "trainingjobs.lepton.ai"),
                ("patch", "trainingjobs.lepton.ai"), ("update", "trainingjobs.lepton.ai/scale"),
                ("create", "inferenceservices.lepton.ai"), ("get", "trainingjobs.lepton.ai/status"),
            ):  # fmt: skip
                assert can_i(cluster, user, verb, resource, namespace), f"{user} cannot {verb} {resource}"
            assert not can_i(cluster, user, "patch", "trainingjobs.lepton.ai/status", namespace)
        for verb, resource in (("get", "trainingjobs.lepton.ai"), ("watch", "inferenceservices.lepton.ai"),
                               ("get", "trainingjobs.lepton.ai/status")):  # fmt: skip
            assert can_i(cluster, "bob", verb, resource, namespace), f"bob (view) cannot {verb} {resource}"
        for verb, resource in (("create", "trainingjobs.lepton.ai"), ("delete", "trainingjobs.lepton.ai"),
                               ("update", "trainingjobs.lepton.ai/scale")):  # fmt: skip
            assert not can_i(cluster, "bob", verb, resource, namespace), f"bob (view) may {verb} {resource}"
        assert not can_i(cluster, "alice", "create", "trainingjobs.lepton.ai", "default")  # only where bound
    finally:
        cluster.kubectl("delete", "clusterrole", *roles, "--ignore-not-found")


def test_namespace_scope_is_confined_to_its_namespace(cluster: Cluster, namespace: str) -> None:
    release = unique_name("ns")
    helm(
        cluster, "install", release, str(CHART), "-n", namespace, "--set", "rbac.scope=namespace",
        "--set", "operator.deploy=false", "--set", "crds.install=false",
    )  # fmt: skip
    try:
        user = f"system:serviceaccount:{namespace}:{release}-lepton-operator"
        for verb, resource in NEEDED:
            assert can_i(cluster, user, verb, resource, namespace), f"cannot {verb} {resource} in {namespace}"
            assert not can_i(cluster, user, verb, resource, "default"), f"may {verb} {resource} in default"
        for verb, resource in FORBIDDEN:
            assert not can_i(cluster, user, verb, resource, namespace), f"may {verb} {resource} in {namespace}"
        assert not can_i(cluster, user, "list", "pods", None)  # no cluster-wide pod list in this mode
        assert can_i(cluster, user, "list", "nodes", None) and can_i(cluster, user, "watch", "nodes", None)
        assert not can_i(cluster, user, "delete", "nodes", None)
        prices = f"configmap/{release}-lepton-operator-prices"
        ask = ("auth", "can-i", "get", prices, f"--as={user}", "-n", namespace)
        assert cluster.kubectl(*ask, check=False).stdout.strip() == "yes"  # the one ConfigMap, by name
        other = ("auth", "can-i", "get", "configmap/other", f"--as={user}", "-n", namespace)
        assert cluster.kubectl(*other, check=False).stdout.strip() == "no"
    finally:
        helm(cluster, "uninstall", release, "-n", namespace, "--wait")
    wait_for(
        lambda: not exists(cluster, "clusterrole", f"{release}-lepton-operator-nodes"),
        30,
        message="the nodes ClusterRole to go with the release",
    )


def test_operator_runs_a_job_with_the_namespaced_identity(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    """rbac.scope=namespace is enough to run a job: the operator's own log shows no 403 but the expected one."""
    from lepton_cluster.chart import operator_kubeconfig
    from lepton_cluster.jobs import create_job, job_manifest, wait_phase
    from lepton_cluster.operator import OperatorProcess

    release = unique_name("nsop")
    kubeconfig = operator_kubeconfig(
        cluster, tmp_path / "operator.kubeconfig", release, namespace, ("rbac.scope=namespace",)
    )
    proc = OperatorProcess(kubeconfig, tmp_path, env={"LEPTON_NAMESPACES": json.dumps([namespace])})
    proc.start()
    try:
        create_job(cluster, namespace, job_manifest("scoped", replicas=2, minReplicas=1, maxReplicas=2))
        wait_phase(cluster, namespace, "scoped", "Running", timeout=60)
    finally:
        proc.stop()
        cluster.kubectl("delete", "clusterrole,clusterrolebinding", f"{release}-lepton-operator-nodes", check=False)
    log = proc.log_path.read_text()
    forbidden = [line for line in log.splitlines() if " 403" in line or "Forbidden" in line]
    # The one expected refusal: the cluster-wide pod list for free GPUs (elastic sizing falls back).
    assert all("cannot list pods cluster-wide" in line for line in forbidden), "\n".join(forbidden)
    assert "namespaces=['" + namespace + "']" in log
