"""The TrainingJob controller's apply step against a fake API: what is written, in which order, what a failure does."""

from __future__ import annotations

import aiohttp
from lepton_operator.kube.errors import ApiError

from .fakekube import FakeKube, controller
from .jobs import job_body, make_job, running

KEY = ("ml", "mnist")


async def test_events_are_best_effort_a_failed_post_neither_fails_nor_retries_the_pass() -> None:
    def fault(verb: str, obj: dict) -> Exception | None:
        if obj.get("kind") != "Event":
            return None
        return (
            ApiError(500, "POST", "events", "etcd timeout")
            if obj["reason"] == "AllScheduled"
            else aiohttp.ClientError()
        )

    kube = FakeKube(fault)
    ctl = controller(kube, job_body(), running(make_job()))
    requeue = await ctl.reconcile(KEY)
    assert ("create Event", "AllWorkersRunning") in kube.calls  # the next Event is still tried
    assert kube.stored[KEY]["status"]["phase"] == "Running"
    assert KEY not in ctl._failures and requeue == 30.0  # the cost refresh, not a retry
