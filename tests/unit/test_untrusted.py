"""What pods send is untrusted: bad progress fields are left out and reported, oversized replies refused."""

from __future__ import annotations

import json
import math
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from lepton_operator.kube.client import MAX_POD_REPLY, BadReply, fetch_json_from
from lepton_operator.kube.podmetrics import MAX_METRICS, PodScraper
from lepton_operator.reconcile.progress import from_document
from lepton_operator.reconcile.trainingjob import Observed
from lepton_operator.reconcile.trainingjob import plan as decide

from .fakekube import FakeKube, controller
from .jobs import NOW, job_body, make_job, pod, running, wire

KEY = ("ml", "mnist")


@pytest.mark.parametrize(
    ("doc", "kept", "problem"),
    [
        ({"step": -1, "totalSteps": 10}, {"totalSteps": 10}, "step: Input should be greater than or equal to 0"),
        ({"loss": 1e13, "step": 3}, {"step": 3}, "loss: Input should be less than or equal to"),
        ({"step": "x"}, {}, "step: Input should be a valid integer"),
        ({"state": 5, "step": 1}, {"step": 1}, "state: not a string"),
        ({"etaSeconds": math.inf}, {}, "etaSeconds: not a finite number"),
        ({"loss": math.nan}, {}, "loss: not a finite number"),
        ({"exportPath": 7}, {}, "exportPath: Input should be a valid string"),
        ({"testAccuracy": 3.0}, {}, "testAccuracy: Input should be less than or equal to 1"),
        ({"step": 2.0**80}, {}, "step: Input should be less than or equal to"),
        ({"step": 120.0, "totalSteps": 266}, {"step": 120, "totalSteps": 266}, None),  # whole floats are fine
    ],
)
def test_a_bad_progress_field_is_left_out_and_named(
    doc: dict[str, Any], kept: dict[str, Any], problem: str | None
) -> None:
    report = from_document(doc, "endpoint")
    assert report.progress is not None
    got = {k: v for k, v in report.progress.to_wire().items() if k not in ("summary", "source")}
    assert got == kept
    if problem is None:
        assert report.problems == []
    else:
        assert len(report.problems) == 1 and report.problems[0].startswith(f"endpoint: {problem}")


def test_bad_progress_is_a_condition_and_one_event_and_the_pass_goes_on() -> None:
    job = make_job()
    live = {"state": 5, "step": -1, "totalSteps": 100}
    p = decide(job, Observed(running(job), live_progress=live), NOW)
    cond = next(c for c in wire(p)["conditions"] if c["type"] == "InvalidProgress")
    assert cond["status"] == "True" and "step" in cond["message"] and "state" in cond["message"]
    assert wire(p)["phase"] == "Running" and wire(p)["progress"]["totalSteps"] == 100
    assert [e.reason for e in p.events if e.type == "Warning"] == ["InvalidProgress"]
    again = decide(make_job(status=p.status), Observed(running(job), live_progress=live), NOW)
    assert not [e for e in again.events if e.reason == "InvalidProgress"]  # an Event on the transition only
    fixed = decide(make_job(status=p.status), Observed(running(job), live_progress={"step": 5}), NOW)
    assert next(c for c in wire(fixed)["conditions"] if c["type"] == "InvalidProgress")["status"] == "False"


def test_a_failed_worker_with_a_hostile_termination_message_still_fails_over() -> None:
    job = make_job(status={"restartEpoch": 0, "restarts": 0, "replicas": 2, "launched": True})
    crashed = pod(job, 0, 0, "Failed", exit_code=137, message=json.dumps({"step": -5, "loss": "big", "state": []}))
    p = decide(job, Observed([crashed, pod(job, 0, 1)]), NOW)
    assert wire(p)["restartEpoch"] == 1 and wire(p)["lastFailure"]["pod"] == "mnist-0-0"


async def test_prices_the_crd_once_let_through_are_an_invalid_spec_not_a_crash_loop() -> None:
    kube = FakeKube()
    bad = {"gpus": {"NVIDIA-L4": {"onDemand": 1.0, "relativeSpeed": 0}}}
    ctl = controller(kube, job_body(prices=bad), running(make_job()))
    assert await ctl.reconcile(KEY) is None  # no retry: nothing changes until the spec does
    stored = kube.stored[KEY]["status"]
    cond = next(c for c in stored["conditions"] if c["type"] == "InvalidSpec")
    assert cond["status"] == "True" and "spec.prices.gpus.NVIDIA-L4.relativeSpeed" in cond["message"]
    assert ("create Event", "InvalidSpec") in kube.calls


def pod_app() -> web.Application:
    """A pod's HTTP endpoints: too large (with and without Content-Length), not an object, not JSON, fine."""

    async def big(_: web.Request) -> web.Response:
        return web.Response(body=b"{" + b" " * MAX_POD_REPLY + b"}", content_type="application/json")

    async def streamed(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()  # chunked: no Content-Length to refuse it by
        await resp.prepare(request)
        for _ in range(MAX_POD_REPLY // 1024 + 2):
            await resp.write(b" " * 1024)
        return resp

    async def listed(_: web.Request) -> web.Response:
        return web.json_response([1, 2])

    async def text(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"step": 1})

    app = web.Application()
    for path, handler in (("/big", big), ("/streamed", streamed), ("/list", listed), ("/text", text), ("/ok", ok)):
        app.router.add_get(path, handler)
    return app


@pytest.mark.parametrize("path", ["/big", "/streamed", "/list", "/text"])
async def test_a_pods_reply_is_bounded_and_must_be_a_json_object(path: str) -> None:
    async with TestServer(pod_app(), host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        base = str(server.make_url(""))
        with pytest.raises(BadReply):
            await fetch_json_from(session, base + path, 2.0)
        assert await fetch_json_from(session, base + "/ok", 2.0) == {"step": 1}
        assert await fetch_json_from(session, base + "/missing", 2.0) is None


async def test_a_model_servers_oversized_or_odd_answers_count_as_no_answer() -> None:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text="lepton_serve_model_ready 0\n")

    async def huge(_: web.Request) -> web.Response:
        return web.Response(text="# " + "x" * MAX_METRICS + "\n")

    async def ready(_: web.Request) -> web.Response:
        return web.json_response(["not", "an", "object"])

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v2/health/ready", ready)
    scraper = PodScraper(timeout=2.0)
    async with TestServer(app, host="127.0.0.1") as server:
        report = await scraper.scrape("127.0.0.1", server.port or 0, want_version=True)
        assert report is not None and not report.loaded and report.reason == ""
    huge_app = web.Application()
    huge_app.router.add_get("/metrics", huge)
    async with TestServer(huge_app, host="127.0.0.1") as server:
        assert await scraper.scrape("127.0.0.1", server.port or 0, want_version=False) is None
    await scraper.close()
