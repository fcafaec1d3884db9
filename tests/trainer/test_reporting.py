"""Progress for any script: lepton_trainer.report() on rank 0, and the launcher serving a script's file."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path

import pytest
from lepton_trainer import contract, progress_file, reporting
from lepton_trainer.progress import ProgressServer
from lepton_trainer.result import peer_lost

from .support import free_port, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def get(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/progress", timeout=2) as reply:
        doc: dict[str, object] = json.loads(reply.read())
    return doc


def test_the_document_has_the_operators_fields_rate_and_eta(tmp_path: Path) -> None:
    clock, file = Clock(), tmp_path / "p.json"
    r = reporting.Reporter(file, None, clock)
    r.update(0, 100, {"loss": 2.5})
    clock.now += 10
    r.update(20, None, {"loss": 1.5, "epoch": 1, "samples_per_second": 64.0, "last_checkpoint_step": 10})
    doc = json.loads(file.read_text())
    assert {k: doc[k] for k in ("step", "totalSteps", "loss", "epoch", "samplesPerSecond", "lastCheckpointStep")} == {
        "step": 20,
        "totalSteps": 100,
        "loss": 1.5,
        "epoch": 1,
        "samplesPerSecond": 64.0,
        "lastCheckpointStep": 10,
    }
    assert doc["etaSeconds"] == 40.0 and doc["state"] == "Running" and doc["version"] == 1
    r.update(100, None, {"state": "Succeeded", "test_accuracy": 0.97})
    doc = json.loads(file.read_text())
    assert (doc["etaSeconds"], doc["testAccuracy"], doc["state"]) == (0.0, 0.97, "Succeeded")


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(reporting, "_reporter", None)
    monkeypatch.setenv(contract.PROGRESS_FILE, str(tmp_path / "progress.json"))
    monkeypatch.setenv(contract.PROGRESS_LISTEN, "127.0.0.1:0")
    monkeypatch.delenv(reporting.SERVED, raising=False)
    return tmp_path / "progress.json"


def test_other_local_ranks_publish_nothing(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_RANK", "1")
    reporting.report(step=1, total_steps=10)
    assert reporting._reporter is None and not fresh.exists()


def test_local_rank_0_serves_and_writes_with_one_call(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lepton_trainer

    monkeypatch.setenv("RANK", "2")  # the replica-0 pod's processes need not be global rank 0
    monkeypatch.setenv("LOCAL_RANK", "0")
    lepton_trainer.report(step=3, total_steps=10, loss=0.5)
    assert reporting._reporter is not None and reporting._reporter.server is not None
    try:
        assert get(reporting._reporter.server.address[1])["step"] == 3
        assert json.loads(fresh.read_text())["loss"] == 0.5
    finally:
        reporting._reporter.server.close()


def test_under_the_launcher_report_only_writes_the_file(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(reporting.SERVED, "1")
    reporting.report(step=1)
    assert reporting._reporter is not None and reporting._reporter.server is None
    assert json.loads(fresh.read_text())["step"] == 1


@pytest.mark.parametrize(
    ("content", "served"),
    [
        (b'{"step": 1}', True),
        (b"[1, 2]", False),
        (b"{not json", False),
        (b'{"pad": "' + b"x" * progress_file.MAX_BYTES + b'"}', False),
    ],
)
def test_the_launcher_serves_only_a_bounded_json_object(tmp_path: Path, content: bytes, served: bool) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(content)
    assert (progress_file.read_document(path) == content) is served
    assert progress_file.read_document(tmp_path / "missing.json") is None


def test_the_serving_loop_ends_with_its_parent(tmp_path: Path) -> None:
    server = ProgressServer("127.0.0.1", 0)
    progress_file.serve(tmp_path / "p.json", server, parent=-1)  # not our parent: returns, port closed
    with pytest.raises(OSError):
        get(server.address[1])


@pytest.mark.timeout(30)
def test_the_forked_server_serves_what_a_script_writes(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "p.json"
    pid = progress_file.start(path, "127.0.0.1", port)
    try:
        path.write_text('{"step": 7, "totalSteps": 9}')

        def served() -> bool:
            try:
                return get(port).get("step") == 7
            except OSError:
                return False

        assert wait_for(served, 10, interval=0.1, message="the file's document on GET /progress")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@pytest.mark.parametrize(
    ("exc", "lost"),
    [
        (
            RuntimeError("[gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:22740: Connection reset by peer."),
            True,
        ),
        (RuntimeError("[pair.cc:534] Connection closed by peer [198.19.17.6]:41234"), True),
        (type("DistNetworkError", (RuntimeError,), {})("store went away"), True),
        (ValueError("bad batch shape"), False),
        (RuntimeError("CUDA out of memory"), False),
    ],
)
def test_peer_lost_tells_a_vanished_peer_from_the_workers_own_error(exc: BaseException, lost: bool) -> None:
    assert peer_lost(exc) is lost
