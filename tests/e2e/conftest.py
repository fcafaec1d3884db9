"""e2e fixtures: the CRDs installed once, and the operator running as a real process."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest
from lepton_cluster.cluster import Cluster
from lepton_cluster.testing import wait_for

from .support import REPO, OperatorProcess

_operators: list[OperatorProcess] = []


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/trainingjobs.lepton.ai")
    # The API server serves the new kind a moment after Established; wait until a list succeeds.
    wait_for(
        lambda: cluster.kubectl("get", "trainingjobs", "-A", check=False).returncode == 0,
        30,
        message="trainingjobs to be served",
    )


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
