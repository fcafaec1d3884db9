"""e2e fixtures: the CRDs installed once, and the operator running as a real process.

The operator always runs with the Helm chart's identity: the chart's ServiceAccount and RBAC are applied once
per session (release `lepton-e2e` in `lepton-system`, rendered by `helm template` with the Deployment off), and
the operator gets a kubeconfig holding a token of that ServiceAccount. A permission the chart lacks shows up as
a 403 in run/e2e/operator.log and a failing scenario: least privilege, proven on the real scenarios.
The CRDs come from crds/ (the `crds` fixture), never from a Helm release: no uninstall can remove them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from lepton_cluster.chart import operator_kubeconfig
from lepton_cluster.cluster import Cluster
from lepton_cluster.incluster import TRAINER_IMAGE, load_images
from lepton_cluster.jobs import REPO, install_crds
from lepton_cluster.operator import OperatorProcess

from ..conftest import SESSION_PREFIX

_operators: list[OperatorProcess] = []


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    install_crds(cluster)


@pytest.fixture(scope="session")
def operator_identity(cluster: Cluster) -> Iterator[Path]:
    """A kubeconfig of the chart's ServiceAccount (one per session: it holds this session's token)."""
    path = REPO / "run" / "e2e" / f"operator-sa-{os.getpid()}.kubeconfig"
    operator_kubeconfig(cluster, path)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def operator_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Only this session's namespaces (other sessions sharing the cluster run operators of their own); hostPath
    volumes under the folders the tests use: the repo's run/ and pytest's tmp dirs (real nodes), and the
    kwok nodes' simulated paths of the examples and serving tests."""
    allowed = [str(REPO / "run"), str(tmp_path_factory.getbasetemp()), "/var/lib/lepton", "/srv/models"]
    return {
        "LEPTON_NAMESPACES": json.dumps([f"{SESSION_PREFIX}-*"]),
        "LEPTON_ALLOWED_HOSTPATH_PREFIXES": json.dumps(allowed),
    }


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, crds: None, operator_identity: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(operator_identity, REPO / "run" / "e2e", env=operator_env(tmp_path_factory))
    proc.start()
    _operators.append(proc)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def trainer_image(cluster: Cluster) -> str:
    """localhost/lepton-trainer:dev in every real node's containerd (built if needed; skipped per node
    when its digest is there already)."""
    assert cluster.real_node_names, "this test needs the real nodes (LEPTON_REAL_NODES >= 2)"
    return load_images(cluster, names=[TRAINER_IMAGE])[TRAINER_IMAGE].ref


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and _operators:
        report.sections.append(("operator log (last 60 lines)", _operators[0].tail(60)))
    return report
