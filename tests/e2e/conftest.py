"""e2e fixtures: the CRDs installed once, and the operator running as a real process."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest
from lepton_cluster.cluster import Cluster
from lepton_cluster.jobs import REPO, install_crds
from lepton_cluster.operator import OperatorProcess

_operators: list[OperatorProcess] = []


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    install_crds(cluster)


@pytest.fixture(scope="session")
def operator(cluster: Cluster, crds: None) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(cluster.kubeconfig, REPO / "run" / "e2e")
    proc.start()
    _operators.append(proc)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and _operators:
        report.sections.append(("operator log (last 60 lines)", _operators[0].tail(60)))
    return report
