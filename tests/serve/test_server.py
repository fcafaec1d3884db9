"""The model server over real HTTP on 127.0.0.1: predictions, errors, batching, drain on SIGTERM."""

from __future__ import annotations

import concurrent.futures as cf
import json
import time
from pathlib import Path
from typing import Any

import pytest
from lepton_trainer import data

from .support import ServerProcess, http_json, infer_body, metric_value

ROW = [0.0] * 64


def start(servers: list[ServerProcess], model_dir: Path, tmp_path: Path, *args: str) -> ServerProcess:
    s = ServerProcess(model_dir, tmp_path / f"server-{len(servers)}.log", *args)
    servers.append(s)
    return s


@pytest.mark.timeout(240)
def test_predictions_match_the_trainers_test_accuracy_and_requests_are_batched(
    digits_export: tuple[Path, dict[str, Any]], servers: list[ServerProcess], tmp_path: Path
) -> None:
    export, result = digits_export
    s = start(servers, export, tmp_path, "--max-batch-size", "32", "--max-wait-ms", "5")
    s.wait_up()
    code, meta = http_json(f"{s.url}/v2/models/digits")
    assert code == 200
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert {o["name"] for o in meta["outputs"]} == {"label", "logits"}
    split = data.digits(0)
    rows, labels = split.x_test.tolist(), [str(int(y)) for y in split.y_test]

    def predict(row: list[float]) -> str:
        code, reply = http_json(f"{s.url}/v2/models/digits/infer", infer_body([row], outputs=[{"name": "label"}]))
        assert code == 200, reply
        return str(reply["outputs"][0]["data"][0])

    with cf.ThreadPoolExecutor(16) as pool:  # one sample per request, 16 at a time: the server batches them
        predicted = list(pool.map(predict, rows))
    accuracy = sum(p == y for p, y in zip(predicted, labels, strict=True)) / len(labels)
    print(f"\nserved accuracy {accuracy:.4f}, trainer's test accuracy {result['testAccuracy']}")
    assert round(accuracy, 4) == result["testAccuracy"]
    page = s.metrics()
    batches, requests = (
        metric_value(page, "lepton_serve_batch_size_count"),
        metric_value(page, "lepton_serve_batch_size_sum"),
    )
    print(f"{int(requests)} requests in {int(batches)} forward passes ({requests / batches:.2f} per pass)")
    assert requests == len(rows) and batches < requests  # some passes carried more than one request
    assert metric_value(page, 'lepton_serve_requests_total{model="digits",status="200"}') == len(rows)
    assert metric_value(page, "lepton_serve_request_duration_seconds_count") == len(rows)
    # A whole batch in one request gives the same answers.
    code, reply = http_json(f"{s.url}/v2/models/digits/infer", infer_body(rows[:50], id="r1"))
    assert code == 200 and reply["id"] == "r1" and reply["model_name"] == "digits"
    assert reply["outputs"][0]["data"] == predicted[:50]
    assert reply["outputs"][1]["shape"] == [50, 10]


def _tensor(**override: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": ROW, **override}]}


MALFORMED: list[tuple[str, str, Any, int, str]] = [
    ("not-json", "digits", b"{nope", 400, "not valid JSON"),
    ("no-inputs", "digits", {"outputs": []}, 400, "missing field 'inputs'"),
    (
        "no-data",
        "digits",
        {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32"}]},
        400,
        "missing field 'data'",
    ),
    ("wrong-shape", "digits", _tensor(shape=[1, 63]), 400, "does not match the model's input shape [-1, 64]"),
    ("too-few-values", "digits", _tensor(shape=[2, 64]), 400, "data has 64 values; shape [2, 64] needs 128"),
    ("wrong-dtype", "digits", _tensor(datatype="BYTES"), 400, "datatype 'BYTES' is not supported"),
    ("strings-as-data", "digits", _tensor(data=["1"] * 64), 400, "holds str '1'; expected numbers"),
    ("wrong-input-name", "digits", _tensor(name="x"), 400, "is not the model's input 'input'"),
    ("unknown-output", "digits", {**_tensor(), "outputs": [{"name": "probs"}]}, 400, "unknown output(s) ['probs']"),
    ("unknown-model", "mnist", _tensor(), 404, "unknown model 'mnist'"),
]


@pytest.mark.timeout(120)
def test_malformed_requests_get_4xx_with_a_message(
    digits_export: tuple[Path, dict[str, Any]], servers: list[ServerProcess], tmp_path: Path
) -> None:
    s = start(servers, digits_export[0], tmp_path)
    s.wait_up()
    for case, model, body, status, message in MALFORMED:
        code, reply = http_json(f"{s.url}/v2/models/{model}/infer", body)
        assert (code, message in reply.get("error", "")) == (status, True), (case, code, reply)
    page = s.metrics()
    assert metric_value(page, 'lepton_serve_requests_total{model="digits",status="400"}') == len(MALFORMED) - 1
    code, reply = http_json(f"{s.url}/v2/models/mnist")
    assert code == 404 and "unknown model" in reply["error"]


@pytest.mark.timeout(60)
def test_a_model_that_cannot_load_says_why_and_the_server_stays_live(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    s = start(servers, broken, tmp_path)
    body = s.wait_up(ready=False)
    assert body["ready"] is False and body["state"] == "Failed"
    assert "format 'something-else' is not 'lepton-model'" in body["reason"]
    assert http_json(f"{s.url}/v2/health/live") == (200, {"live": True})
    code, reply = http_json(f"{s.url}/v2/models/digits/infer", _tensor())
    assert code == 503 and "not ready (Failed)" in reply["error"]
    assert metric_value(s.metrics(), "lepton_serve_model_ready") == 0


@pytest.mark.timeout(120)
def test_sigterm_drains_in_flight_requests(
    digits_export: tuple[Path, dict[str, Any]], servers: list[ServerProcess], tmp_path: Path
) -> None:
    s = start(
        servers,
        digits_export[0],
        tmp_path,
        "--simulated-latency-ms",
        "1500",
        "--max-batch-size",
        "1",
        "--queue-timeout",
        "30",
    )
    s.wait_up()
    n = 4
    with cf.ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(http_json, f"{s.url}/v2/models/digits/infer", _tensor(), 30) for _ in range(n)]
        deadline = time.monotonic() + 10
        while metric_value(s.metrics(), "lepton_serve_inflight_requests") < n:
            assert time.monotonic() < deadline, "requests never got in flight"
            time.sleep(0.02)
        s.sigterm()
        t0 = time.monotonic()
        replies = [f.result(timeout=30) for f in futures]
    assert [code for code, _ in replies] == [200] * n, replies
    assert s.proc.wait(30) == 0
    print(f"\n{n} in-flight requests (1.5 s each, one at a time) done {time.monotonic() - t0:.1f} s after SIGTERM")
    with pytest.raises(OSError):
        http_json(f"{s.url}/v2/health/live", timeout=2)
