"""examples/own-script/train.py, the plain DDP script of "Bring your own training script", under the image's
launcher (torchrun) with 2 processes: it trains with DataLoader worker processes, reports progress and its
result through the files of the contract, and on SIGTERM saves and exits, then resumes from its checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from .support import PYTHON, free_port, read_json, wait_for

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "own-script" / "train.py"


def launch(tmp: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PET_", "LEPTON_", "TORCHELASTIC_"))}
    env.update(
        OMP_NUM_THREADS="1",
        LEPTON_CHECKPOINT_DIR=str(tmp / "ckpt"),
        LEPTON_PROGRESS_FILE=str(tmp / "progress.json"),
        LEPTON_PROGRESS_LISTEN="off",
        LEPTON_TERMINATION_LOG=str(tmp / "termination-log"),
        PET_NPROC_PER_NODE="2",
        PET_RDZV_BACKEND="c10d",
        PET_RDZV_ENDPOINT=f"127.0.0.1:{free_port()}",
    )
    (tmp / "termination-log").touch()  # the kubelet makes it in a pod
    cmd = [PYTHON, "-m", "lepton_trainer.launch", "--local-addr", "127.0.0.1", str(SCRIPT), *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.mark.timeout(240)
def test_the_script_trains_with_dataloader_workers_and_reports(tmp_path: Path) -> None:
    out = finish(launch(tmp_path, "--epochs", "6"))
    assert "rank 0/2: 1437 samples, 2 DataLoader workers" in out and "rank 1/2" in out, out[-3000:]
    result = read_json(tmp_path / "termination-log")
    assert result is not None and result["state"] == "Succeeded", result
    assert result["step"] == result["totalSteps"] == 6 * 23 and result["testAccuracy"] >= 0.9, result
    progress = read_json(tmp_path / "progress.json")
    assert progress is not None and (progress["step"], progress["epoch"]) == (6 * 23, 5), progress
    assert torch.load(tmp_path / "ckpt" / "model.pt")["epoch"] == 6


@pytest.mark.timeout(300)
def test_sigterm_saves_and_exits_then_the_next_run_resumes(tmp_path: Path) -> None:
    proc = launch(tmp_path, "--epochs", "8", "--step-sleep", "0.05")
    ckpt = tmp_path / "ckpt" / "model.pt"
    wait_for(lambda: ckpt.exists(), 120, interval=0.1, message="a first checkpoint")
    proc.send_signal(signal.SIGTERM)  # to torchrun (the launcher execs it), as the kubelet does to PID 1
    out, _ = proc.communicate(timeout=60)
    assert "rank 0: SIGTERM at step" in out and "rank 1: SIGTERM at step" in out, out[-3000:]
    assert "DataLoader worker (pid" not in out, out[-3000:]  # its workers ignore SIGTERM: none died before the save
    saved = torch.load(ckpt)["epoch"]
    progress = read_json(tmp_path / "progress.json")
    assert progress is not None and progress["state"] == "Stopped" and progress["epoch"] == saved, progress
    out = finish(launch(tmp_path, "--epochs", "8"))
    assert f"rank 0: resumed from {ckpt} at epoch {saved}" in out and f"rank 1: resumed from {ckpt}" in out, out
    result = read_json(tmp_path / "termination-log")
    assert result is not None and result["step"] == 8 * 23 and result["testAccuracy"] >= 0.9, result
