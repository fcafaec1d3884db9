"""Device, backend, autocast and gradient-sync choices; seeding; the launcher's defaults."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from lepton_trainer import contract, gradsync, launch, rng, runtime


@pytest.mark.parametrize(
    ("requested", "local_rank", "cuda", "count", "expected"),
    [
        ("auto", 0, False, 0, "cpu"),
        ("auto", 3, True, 2, "cuda:1"),
        ("cuda", 1, True, 8, "cuda:1"),
        ("cpu", 5, True, 8, "cpu"),
        ("cuda:3", 0, True, 8, "cuda:3"),
    ],
)
def test_select_device(requested: str, local_rank: int, cuda: bool, count: int, expected: str) -> None:
    assert runtime.select_device(requested, local_rank, cuda, count) == expected


def test_cuda_requested_without_gpu_fails() -> None:
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        runtime.select_device("cuda", 0, False, 0)


def test_backend_and_autocast_per_device() -> None:
    assert runtime.select_backend("cuda") == "nccl"
    assert runtime.select_backend("cpu") == "gloo"
    assert runtime.autocast_dtype("cuda") is torch.bfloat16
    assert runtime.autocast_dtype("cpu") is None
    with runtime.autocast("cpu"):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype is torch.float32


@pytest.mark.parametrize(
    ("requested", "device", "world", "expected"),
    [
        ("auto", "cpu", 1, "local"),
        ("auto", "cuda", 1, "local"),
        ("auto", "cuda", 4, "ddp"),
        ("auto", "cpu", 4, "allreduce"),
        ("ddp", "cpu", 2, "ddp"),
        ("allreduce", "cuda", 2, "allreduce"),
    ],
)
def test_grad_sync_strategy(requested: str, device: str, world: int, expected: str) -> None:
    assert gradsync.select_strategy(requested, device, world) == expected


def test_rank_env_defaults_and_torchrun_values() -> None:
    assert runtime.RankEnv.from_env({}) == runtime.RankEnv()
    env = runtime.RankEnv.from_env(
        {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "TORCHELASTIC_RESTART_COUNT": "2"}
    )
    assert (env.rank, env.world_size, env.local_rank, env.restart_count, env.distributed) == (3, 4, 1, 2, True)


def test_seeding_and_rng_capture_restore() -> None:
    runtime.seed_everything(123)
    state = rng.capture()
    first = (torch.rand(3), np.random.rand(3), random.random())
    runtime.seed_everything(999)
    rng.restore(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


def test_merge_rdzv_conf_keeps_what_is_set() -> None:
    merged = launch.merge_rdzv_conf("join_timeout=900, last_call_timeout=5")
    assert merged.split(",") == [
        "join_timeout=900",
        "last_call_timeout=5",
        "keep_alive_interval=1",
        "keep_alive_max_attempt=3",
    ]
    assert launch.merge_rdzv_conf("") == "keep_alive_interval=1,keep_alive_max_attempt=3,last_call_timeout=2"


def test_prepare_env_defaults_never_override() -> None:
    env = {contract.NNODES: "2:4", contract.DISABLE_SHARED_RDZV_STORE: "0"}
    launch.prepare_env(env)
    assert env[contract.NNODES] == "2:4"
    assert env[contract.DISABLE_SHARED_RDZV_STORE] == "0"
    assert env[contract.NPROC_PER_NODE] == "1"
    assert "keep_alive_interval=1" in env[contract.RDZV_CONF]
    fresh: dict[str, str] = {}
    launch.prepare_env(fresh)
    assert fresh[contract.DISABLE_SHARED_RDZV_STORE] == "1"


def test_launcher_command_is_torchrun() -> None:
    cmd = launch.torchrun_argv(["-m", "lepton_trainer.train", "--workload", "digits"])
    assert cmd[1:4] == ["-m", "torch.distributed.run", "-m"]


def test_contract_names_are_reserved() -> None:
    for name in contract.INJECTED | {contract.PROGRESS_LISTEN, contract.TERMINATION_LOG, contract.DATA_CACHE}:
        assert contract.is_reserved(name), name
    assert not contract.is_reserved("MY_SETTING")
