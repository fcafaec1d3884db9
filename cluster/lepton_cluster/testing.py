"""Helpers for tests against the local control plane (used by tests/conftest.py and e2e tests).

Importing this module does not import the Kubernetes client; only the functions that need it do.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .config import GPU_RESOURCE, GPU_TAINT_KEY, SPOT_TAINT_KEY

if TYPE_CHECKING:
    from .cluster import Cluster

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """`wait_for` ran out of time; the message says what was awaited and what was last seen."""


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.1,
    message: str | Callable[[], str] = "",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `predicate` every `interval` s until it returns something truthy, and return that.

    Raises `WaitTimeout` after `timeout` s, with `message` (a string, or a callable evaluated then
    for fresh context) and the last value or exception seen. Exceptions of the `ignore` types count
    as "not yet"; any other exception propagates at once.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except ignore as e:
            last = e
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise WaitTimeout(f"timed out after {timeout} s waiting for {text or predicate!r}; last seen: {last!r}")
        time.sleep(interval)


def holds_for(predicate: Callable[[], object], duration: float, interval: float = 0.1, message: str = "") -> None:
    """Assert that `predicate` stays truthy for `duration` s (for "nothing overwrites it" checks)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        value = predicate()
        if not value:
            raise AssertionError(f"{message or predicate!r} stopped holding: {value!r}")
        time.sleep(interval)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when a local endpoint (a probe such as /healthz or /readyz) answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


# -- namespaces ----------------------------------------------------------------------------
def create_namespace(cluster: Cluster, name: str, timeout: float = 30.0) -> str:
    """Create a namespace and wait for its `default` ServiceAccount (pods need it)."""
    from kubernetes.client.exceptions import ApiException

    core = cluster.core
    core.create_namespace({"metadata": {"name": name, "labels": {"lepton.ai/e2e": "true"}}})

    def has_sa() -> bool:
        try:
            core.read_namespaced_service_account("default", name)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    wait_for(has_sa, timeout, message=f"ServiceAccount {name}/default")
    return name


def delete_namespace(cluster: Cluster, name: str, wait: bool = False, timeout: float = 60.0) -> None:
    """Delete a namespace. Pods are force-deleted first, so pods on nodes kwok no longer manages
    (a NotReady node) cannot keep the namespace Terminating."""
    from kubernetes.client.exceptions import ApiException

    core = cluster.core
    try:
        for pod in core.list_namespaced_pod(name).items:
            try:
                core.delete_namespaced_pod(pod.metadata.name, name, grace_period_seconds=0)
            except ApiException as e:
                if e.status != 404:
                    raise
        core.delete_namespace(name)
    except ApiException as e:
        if e.status != 404:
            raise
        return
    if wait:

        def gone() -> bool:
            try:
                core.read_namespace(name)
            except ApiException as e:
                if e.status == 404:
                    return True
                raise
            return False

        wait_for(gone, timeout, interval=0.2, message=f"namespace {name} to be deleted")


# -- objects -------------------------------------------------------------------------------
GPU_TOLERATION = {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
SPOT_TOLERATION = {"key": SPOT_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}


def pod_manifest(
    name: str,
    *,
    gpus: int = 0,
    image: str = "lepton/trainer:test",
    labels: Mapping[str, str] | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
    tolerate_spot: bool = False,
    node_name: str | None = None,
) -> dict[str, Any]:
    """A one-container pod that tolerates the GPU taint (every simulated node has it)."""
    resources: dict[str, Any] = {"requests": {"cpu": "100m", "memory": "128Mi"}}
    if gpus:
        resources["limits"] = {GPU_RESOURCE: str(gpus)}
    tols = [GPU_TOLERATION, *(tolerations or [])]
    if tolerate_spot:
        tols.append(SPOT_TOLERATION)
    spec: dict[str, Any] = {
        "containers": [{"name": "main", "image": image, "resources": resources}],
        "tolerations": tols,
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 5,
    }
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if node_name:
        spec["nodeName"] = node_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": spec,
    }


def pod_condition(pod: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None
