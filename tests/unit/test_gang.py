"""Gang scheduling: the epoch's PodGroup and its members (builders), the decision per mode (reconcile), the
discovery of the PodGroup API (kube) and the controller creating the group (handlers)."""

from __future__ import annotations

from typing import Any

import pytest
from lepton_operator.builders.gang import join, pod_group
from lepton_operator.builders.trainingjob import worker_pod
from lepton_operator.kube import discovery
from lepton_operator.kube.discovery import GangDiscovery
from lepton_operator.kube.errors import ApiError
from lepton_operator.reconcile.plan import Observed
from lepton_operator.reconcile.trainingjob import plan

from .fakekube import FakeKube, controller
from .jobs import NOW, job_body, make_job, pod

KEY = ("ml", "mnist")
V1BETA1 = "/apis/scheduling.k8s.io/v1beta1"
SERVED = {"kind": "APIResourceList", "resources": [{"name": "workloads"}, {"name": "podgroups"}]}


def created(p: Any, kind: str) -> list[dict[str, Any]]:
    return [o for o in p.create if o["kind"] == kind]


def condition(p: Any, type_: str) -> Any:
    return next((c for c in (p.status.conditions if p.status else []) if c.type == type_), None)


def test_pod_group_is_the_epochs_gang_owned_by_the_job() -> None:
    job = make_job(replicas=4)
    group = pod_group(job, 3, 4)
    assert group["apiVersion"] == "scheduling.k8s.io/v1beta1" and group["kind"] == "PodGroup"
    meta = group["metadata"]
    assert (meta["name"], meta["namespace"]) == ("mnist-3", "ml")
    assert meta["labels"]["lepton.ai/job-name"] == "mnist" and meta["labels"]["lepton.ai/restart-epoch"] == "3"
    (owner,) = meta["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("TrainingJob", "mnist", "uid-1", True)
    assert group["spec"] == {"schedulingPolicy": {"gang": {"minCount": 4}}, "disruptionMode": {"all": {}}}


def test_topology_key_becomes_the_groups_topology_constraint() -> None:
    group = pod_group(make_job(replicas=2, topologyKey="topology.kubernetes.io/zone"), 0, 2)
    assert group["spec"]["schedulingConstraints"] == {"topology": [{"key": "topology.kubernetes.io/zone"}]}


def test_a_member_names_its_group_in_spec_scheduling_group() -> None:
    job = make_job()
    pod = join(worker_pod(job, 0, 1, 2), "mnist-0")
    assert pod["spec"]["schedulingGroup"] == {"podGroupName": "mnist-0"}
    assert "schedulingGroup" not in worker_pod(job, 0, 1, 2)["spec"]


def test_served_each_epoch_creates_its_group_first_and_every_worker_joins_it() -> None:
    job = make_job(replicas=4)
    p = plan(job, Observed([], gang="podgroup"), NOW)
    (group,) = created(p, "PodGroup")
    assert p.create.index(group) < min(p.create.index(o) for o in created(p, "Pod"))
    assert group["metadata"]["name"] == "mnist-0" and group["spec"]["schedulingPolicy"]["gang"]["minCount"] == 4
    assert [o["spec"]["schedulingGroup"]["podGroupName"] for o in created(p, "Pod")] == ["mnist-0"] * 4
    cond = condition(p, "GangScheduling")
    assert (cond.status, cond.reason) == ("True", "PodGroup") and "minCount 4" in cond.message
    assert [e.reason for e in p.events] == ["PodGroup"]  # said once, on the transition


def test_a_group_whose_create_failed_is_created_again_while_its_workers_wait() -> None:
    """Found by bench/chaos.py: the API server failed the PodGroup's create (500) but not its pods'; the next pass
    had no missing pod, so no group, and the workers waited for it forever (the job stayed Restarting)."""
    job = make_job(replicas=2, status={"restartEpoch": 1, "replicas": 2, "launched": True, "phase": "Restarting"})
    waiting = [pod(job, 1, r, "Pending") for r in range(2)]
    p = plan(job, Observed(waiting, gang="podgroup"), NOW)
    assert [o["metadata"]["name"] for o in p.create] == ["mnist-1"] and not created(p, "Pod")
    bound = [pod(job, 1, 0, "Pending", node="gpu-0"), pod(job, 1, 1, "Running")]
    assert not plan(job, Observed(bound, gang="podgroup"), NOW).create  # all bound: the group did its work


def test_an_elastic_epoch_gets_a_new_group_of_its_own_world_size() -> None:
    status = {"restartEpoch": 2, "replicas": 3, "phase": "Restarting"}
    job = make_job(status, replicas=4, minReplicas=2, maxReplicas=4)
    p = plan(job, Observed([], gang="podgroup", capacity=3), NOW)
    (group,) = created(p, "PodGroup")
    assert group["metadata"]["name"] == "mnist-2" and len(created(p, "Pod")) == 3
    assert group["spec"]["schedulingPolicy"]["gang"]["minCount"] == 3


def test_unserved_workers_are_created_as_today_and_the_condition_says_why_once() -> None:
    job = make_job(replicas=4, topologyKey="rack")
    p = plan(job, Observed([], gang="unserved"), NOW)
    assert not created(p, "PodGroup") and len(created(p, "Pod")) == 4
    assert all("schedulingGroup" not in o["spec"] for o in created(p, "Pod"))
    cond = condition(p, "GangScheduling")
    assert (cond.status, cond.reason) == ("False", "APINotServed") and "spec.topologyKey is not applied" in cond.message
    assert not p.events  # no Event: the condition says it; the next pass changes nothing
    again = plan(job.model_copy(update={"status": p.status}), Observed([], gang="unserved"), NOW)
    assert not again.events


def test_disabled_in_the_operator_no_group_and_no_condition() -> None:
    p = plan(make_job(replicas=2), Observed([], gang="disabled"), NOW)
    assert not created(p, "PodGroup") and condition(p, "GangScheduling") is None


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({V1BETA1: SERVED}, "podgroup"),
        ({}, "unserved"),
        ({V1BETA1: {"resources": [{"name": "workloads"}]}}, "unserved"),
    ],
)
async def test_discovery_reads_the_group_version_once_and_caches_it(answers: dict[str, Any], expected: str) -> None:
    kube = FakeKube()
    kube.discovery = answers
    found = GangDiscovery(kube)
    assert [await found.mode(), await found.mode()] == [expected, expected]
    assert kube.calls == [("GET", V1BETA1)]


async def test_discovery_asks_again_after_its_ttl_and_not_at_all_when_disabled() -> None:
    kube = FakeKube()
    found = GangDiscovery(kube, ttl=0.0)
    assert await found.mode() == "unserved"
    kube.discovery = {V1BETA1: SERVED}  # the cluster was upgraded
    assert await found.mode() == "podgroup"
    off = FakeKube()
    assert await GangDiscovery(off, enabled=False).mode() == "disabled" and not off.calls


async def test_a_failed_discovery_is_unserved_for_a_short_while_never_an_error() -> None:
    class Failing(FakeKube):
        async def request(self, method: str, path: str, *, ok: tuple[int, ...] = ()) -> tuple[int, dict[str, Any]]:
            self.calls.append((method, path))
            raise ApiError(503, method, path, "aggregated API unavailable")

    kube = Failing()
    now = [0.0]
    found = GangDiscovery(kube, ttl=3600, clock=lambda: now[0])
    assert await found.mode() == "unserved"
    now[0] = discovery.RETRY - 1
    assert await found.mode() == "unserved" and len(kube.calls) == 1
    now[0] = discovery.RETRY + 1  # RETRY seconds later, long before the TTL
    assert await found.mode() == "unserved" and len(kube.calls) == 2


async def test_the_controller_creates_the_group_and_members_where_the_api_is_served() -> None:
    kube = FakeKube()
    kube.discovery = {V1BETA1: SERVED}
    ctl = controller(kube, job_body(replicas=2))
    await ctl.reconcile(KEY)
    creates = [c for c in kube.calls if c[0].startswith("create ") and c[0] != "create Event"]
    assert creates[0] == ("create PodGroup", "mnist-0")
    assert {name for verb, name in creates if verb == "create Pod"} == {"mnist-0-0", "mnist-0-1"}
    assert all(p["spec"]["schedulingGroup"] == {"podGroupName": "mnist-0"} for p in kube.pods.values())
    conditions = {c["type"]: c["status"] for c in kube.stored[KEY]["status"]["conditions"]}
    assert conditions["GangScheduling"] == "True" and ("create Event", "PodGroup") in kube.calls
