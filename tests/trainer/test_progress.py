"""Progress document, its file, its HTTP endpoint, and the termination message."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from lepton_trainer.progress import ProgressReporter, ProgressServer, parse_listen
from lepton_trainer.result import MAX_BYTES, encode_result, write_termination_message

from ..serve.support import trickle


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_eta_epoch_and_file(tmp_path: Path) -> None:
    clock = FakeClock()
    file = tmp_path / "progress.json"
    rep = ProgressReporter(
        total_steps=1000, steps_per_epoch=100, global_batch=64, file=file, clock=clock, static={"rank": 0}
    )
    rep.start(200, last_checkpoint_step=200)
    clock.now += 2.0
    rep.step(300, loss=0.5)  # 100 steps in 2 s
    doc = json.loads(file.read_text())
    assert doc["state"] == "Running" and doc["rank"] == 0
    assert doc["step"] == 300 and doc["epoch"] == 3 and doc["totalSteps"] == 1000
    assert doc["samplesPerSecond"] == pytest.approx(50 * 64)
    assert doc["etaSeconds"] == pytest.approx(700 / 50)
    assert doc["loss"] == 0.5 and doc["lastCheckpointStep"] == 200 and doc["resumedFromStep"] == 200
    rep.checkpointed(300)
    rep.finish("Succeeded", result={"testAccuracy": 0.97})
    doc = json.loads(file.read_text())
    assert doc["state"] == "Succeeded" and doc["etaSeconds"] == 0.0 and doc["lastCheckpointStep"] == 300
    assert doc["result"] == {"testAccuracy": 0.97}
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]  # no temp files left


def test_file_writes_are_throttled(tmp_path: Path) -> None:
    clock = FakeClock()
    file = tmp_path / "p.json"
    rep = ProgressReporter(total_steps=10, steps_per_epoch=5, global_batch=1, file=file, clock=clock)
    rep.start(0, None)
    rep.step(1)
    assert json.loads(file.read_text())["step"] == 0  # within min_file_interval of the last write
    clock.now += 1.0
    rep.step(2)
    assert json.loads(file.read_text())["step"] == 2


def test_http_endpoint_on_loopback() -> None:
    server = ProgressServer("127.0.0.1", 0)
    try:
        host, port = server.address
        rep = ProgressReporter(total_steps=10, steps_per_epoch=5, global_batch=8, server=server)
        rep.start(0, None)
        rep.step(4, loss=1.25)
        with urllib.request.urlopen(f"http://{host}:{port}/progress", timeout=5) as resp:
            doc = json.loads(resp.read())
        assert doc["step"] == 4 and doc["loss"] == 1.25
        assert doc["endpoint"] == f"http://127.0.0.1:{port}/progress"
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5) as resp:
            assert resp.read() == b"ok"
    finally:
        server.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("off", None), ("", None), ("127.0.0.1:0", ("127.0.0.1", 0)), (":8080", ("0.0.0.0", 8080)), ("h", ("h", 29500))],
)
def test_parse_listen(value: str, expected: tuple[str, int] | None) -> None:
    assert parse_listen(value, 29500) == expected


def test_termination_message_is_compact_and_bounded(tmp_path: Path) -> None:
    target = tmp_path / "termination-log"
    assert write_termination_message({"state": "Succeeded", "testAccuracy": 0.97}, target)
    assert target.read_text() == '{"state":"Succeeded","testAccuracy":0.97}'
    body = encode_result({"state": "Failed", "error": "x" * 10_000})
    assert len(body) <= MAX_BYTES and json.loads(body)["truncated"] is True


def test_termination_message_skipped_when_not_writable(tmp_path: Path) -> None:
    assert not write_termination_message({"state": "Succeeded"}, tmp_path / "no" / "such" / "dir" / "log")


def _get_progress(address: tuple[str, int]) -> int:
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/progress", timeout=5) as resp:
        return int(resp.status)


@pytest.mark.timeout(60)
def test_slow_and_silent_clients_are_cut_at_the_deadline() -> None:
    server = ProgressServer("127.0.0.1", 0, io_timeout=0.5, deadline=1.0)
    try:
        drip, seconds = trickle(*server.address, b"GET /progress HTTP/1.0\r\nX-Slow: " + b"a" * 500, 0.2, 20)
        assert drip == b"" and seconds < 3, (drip, seconds)  # one byte every 0.2 s: cut by the 1 s deadline
        silent, seconds = trickle(*server.address, b"", 0.2, 20)
        assert silent == b"" and seconds < 3, seconds  # sends nothing: cut by the 0.5 s read timeout
        assert _get_progress(server.address) == 200
    finally:
        server.close()


@pytest.mark.timeout(60)
def test_connections_beyond_the_thread_limit_get_503_at_once() -> None:
    server = ProgressServer("127.0.0.1", 0, max_threads=2, io_timeout=30, deadline=30)
    held = [socket.create_connection(server.address, timeout=5) for _ in range(2)]  # 2 silent clients
    try:
        for sock in held:
            sock.sendall(b"GET /progress HTTP/1.0\r\n")  # headers never finished: both threads busy
        t0 = time.monotonic()
        with socket.create_connection(server.address, timeout=5) as extra:
            reply = b""
            while chunk := extra.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.0 503") and b"busy" in reply, reply
        assert time.monotonic() - t0 < 2 and server.refused == 1
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while True:  # the held threads end once their clients have gone
        try:
            if _get_progress(server.address) == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.05)
    server.close()


@pytest.mark.timeout(30)
def test_other_methods_and_paths_get_4xx() -> None:
    server = ProgressServer("127.0.0.1", 0)
    try:
        host, port = server.address
        for method, path, status in [("POST", "/progress", 501), ("GET", "/admin", 404), ("DELETE", "/", 501)]:
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request(method, path)
            assert conn.getresponse().status == status, (method, path)
            conn.close()
        assert _get_progress(server.address) == 200
    finally:
        server.close()
