"""Checkpoint files: framing, checksum, atomic writes, pruning and fallback on damage."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from lepton_trainer.checkpoint import CheckpointError, CheckpointStore, decode, encode, file_name


def state(step: int) -> dict[str, object]:
    return {"step": step, "weights": torch.full((4, 4), float(step)), "nested": {"lr": 0.1, "list": [1, 2]}}


def test_round_trip() -> None:
    out = decode(encode(state(7)))
    assert out["step"] == 7
    assert torch.equal(out["weights"], torch.full((4, 4), 7.0))
    assert out["nested"] == {"lr": 0.1, "list": [1, 2]}


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda b: b[:20], "truncated header"),
        (lambda b: b[:-10], "truncated payload"),
        (lambda b: b[:60] + bytes([b[60] ^ 0xFF]) + b[61:], "checksum mismatch"),
        (lambda b: b"NOTACKPT" + b[8:], "bad magic"),
    ],
)
def test_damage_is_detected(damage: object, reason: str) -> None:
    assert callable(damage)
    with pytest.raises(CheckpointError, match=reason):
        decode(damage(encode(state(1))))


def test_keeps_last_k_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    for step in (10, 20, 30):
        store.save(step, state(step))
    assert [f.step for f in store.files()] == [20, 30]
    assert sorted(p.name for p in tmp_path.iterdir()) == [file_name(20), file_name(30)]


def test_async_save_is_a_snapshot(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=3)
    live = state(5)
    store.save_async(5, live)
    live["weights"].fill_(-1.0)  # training goes on while the write is in flight
    store.flush()
    assert store.durable_step == 5
    loaded = store.load_latest()
    assert loaded is not None and torch.equal(loaded[1]["weights"], torch.full((4, 4), 5.0))


def test_truncated_latest_falls_back_to_previous(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = CheckpointStore(tmp_path, keep=3)
    store.save(50, state(50))
    latest = store.save(100, state(100))
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        loaded = store.load_latest()
    assert loaded is not None and loaded[0] == 50
    assert "step-0000000100.ckpt is unusable (truncated payload" in caplog.text
    assert "falling back to the previous one" in caplog.text


def test_nothing_usable(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "missing")
    assert store.load_latest() is None
    (tmp_path / file_name(3)).write_bytes(b"garbage")
    assert CheckpointStore(tmp_path).load_latest() is None
