"""Overload and failure on the real server: a full queue sheds with 503 + Retry-After, a long wait times out,
and a dead batcher turns readiness and liveness to 503 and answers requests at once instead of hanging."""

from __future__ import annotations

import concurrent.futures as cf
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from lepton_trainer.serve.app import BatchingConfig, Server
from lepton_trainer.serve.limits import Limits
from lepton_trainer.serve.model import ServedModel
from lepton_trainer.serve.protocol import protocol

from .support import ServerProcess, free_port, http_json, infer_body, metric_value, post_raw

ROW = [0.5] * 64


def infer(url: str, timeout: float = 30) -> tuple[int, dict[str, str], dict[str, Any], float]:
    t0 = time.monotonic()
    code, headers, body = post_raw(f"{url}/v2/models/digits/infer", _body(), timeout=timeout)
    return code, headers, body, time.monotonic() - t0


def _body() -> bytes:
    return json.dumps(infer_body([ROW])).encode()


@pytest.mark.timeout(120)
def test_a_full_queue_sheds_with_503_and_retry_after(
    digits_export: tuple[Path, dict[str, Any]], servers: list[ServerProcess], tmp_path: Path
) -> None:
    """200 ms per pass, one request per pass, at most 2 admitted: of 10 at once, the surplus is shed at once."""
    args = [
        "--simulated-latency-ms",
        "200",
        "--max-batch-size",
        "1",
        "--max-queue-batches",
        "2",
        "--queue-timeout",
        "30",
    ]
    s = ServerProcess(digits_export[0], tmp_path / "server.log", *args)
    servers.append(s)
    s.wait_up()
    with cf.ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(lambda _: infer(s.url), range(10)))
    shed = [r for r in replies if r[0] == 503]
    assert {r[0] for r in replies} == {200, 503} and len(shed) >= 6, [r[:3] for r in replies]
    for _code, headers, body, seconds in shed:
        assert headers["retry-after"] == "1" and "2 requests are already waiting" in body["error"]
        assert seconds < 2, seconds  # refused at once, not after waiting
    page = s.metrics()
    assert metric_value(page, 'lepton_serve_requests_total{model="digits",status="503"}') == len(shed)
    assert metric_value(page, 'lepton_serve_http_responses_total{status="503"}') >= len(shed)
    assert infer(s.url)[0] == 200


@pytest.mark.timeout(120)
def test_a_request_waiting_too_long_gets_503(
    digits_export: tuple[Path, dict[str, Any]], servers: list[ServerProcess], tmp_path: Path
) -> None:
    args = ["--simulated-latency-ms", "1500", "--max-batch-size", "1", "--queue-timeout", "0.5"]
    s = ServerProcess(digits_export[0], tmp_path / "server.log", *args)
    servers.append(s)
    s.wait_up()
    code, headers, body, seconds = infer(s.url)
    assert code == 503 and "no result within 0.5 s" in body["error"] and headers["retry-after"] == "1"
    assert seconds < 1.4, seconds


@pytest.fixture
def in_process(digits_export: tuple[Path, dict[str, Any]]) -> Iterator[tuple[Server, str]]:
    """The app on a uvicorn in this process (127.0.0.1), so a test can break its batcher."""
    server = Server(ServedModel("digits", digits_export[0]), BatchingConfig(8, 2.0), Limits(queue_timeout=30))
    port = free_port()
    config = uvicorn.Config(
        server.app, host="127.0.0.1", port=port, http=protocol(10), log_level="warning", lifespan="on"
    )
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while server.model.state != "Ready":
        assert time.monotonic() < deadline, "model not loaded"
        time.sleep(0.05)
    try:
        yield server, url
    finally:
        runner.should_exit = True
        thread.join(30)


@pytest.mark.timeout(120)
def test_a_dead_batcher_fails_readiness_and_liveness_and_requests_get_503_at_once(
    in_process: tuple[Server, str],
) -> None:
    server, url = in_process
    assert infer(url)[0] == 200

    def broken(requests: int, rows: int) -> None:
        raise RuntimeError("simulated bug")

    server.batcher.on_batch = broken
    code, _, body, _ = infer(url, timeout=10)
    assert code == 503 and "the batcher stopped: RuntimeError: simulated bug" in body["error"], body
    code, ready = http_json(f"{url}/v2/health/ready")
    assert code == 503 and ready["state"] == "Failed" and "batcher stopped" in ready["reason"]
    code, live = http_json(f"{url}/v2/health/live")
    assert code == 503 and live["live"] is False  # the kubelet restarts the pod
    code, _, body, seconds = infer(url, timeout=10)
    assert code == 503 and seconds < 1, (body, seconds)
    page = http_get_text(f"{url}/metrics")
    assert metric_value(page, "lepton_serve_model_ready") == 0


def http_get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


@pytest.mark.timeout(120)
def test_a_500_is_json_and_counted(in_process: tuple[Server, str]) -> None:
    server, url = in_process

    async def failing(rows: Any) -> Any:
        raise RuntimeError("simulated model failure")

    server.batcher.forward = failing
    code, headers, body, _ = infer(url, timeout=10)
    assert code == 500 and body == {"error": "internal server error: RuntimeError"}, body
    assert headers["content-type"] == "application/json"
    page = http_get_text(f"{url}/metrics")
    assert metric_value(page, 'lepton_serve_requests_total{model="digits",status="500"}') == 1
    assert metric_value(page, 'lepton_serve_http_responses_total{status="500"}') == 1
    assert metric_value(page, "lepton_serve_inflight_requests") == 0
    assert http_json(f"{url}/v2/health/live") == (200, {"live": True})  # a failing pass is not a dead batcher


@pytest.mark.timeout(120)
def test_bodies_beyond_the_buffer_budget_get_503_and_the_budget_is_returned(
    digits_export: tuple[Path, dict[str, Any]], servers: list[ServerProcess], tmp_path: Path
) -> None:
    s = ServerProcess(digits_export[0], tmp_path / "server.log", "--max-buffered-bytes", "100000")
    servers.append(s)
    s.wait_up()
    big = json.dumps(infer_body([[0.123456789] * 64] * 200)).encode()  # ~180 KB: more than the whole budget
    assert len(big) > 100_000
    code, headers, body = post_raw(f"{s.url}/v2/models/digits/infer", big, timeout=10)
    assert code == 503 and "bytes of request bodies (limit 100000)" in body["error"], body
    assert headers["retry-after"] == "1"
    for _ in range(20):  # what the refused and the answered requests held is given back
        assert infer(s.url)[0] == 200
