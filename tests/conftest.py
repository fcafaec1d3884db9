"""Shared fixtures. Unit tests use none of these; e2e tests use `cluster` and `namespace`.

- `cluster` (session): reuses a running local control plane (admin kubeconfig present and /readyz
  ok) or starts one with `Cluster.up()`; it stops the cluster at the end only if it started it
  (and `LEPTON_KEEP_CLUSTER` is not set).
- `namespace` (function): a fresh namespace with its `default` ServiceAccount; deleted afterwards.
- A failing e2e test gets the tail of every component's log in its report.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from lepton_cluster.cluster import Cluster

_started: list[Cluster] = []
# Test namespaces of this pytest session start with this prefix, so an operator started by this session
# (watching "<prefix>-*") never acts on another session's jobs on a shared cluster.
SESSION_PREFIX = os.environ.get("LEPTON_E2E_PREFIX") or f"t{uuid.uuid4().hex[:4]}"
_LOG_LINES = 30


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    from lepton_cluster.cluster import Cluster

    c = Cluster.from_env()
    started = False
    if not c.is_ready():
        c.up()
        started = True
        _started.append(c)
    try:
        yield c
    finally:
        if started and not os.environ.get("LEPTON_KEEP_CLUSTER"):
            c.down()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    from lepton_cluster.testing import create_namespace, delete_namespace, unique_name

    base = request.node.name.split("[")[0].removeprefix("test_").replace("_", "-")[:36].strip("-")
    name = create_namespace(cluster, unique_name(f"{SESSION_PREFIX}-{base}".lower()))
    try:
        yield name
    finally:
        delete_namespace(cluster, name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and item.get_closest_marker("e2e") is not None:
        from lepton_cluster.cluster import Cluster

        c = _started[0] if _started else Cluster.from_env()
        report.sections.append((f"control plane logs (last {_LOG_LINES} lines each)", c.logs_tail(_LOG_LINES)))
    return report
