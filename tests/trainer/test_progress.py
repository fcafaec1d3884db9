"""Progress document, its file, its HTTP endpoint, and the termination message."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from lepton_trainer.progress import ProgressReporter, ProgressServer, parse_listen
from lepton_trainer.result import MAX_BYTES, encode_result, write_termination_message


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
