"""Real torchrun agents on 127.0.0.1 (gloo, c10d rendezvous): training, failover, elasticity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import Agent, free_port, wait_for

CHECKPOINT_EVERY = 50
GOAL = 0.95


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.stop()


def train_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--workload",
        "digits",
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--checkpoint-every",
        str(CHECKPOINT_EVERY),
        *extra,
    ]


def start(
    agents: list[Agent], tmp_path: Path, name: str, nnodes: str, port: int, args: list[str], **kw: object
) -> Agent:
    agent = Agent(
        name,
        tmp_path,
        endpoint=f"127.0.0.1:{port}",
        run_id="test",
        nnodes=nnodes,
        train_args=args,
        **kw,  # type: ignore[arg-type]
    )
    agents.append(agent)
    return agent


def finished(agent: Agent, timeout: float) -> dict[str, object]:
    assert agent.wait(timeout) == 0, agent.tail()
    result = agent.result()
    assert result is not None and result["state"] == "Succeeded", agent.tail()
    return result


@pytest.mark.timeout(150)
def test_two_workers_train_digits(tmp_path: Path, agents: list[Agent]) -> None:
    agent = start(agents, tmp_path, "a", "1", free_port(), train_args(tmp_path, "--quantize", "int8"), nproc=2)
    result = finished(agent, 140)
    acc = result["testAccuracy"]
    print(f"\n2 workers (gloo): test accuracy {acc} after {result['steps']} steps; int8 {result['quantization']}")
    assert isinstance(acc, float) and acc >= GOAL
    assert result["worldSize"] == 2 and result["exportPath"] == str(tmp_path / "ckpt" / "export")
    progress = agent.progress()
    assert progress is not None and progress["state"] == "Succeeded" and progress["step"] == result["steps"]


@pytest.mark.timeout(200)
@pytest.mark.parametrize("victim", [0, 1], ids=["rank0-the-writer", "rank1"])
def test_killed_worker_resumes_from_last_checkpoint(tmp_path: Path, agents: list[Agent], victim: int) -> None:
    port = free_port()
    args = train_args(tmp_path, "--step-sleep", "0.005")
    a = start(agents, tmp_path, "a", "2", port, args)
    b = start(agents, tmp_path, "b", "2", port, args)
    wait_for(
        lambda: (p := a.progress() or b.progress()) and (p.get("lastCheckpointStep") or 0) >= 2 * CHECKPOINT_EVERY,
        120,
        message=lambda: f"two checkpoints; logs:\n{a.tail()}\n{b.tail()}",
    )
    pid = wait_for(lambda: a.workers().get(victim) or b.workers().get(victim), 10, message=f"rank {victim}'s pid")
    os.kill(pid, signal.SIGKILL)
    result = finished(a, 150)
    finished(b, 30)

    def steps(pattern: str) -> list[int]:
        return [int(m.group(1)) for _, m in a.matches(pattern) + b.matches(pattern)]

    stopped = steps(r"stopped after step=(\d+)")
    resumed = steps(r"resumed from checkpoint step=(\d+)")
    assert stopped and resumed, a.log() + "\n" + b.log()
    lost = max(stopped) - min(resumed)
    print(
        f"\nkilled rank {victim} after step {max(stopped)}; resumed at {min(resumed)}: {lost} steps lost; "
        f"accuracy {result['testAccuracy']}"
    )
    # rank 0 is the only writer: losing it costs up to one interval; when it survives a peer's
    # death it saves the last completed step before the group restarts, so nothing is lost.
    assert 0 <= lost <= (CHECKPOINT_EVERY if victim == 0 else 0)
    assert isinstance(result["testAccuracy"], float) and result["testAccuracy"] >= GOAL


def stepping_pair(tmp_path: Path, agents: list[Agent], step_sleep: str) -> tuple[Agent, Agent, int]:
    """Two agents of one worker each and no in-place restarts (as in operator pods), past step 20; returns them
    and rank 1's pid."""
    port = free_port()
    args = train_args(tmp_path, "--step-sleep", step_sleep)
    a = start(agents, tmp_path, "a", "2", port, args, max_restarts=0)
    b = start(agents, tmp_path, "b", "2", port, args, max_restarts=0)
    wait_for(lambda: (p := a.progress() or b.progress()) and (p.get("step") or 0) >= 20, 120, message=a.tail)
    pid = wait_for(lambda: a.workers().get(1) or b.workers().get(1), 10, message="rank 1's pid")
    return a, b, pid


@pytest.mark.timeout(200)
def test_a_worker_whose_peer_dies_reports_the_peer_lost(tmp_path: Path, agents: list[Agent]) -> None:
    """As in operator pods (no in-place restarts): rank 1 killed -> rank 0's collective breaks -> it exits 1
    with `peerLost: true` in its termination message, so the operator restarts the epoch instead of failing
    the job on exit code 1 (reconcile/failover.py)."""
    a, b, pid = stepping_pair(tmp_path, agents, "0.005")
    survivor = b if b.workers().get(0) else a
    os.kill(pid, signal.SIGKILL)
    assert survivor.wait(120) != 0, survivor.tail()
    result = survivor.result()
    assert result is not None and result["state"] == "Failed" and result["peerLost"] is True, (result, survivor.tail())


@pytest.mark.timeout(200)
def test_sigterm_to_one_rank_stops_every_rank_at_the_same_step_after_a_checkpoint(
    tmp_path: Path, agents: list[Agent]
) -> None:
    """The pods' kubelets signal the ranks at different moments (here: only rank 1): the ranks agree on the stop
    at a step boundary, so all exit 143 at the same step and rank 0 saves it (no rank ends on a broken
    collective)."""
    a, b, pid = stepping_pair(tmp_path, agents, "0.02")
    os.kill(pid, signal.SIGTERM)
    a.wait(60), b.wait(60)
    stopped = [
        int(m.group(1))
        for _, m in a.matches(r"stopped by SIGTERM at step=(\d+)") + b.matches(r"stopped by SIGTERM at step=(\d+)")
    ]
    logs = a.log() + "\n" + b.log()
    assert len(stopped) == 2 and stopped[0] == stopped[1], logs
    assert "stopped after step=" not in logs, logs  # no collective failed
    newest = max((tmp_path / "ckpt").glob("step-*.ckpt")).name
    assert newest == f"step-{stopped[0]:010d}.ckpt", (newest, logs)


@pytest.mark.timeout(240)
def test_elastic_scale_up_from_two_to_three(tmp_path: Path, agents: list[Agent]) -> None:
    port = free_port()
    args = train_args(tmp_path, "--epochs", "60", "--step-sleep", "0.01")
    a = start(agents, tmp_path, "a", "2:3", port, args)
    b = start(agents, tmp_path, "b", "2:3", port, args)
    wait_for(
        lambda: (p := a.progress()) and p.get("worldSize") == 2 and p.get("step", 0) >= 100,
        120,
        message=lambda: f"2 workers stepping; log:\n{a.tail()}",
    )
    c = start(agents, tmp_path, "c", "2:3", port, args)
    wait_for(
        lambda: (p := a.progress()) and p.get("worldSize") == 3 and p.get("state") == "Running",
        120,
        message=lambda: f"3 workers stepping; logs:\n{a.tail()}\n{c.tail()}",
    )
    results = [finished(x, 150) for x in (a, b, c)]
    resumed = a.matches(r"resumed from checkpoint step=(\d+) .*world size then 2, now 3")
    assert resumed, a.log()
    print(f"\nscaled 2 -> 3 at step {resumed[0][1].group(1)}; accuracy {results[0]['testAccuracy']}")
    assert all(r["worldSize"] == 3 for r in results)
    assert isinstance(results[0]["testAccuracy"], float) and results[0]["testAccuracy"] >= GOAL


@pytest.mark.timeout(120)
def test_truncated_latest_checkpoint_falls_back_to_previous(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LEPTON_DATA_CACHE": str(tmp_path / "cache")}
    base = [
        sys.executable,
        "-m",
        "lepton_trainer.train",
        "--checkpoint-dir",
        str(ckpt),
        "--progress-listen",
        "off",
        "--termination-log",
        str(tmp_path / "term.json"),
        "--checkpoint-every",
        "50",
    ]
    subprocess.run([*base, "--max-steps", "100"], env=env, check=True, capture_output=True, timeout=100)
    latest = ckpt / "step-0000000100.ckpt"
    latest.write_bytes(latest.read_bytes()[:1000])
    run = subprocess.run([*base, "--max-steps", "120"], env=env, capture_output=True, text=True, timeout=100)
    assert run.returncode == 0, run.stderr
    assert "step-0000000100.ckpt is unusable (truncated payload" in run.stderr
    assert "resumed from checkpoint step=50" in run.stderr
