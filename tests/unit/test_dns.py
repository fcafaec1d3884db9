"""The workers' DNS (reconcile/dns.py): which EndpointSlices a pass creates or rewrites, given the pods."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from lepton_operator.api.trainingjob import TrainingJob
from lepton_operator.builders.trainingjob import SLICE_CAPACITY
from lepton_operator.reconcile import dns
from lepton_operator.reconcile.plan import Observed, Plan
from lepton_operator.reconcile.trainingjob import plan as decide
from lepton_operator.reconcile.trainingjob import rfc3339
from lepton_operator.reconcile.views import PodView

from .jobs import NOW, make_job, pod


def addressed(job: TrainingJob, epoch: int, rank: int, phase: str = "Running", ip: str | None = None) -> PodView:
    return pod(job, epoch, rank, phase, extra={"podIP": ip or f"198.19.{epoch}.{rank + 2}"})


def publish(job: TrainingJob, pods: list[PodView], epoch: int = 0, published: dns.Published | None = None) -> Plan:
    p = Plan()
    dns.publish(job, pods, epoch, published or {}, p)
    return p


def test_workers_without_an_address_need_no_slice_yet() -> None:
    job = make_job()
    p = publish(job, [pod(job, 0, 0, "Pending"), pod(job, 0, 1, "Pending")])
    assert p.create == [] and p.endpoints == {}


def test_the_first_addresses_create_the_slice_with_every_addressed_worker_by_name() -> None:
    job = make_job(replicas=3)
    p = publish(job, [addressed(job, 0, 2), pod(job, 0, 1, "Pending"), addressed(job, 0, 0)])
    [created] = p.create
    assert created["kind"] == "EndpointSlice" and created["metadata"]["name"] == "mnist-dns-0"
    assert [(e["hostname"], e["addresses"]) for e in created["endpoints"]] == [
        ("mnist-0-0", ["198.19.0.2"]),
        ("mnist-0-2", ["198.19.0.4"]),
    ]
    assert p.endpoints == {}


def test_a_slice_as_wanted_is_not_written_again_and_a_changed_one_is_rewritten() -> None:
    job = make_job()
    pods = [addressed(job, 0, 0), addressed(job, 0, 1)]
    first = publish(job, pods).create[0]
    seen = {"mnist-dns-0": dns.fingerprint(first)}
    again = publish(job, pods, published=seen)
    assert again.create == [] and again.endpoints == {}
    moved = publish(job, [pods[0], addressed(job, 0, 1, ip="198.19.0.9")], published=seen)
    assert moved.create == []
    rewritten = (("mnist-0-0", "198.19.0.2", "gpu-0"), ("mnist-0-1", "198.19.0.9", "gpu-0"))
    assert moved.endpoints == {"mnist-dns-0": rewritten}


@pytest.mark.parametrize(
    ("why", "gone"),
    [
        ("an older epoch's worker", lambda job: addressed(job, 0, 1)),
        ("a worker being deleted", lambda job: replace(addressed(job, 1, 1), deleting=True)),
        ("a finished worker", lambda job: addressed(job, 1, 1, "Failed")),
        ("a pod whose name is no DNS label", lambda job: replace(addressed(job, 1, 1), name="Mnist.1.1")),
    ],
)
def test_only_the_current_epochs_live_workers_are_published(why: str, gone: object) -> None:
    job = make_job()
    p = publish(job, [addressed(job, 1, 0), gone(job)], epoch=1)  # type: ignore[operator]
    assert [e["hostname"] for e in p.create[0]["endpoints"]] == ["mnist-1-0"], why


def test_addresses_an_endpoint_slice_may_not_hold_get_no_record_and_ipv6_ones_their_own_slice() -> None:
    job = make_job(replicas=4)
    pods = [
        addressed(job, 0, 0, ip="127.0.0.5"),  # a kwok pod: loopback
        addressed(job, 0, 1, ip="169.254.3.4"),
        addressed(job, 0, 2, ip="fd00::7"),
        addressed(job, 0, 3, ip="not-an-ip"),
    ]
    [created] = publish(job, pods).create
    assert created["metadata"]["name"] == "mnist-dns6-0" and created["addressType"] == "IPv6"
    assert [e["addresses"] for e in created["endpoints"]] == [["fd00::7"]]
    assert publish(job, pods[:2]).create == []


def test_workers_all_gone_empty_the_slice_once() -> None:
    job = make_job()
    p = publish(job, [], published={"mnist-dns-0": hash((("mnist-0-0", "198.19.0.2", "gpu-0"),))})
    assert p.endpoints == {"mnist-dns-0": ()} and p.create == []
    assert publish(job, [], published={"mnist-dns-0": dns.EMPTY}).endpoints == {}


def test_more_workers_than_a_slice_holds_are_split_over_slices() -> None:
    job = make_job(replicas=1024)
    pods = [addressed(job, 0, r, ip=f"198.19.{r // 250}.{r % 250 + 1}") for r in range(1024)]
    p = publish(job, pods)
    sizes = {o["metadata"]["name"]: len(o["endpoints"]) for o in p.create}
    assert sizes == {"mnist-dns-0": SLICE_CAPACITY, "mnist-dns-1": 1024 - SLICE_CAPACITY}


def test_a_pass_publishes_the_epochs_addresses_and_a_job_deleted_after_its_ttl_does_not() -> None:
    job = make_job()
    p = decide(job, Observed([addressed(job, 0, 0), addressed(job, 0, 1)], True), NOW)
    assert [o["kind"] for o in p.create] == ["EndpointSlice"]
    done = {
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}],
        "completionTime": rfc3339(NOW - timedelta(seconds=60)),
        "phase": "Succeeded",
    }
    ended = make_job(status=done, ttlSecondsAfterFinished=30)
    seen = {"mnist-dns-0": hash((("mnist-0-0", "198.19.0.2", "gpu-0"),))}
    p = decide(ended, Observed([addressed(ended, 0, 0, "Succeeded")], True, seen), NOW)
    assert p.delete_job and p.endpoints == {} and p.create == []
