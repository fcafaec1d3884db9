"""A hostile caller against the real server on 127.0.0.1: every malformed request gets a 4xx JSON error naming
the problem, in bounded time, and a valid request right after it is still answered; nothing counts as 5xx."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import (
    ServerProcess,
    http_json,
    infer_body,
    json_of,
    metric_value,
    post_raw,
    send_and_read,
    status_of,
    trickle,
)

ROW = [0.5] * 64
LIMITS = ["--max-body-bytes", "300000", "--max-elements", "4096", "--max-rows", "32", "--max-depth", "4"]
TIMEOUTS = ["--header-timeout", "1", "--body-timeout", "1", "--keep-alive", "1"]


def t(**override: Any) -> dict[str, Any]:
    """A one-sample request with fields of inputs[0] replaced."""
    return {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": ROW, **override}]}


def typed(datatype: str, value: Any) -> dict[str, Any]:
    return t(datatype=datatype, data=[value] * 64)


def raw(text: str) -> bytes:
    return text.encode()


# (case, body (object -> JSON, bytes as is), content type, status, words the error must contain)
CASES: list[tuple[str, Any, str | None, int, str]] = [
    ("not-json", b"{nope", "application/json", 400, "not valid JSON"),
    ("empty-body", b"", "application/json", 400, "not valid JSON"),
    ("invalid-utf8", b"\xff\xfe\xfd{", "application/json", 400, "not valid JSON"),
    ("body-is-list", [], "application/json", 400, "must be a JSON object"),
    ("body-is-string", "x", "application/json", 400, "must be a JSON object"),
    ("body-is-null", None, "application/json", 400, "must be a JSON object"),
    ("body-is-number", 1, "application/json", 400, "must be a JSON object"),
    ("no-inputs", {"outputs": []}, "application/json", 400, "missing field 'inputs'"),
    ("inputs-object", {"inputs": {}}, "application/json", 400, "missing field 'inputs'"),
    ("inputs-empty", {"inputs": []}, "application/json", 400, "missing field 'inputs'"),
    ("two-inputs", {"inputs": [t()["inputs"][0]] * 2}, "application/json", 400, "takes 1 input"),
    ("input-is-number", {"inputs": [5]}, "application/json", 400, "inputs[0] must be an object"),
    ("no-name", {"inputs": [{"shape": [1, 64], "datatype": "FP32", "data": ROW}]}, None, 400, "missing field 'name'"),
    ("no-shape", {"inputs": [{"name": "input", "datatype": "FP32", "data": ROW}]}, None, 400, "'shape'"),
    ("no-datatype", {"inputs": [{"name": "input", "shape": [1, 64], "data": ROW}]}, None, 400, "'datatype'"),
    ("no-data", {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32"}]}, None, 400, "'data'"),
    ("wrong-name", t(name="x"), None, 400, "not the model's input 'input'"),
    ("name-is-list", t(name=["input"]), None, 400, "not the model's input"),
    ("datatype-list", t(datatype=["FP32"]), None, 400, "datatype ['FP32'] is not supported"),
    ("datatype-object", t(datatype={"a": 1}), None, 400, "is not supported"),
    ("datatype-null", t(datatype=None), None, 400, "datatype None is not supported"),
    ("datatype-bytes", t(datatype="BYTES"), None, 400, "datatype 'BYTES' is not supported"),
    ("datatype-lowercase", t(datatype="fp32"), None, 400, "is not supported"),
    ("shape-string", t(shape="1,64"), None, 400, "shape must be a list of non-negative integers"),
    ("shape-negative", t(shape=[-1, 64]), None, 400, "non-negative integers"),
    ("shape-floats", t(shape=[1.0, 64]), None, 400, "non-negative integers"),
    ("shape-bool", t(shape=[True, 64]), None, 400, "non-negative integers"),
    ("shape-mismatch", t(shape=[1, 63]), None, 400, "does not match the model's input shape [-1, 64]"),
    ("shape-3d", t(shape=[1, 8, 8]), None, 400, "does not match"),
    ("shape-huge-list", t(shape=[1] * 10000), None, 400, "non-negative integers"),
    ("batch-zero", t(shape=[0, 64], data=[]), None, 400, "must be 1..32"),
    ("batch-over-max-rows", t(shape=[33, 64]), None, 400, "must be 1..32, got 33"),
    ("batch-absurd", t(shape=[10**15, 64]), None, 400, "must be 1..32"),
    ("elements-over-limit", t(shape=[2, 64], data=[0.0] * 5000), None, 400, "more than 4096 values"),
    ("data-string", t(data="abc"), None, 400, "data must be a list of numbers"),
    ("data-object", t(data={"a": 1}), None, 400, "data must be a list of numbers"),
    ("data-strings", t(data=["1"] * 64), None, 400, "holds str '1'; expected numbers"),
    ("data-bools", t(data=[True] * 64), None, 400, "holds bool True"),
    ("data-nulls", t(data=[None] * 64), None, 400, "holds NoneType None"),
    ("data-objects", t(data=[{"v": 1}] * 64), None, 400, "holds dict"),
    ("data-too-few", t(shape=[2, 64]), None, 400, "data has 64 values; shape [2, 64] needs 128"),
    ("data-too-many", t(data=ROW * 2), None, 400, "data has 128 values; shape [1, 64] needs 64"),
    ("data-nan", raw(json.dumps(t()).replace("0.5", "NaN")), None, 400, "holds a non-finite number"),
    ("data-infinity", raw(json.dumps(t()).replace("0.5", "-Infinity")), None, 400, "holds a non-finite number"),
    ("data-nested-too-deep", t(data=[[[[[ROW]]]]]), None, 400, "nested deeper than 4 levels"),
    ("body-nested-100k", b"[" * 100_000 + b"]" * 100_000, None, 400, "nested too deeply"),
    ("object-nested-40k", b'{"a":' * 40_000 + b"1" + b"}" * 40_000, None, 400, "nested too deeply"),
    ("int8-over", typed("INT8", 128), None, 400, "value 128 is out of range for INT8"),
    ("int8-under", typed("INT8", -129), None, 400, "value -129 is out of range for INT8"),
    ("uint8-negative", typed("UINT8", -1), None, 400, "value -1 is out of range for UINT8"),
    ("uint8-over", typed("UINT8", 256), None, 400, "out of range for UINT8"),
    ("int16-over", typed("INT16", 40000), None, 400, "out of range for INT16"),
    ("int32-over", typed("INT32", 2**31), None, 400, "out of range for INT32"),
    ("int64-over", typed("INT64", 2**63), None, 400, "out of range for INT64"),
    ("int64-under", typed("INT64", -(2**63) - 1), None, 400, "out of range for INT64"),
    ("int-huge", typed("INT64", 10**300), None, 400, "out of range for INT64"),
    ("int-too-many-digits", raw('{"inputs":[{"data":[' + "9" * 5000 + "]}]}"), None, 400, "not valid JSON"),
    ("int-given-float", typed("INT32", 1.5), None, 400, "non-integer value for datatype INT32"),
    ("fp32-over", typed("FP32", 1e39), None, 400, "beyond the FP32 range"),
    ("fp32-under", typed("FP32", -1e39), None, 400, "beyond the FP32 range"),
    ("fp32-big-int", typed("FP32", 10**40), None, 400, "beyond the FP32 range"),
    ("fp16-over", typed("FP16", 70000.0), None, 400, "beyond the FP16 range"),
    ("fp64-beyond-fp32", typed("FP64", 1e300), None, 400, "beyond the FP64 range"),
    ("outputs-not-list", {**t(), "outputs": "label"}, None, 400, "'outputs' must be a list"),
    ("outputs-unknown", {**t(), "outputs": [{"name": "probs"}]}, None, 400, "unknown output(s) ['probs']"),
    ("outputs-name-number", {**t(), "outputs": [{"name": 1}]}, None, 400, "with a string 'name'"),
    ("outputs-too-many", {**t(), "outputs": [{"name": "label"}] * 100}, None, 400, "at most 2 objects"),
    ("id-number", {**t(), "id": 7}, None, 400, "'id' must be a string"),
    ("id-too-long", {**t(), "id": "x" * 1000}, None, 400, "at most 256 characters"),
    ("text-plain", t(), "text/plain", 415, "Content-Type 'text/plain' is not supported"),
    ("form-urlencoded", t(), "application/x-www-form-urlencoded", 415, "send application/json"),
    ("multipart", t(), "multipart/form-data; boundary=x", 415, "is not supported"),
    ("body-over-limit", b"[" + b"0," * 200_000 + b"0]", None, 413, "over the limit of 300000 bytes"),
    ("output-not-finite", typed("FP32", 3e38), None, 422, "output for this input is not finite"),
]


@pytest.fixture
def server(digits_export: tuple[Path, dict[str, Any]], tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(digits_export[0], tmp_path / "server.log", *LIMITS, *TIMEOUTS)
    try:
        s.wait_up()
        yield s
    finally:
        s.stop()


def assert_still_serving(s: ServerProcess, after: str) -> None:
    code, reply = http_json(f"{s.url}/v2/models/digits/infer", infer_body([ROW]), timeout=5)
    assert code == 200, (after, code, reply)


def no_5xx(s: ServerProcess) -> None:
    """No inference answered 5xx, no response at all was a 500 (readiness said 503 while loading)."""
    for line in s.metrics().splitlines():
        if line.startswith("lepton_serve_requests_total") or line.startswith("lepton_serve_http_responses_total"):
            assert 'status="500"' not in line, line
            assert not (line.startswith("lepton_serve_requests_total") and 'status="5' in line), line


@pytest.mark.timeout(180)
def test_malformed_bodies_get_4xx_naming_the_problem(server: ServerProcess) -> None:
    url = f"{server.url}/v2/models/digits/infer"
    for case, body, ctype, status, words in CASES:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        code, headers, reply = post_raw(url, data, ctype or "application/json", timeout=10)
        assert (code, words in reply.get("error", "")) == (status, True), (case, code, reply)
        assert headers["content-type"] == "application/json", case
        assert_still_serving(server, case)
    no_5xx(server)
    page = server.metrics()
    assert metric_value(page, 'lepton_serve_requests_total{model="digits",status="400"}') == sum(
        c[3] == 400 for c in CASES
    )
    print(f"\n{len(CASES)} malformed bodies: each a 4xx naming the problem, a valid request answered after each")


PROTOCOL_CASES: list[tuple[str, bytes, int, str]] = [
    ("garbage-request-line", b"GARBAGE\r\n\r\n", 400, "invalid HTTP request"),
    ("bad-content-length", b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, ""),
    ("headers-1m", b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n", 400, "headers over"),
    (
        "declared-body-over-limit",
        b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 999999999\r\n\r\n{",
        413,
        "(999999999 bytes) is over the limit",
    ),
    (
        "chunked-body-over-limit",
        b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + (b"10000\r\n" + b"1" * 0x10000 + b"\r\n") * 6,
        413,
        "over the limit of 300000 bytes",
    ),
    ("get-on-infer", b"GET /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405, "GET"),
    ("unknown-path", b"GET /admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "/admin"),
    (
        "unknown-model",
        b"POST /v2/models/mnist/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        404,
        "unknown model 'mnist'",
    ),
]


@pytest.mark.timeout(120)
def test_protocol_level_abuse_gets_4xx_and_the_connection_closes(server: ServerProcess) -> None:
    for case, data, status, words in PROTOCOL_CASES:
        reply = send_and_read(server.host, server.port, data, timeout=10)
        assert status_of(reply) == status, (case, reply[:300])
        assert words in json_of(reply).get("error", ""), (case, reply[:300])
        assert_still_serving(server, case)
    no_5xx(server)


@pytest.mark.timeout(60)
def test_slow_headers_get_408_and_the_connection_closes(server: ServerProcess) -> None:
    """--header-timeout 1: a client dripping one header byte every 0.2 s is cut after ~1 s."""
    head = b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    reply, seconds = trickle(server.host, server.port, head, every=0.2, limit=20)
    assert status_of(reply) == 408 and "headers did not arrive within 1 s" in json_of(reply)["error"], reply
    assert seconds < 5, seconds
    reply, seconds = trickle(server.host, server.port, b"", every=0.2, limit=20)  # connects, sends nothing
    assert status_of(reply) == 408 and seconds < 5, (reply, seconds)
    print(f"\nslow headers: 408 and closed after {seconds:.1f} s (--header-timeout 1)")
    assert_still_serving(server, "slow headers")


@pytest.mark.timeout(60)
def test_slow_body_gets_408_and_is_not_counted_in_flight(server: ServerProcess) -> None:
    """--body-timeout 1: headers complete, the body drips; while it does the request is not in flight."""
    body = json.dumps(infer_body([ROW])).encode()
    head = (
        b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head + body[:10])
        page = server.metrics()  # the request has its headers but not its body
        assert metric_value(page, "lepton_serve_inflight_requests") == 0
        reply = b""
        while chunk := sock.recv(65536):  # until the server closes the connection
            reply += chunk
        assert status_of(reply) == 408, reply
        assert "body did not arrive within 1 s" in json_of(reply)["error"]
    page = server.metrics()
    assert metric_value(page, 'lepton_serve_requests_total{model="digits",status="408"}') == 1
    assert metric_value(page, "lepton_serve_inflight_seconds_total") < 0.5  # the 1 s spent waiting not counted
    assert_still_serving(server, "slow body")


@pytest.mark.timeout(60)
def test_idle_keep_alive_connection_is_closed(server: ServerProcess) -> None:
    """--keep-alive 1: after a response, an idle connection is closed by uvicorn's timeout_keep_alive."""
    reply, seconds = trickle(
        server.host, server.port, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n", every=0.005, limit=20
    )
    assert status_of(reply) == 200 and seconds < 5, (reply, seconds)
