"""Fuzz: what pods and nodes report (progress documents, termination messages, pod and node status, a server's
/metrics) through the operator's parsers and the decisions that read them. Never an exception they do not
document; what they keep fits the status schema."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import example, given
from hypothesis import strategies as st
from lepton_operator.api.trainingjob_status import Progress
from lepton_operator.kube.client import MAX_POD_REPLY, BadReply, fetch_json_from
from lepton_operator.kube.podmetrics import INFLIGHT, INFLIGHT_SECONDS, MODEL_READY, parse_metrics
from lepton_operator.reconcile.autoscale import Policy, Sample, decide
from lepton_operator.reconcile.progress import from_document, parse_json
from lepton_operator.reconcile.views import node_view, pod_view
from lepton_operator.untrusted import loads

from .strategies import FUZZ, HOSTILE, JSON, QUANTITIES, TEXT, raw_pod

PROGRESS_KEYS = st.sampled_from(
    ["step", "totalSteps", "epoch", "loss", "samplesPerSecond", "etaSeconds", "lastCheckpointStep", "testAccuracy",
     "exportPath", "state", "summary", "source", "extra"]
)  # fmt: skip
DEEP = "[" * 5000 + "]" * 5000  # far deeper than the interpreter's recursion limit


@given(doc=st.dictionaries(PROGRESS_KEYS, HOSTILE, max_size=8))
@example(doc={"step": 2**80, "loss": math.nan, "state": {"a": []}, "exportPath": "é" * 5000})
@FUZZ
def test_a_progress_document_keeps_only_valid_fields_and_never_raises(doc: dict[str, Any]) -> None:
    report = from_document(doc, "endpoint")
    assert report.progress is not None
    wire = report.progress.to_wire()
    json.dumps(wire, allow_nan=False)
    assert Progress.model_validate(wire).to_wire() == wire  # what is kept fits the status schema
    assert all(p.startswith("endpoint: ") for p in report.problems)


@given(text=st.one_of(TEXT, JSON.map(json.dumps), st.text(alphabet='{[]}":,0 ', max_size=4096)))
@example(text='{"a":' + DEEP)
@example(text="{" + '"a":{' * 3000)
@FUZZ
def test_a_termination_message_is_an_object_or_plain_text(text: str) -> None:
    """The kubelet keeps up to 4 KiB of whatever the container wrote."""
    doc = parse_json(text)
    assert doc is None or isinstance(doc, dict)


@given(data=st.binary(max_size=256) | JSON.map(lambda v: json.dumps(v).encode()))
@example(data=DEEP.encode())
@example(data=b"\xff\xfe{}")
@FUZZ
def test_untrusted_json_is_parsed_or_refused_with_a_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        loads(data)


async def test_a_pods_reply_nested_too_deep_is_a_bad_reply() -> None:
    """Regression: a /progress reply of 64 KiB of brackets raised RecursionError out of the pass."""

    async def deep(_: web.Request) -> web.Response:
        return web.Response(body=b"[" * (MAX_POD_REPLY - 10), content_type="application/json")

    app = web.Application()
    app.router.add_get("/progress", deep)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        with pytest.raises(BadReply, match="not JSON"):
            await fetch_json_from(session, str(server.make_url("/progress")), 2.0)


@given(raw=raw_pod())
@FUZZ
def test_a_pod_of_any_status_has_a_view(raw: dict[str, Any]) -> None:
    view = pod_view(raw)
    assert view.epoch >= -1 and view.rank >= -1


NODE_STATUS = st.fixed_dictionaries(
    {},
    optional={
        "allocatable": st.dictionaries(st.sampled_from(["nvidia.com/gpu", "cpu"]), QUANTITIES | st.just("1k")),
        "conditions": st.lists(
            st.fixed_dictionaries({"type": st.just("Ready"), "status": st.sampled_from(["True", "False", "Unknown"])}),
            max_size=1,
        ),
    },
)


@given(status=NODE_STATUS, taints=st.lists(st.fixed_dictionaries({"key": TEXT, "effect": TEXT}), max_size=3))
@example(status={"allocatable": {"nvidia.com/gpu": "1k"}}, taints=[])  # 1000 GPUs, as the API server renders it
@FUZZ
def test_a_node_of_any_allocatable_has_a_view(status: dict[str, Any], taints: list[dict[str, Any]]) -> None:
    view = node_view({"metadata": {"name": "n"}, "spec": {"taints": taints}, "status": status})
    assert view.gpus >= 0


METRIC_VALUE = st.sampled_from(["NaN", "+Inf", "-Inf", "-1", "1e400", "0", "1", "3.5"]) | st.floats().map(repr)


@given(
    values=st.tuples(METRIC_VALUE, METRIC_VALUE, METRIC_VALUE),
    noise=st.text(max_size=200),
)
@example(values=("+Inf", "NaN", "1"), noise="")
@FUZZ
def test_a_servers_metrics_give_finite_non_negative_figures_or_a_value_error(
    values: tuple[str, str, str], noise: str
) -> None:
    seconds, inflight, ready = values
    text = (
        f"# TYPE {INFLIGHT_SECONDS} counter\n{INFLIGHT_SECONDS}_total {seconds}\n"
        f"# TYPE {INFLIGHT} gauge\n{INFLIGHT} {inflight}\n# TYPE {MODEL_READY} gauge\n{MODEL_READY} {ready}\n"
    )
    for body in (text, noise, text + noise):
        try:
            got_seconds, got_inflight, _ = parse_metrics(body)
        except ValueError:
            continue
        assert all(math.isfinite(x) and x >= 0 for x in (got_seconds, got_inflight))


@given(
    samples=st.lists(
        st.builds(Sample, st.floats(0, 1000), st.floats(0, 1e308), st.floats(0.001, 100)), min_size=0, max_size=20
    ),
    current=st.integers(1, 256),
    ready=st.integers(0, 300),
    target=st.floats(1e-300, 10000, exclude_min=True),
)
@example(samples=[Sample(999.0, 1e300)], current=1, ready=1, target=1e-10)
@FUZZ
def test_the_autoscaler_decides_within_bounds_for_any_finite_load(
    samples: list[Sample], current: int, ready: int, target: float
) -> None:
    """Any finite, non-negative load (what parse_metrics lets through) against any target the CRD admits."""
    policy = Policy(target=target, stable_window=60, panic_window=6, min_replicas=1, max_replicas=256)
    d = decide(samples, 1000.0, current, ready, policy, None)
    assert 1 <= d.replicas <= 256
