"""Data plan, optimizer, schedule, model export/load and int8 quantisation."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from lepton_trainer import data, models
from lepton_trainer.model_io import FORMAT, ExportFormatError, export_model, load_exported
from lepton_trainer.optim import Adam, Scheduler
from lepton_trainer.quantize import quantize_int8
from lepton_trainer.schedule import WarmupCosine


@pytest.mark.parametrize(("batch", "world"), [(64, 1), (64, 2), (64, 3), (7, 7), (10, 4)])
def test_rank_slices_tile_the_global_batch(batch: int, world: int) -> None:
    slices = [data.rank_slice(batch, world, r) for r in range(world)]
    assert slices[0][0] == 0 and slices[-1][1] == batch
    assert all(a[1] == b[0] for a, b in itertools.pairwise(slices))
    sizes = [hi - lo for lo, hi in slices]
    assert max(sizes) - min(sizes) <= 1


def test_epoch_order_is_a_pure_function() -> None:
    assert torch.equal(data.epoch_order(100, 1, 5), data.epoch_order(100, 1, 5))
    assert not torch.equal(data.epoch_order(100, 1, 5), data.epoch_order(100, 1, 6))


def test_digits_split_without_sklearn_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEPTON_DATA_CACHE", str(tmp_path))
    split = data.digits(seed=0)
    assert split.x_train.shape == (1438, 64) and split.x_test.shape == (359, 64)
    assert float(split.x_train.max()) == 16.0 and set(split.y_test.tolist()) == set(range(10))
    assert (tmp_path / "digits-v1.npy").is_file()  # the next cold start reads the cache
    again = data.digits(seed=0)
    assert torch.equal(again.x_test, split.x_test)


def test_adam_matches_torch_adam() -> None:
    torch.manual_seed(0)
    ours, ref = models.DigitsCNN(), models.DigitsCNN()
    ref.load_state_dict(ours.state_dict())
    opt, ref_opt = Adam(ours.parameters(), lr=1e-2), torch.optim.Adam(ref.parameters(), lr=1e-2)
    x = torch.rand(16, 64) * 16
    for _ in range(5):
        for model, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            model(x).square().mean().backward()
            o.step()
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    restored = Adam(models.DigitsCNN().parameters(), lr=1.0)
    restored.load_state_dict(opt.state_dict())
    assert restored.steps == 5 and torch.equal(restored.exp_avg[0], opt.exp_avg[0])


def test_warmup_cosine_schedule() -> None:
    sched = WarmupCosine(warmup_steps=10, total_steps=110, floor=0.1)
    assert sched(0) == pytest.approx(0.1) and sched(9) == pytest.approx(1.0)
    assert sched(60) == pytest.approx(0.55) and sched(110) == pytest.approx(0.1)
    opt = Adam(models.DigitsCNN().parameters(), lr=2.0)
    s = Scheduler(opt, sched)
    for _ in range(60):
        s.step()
    other = Scheduler(Adam(models.DigitsCNN().parameters(), lr=2.0), sched)
    other.load_state_dict(s.state_dict())
    assert other.optimizer.lr == pytest.approx(1.1)


def _trained_ish() -> models.DigitsCNN:
    torch.manual_seed(0)
    return models.DigitsCNN()


@pytest.mark.parametrize("quantized", [False, True])
def test_export_load_round_trip(tmp_path: Path, quantized: bool) -> None:
    model = _trained_ish().eval()
    served = quantize_int8(model) if quantized else model
    out = tmp_path / "export"
    export_model(
        served,
        out,
        architecture="digits-cnn",
        config={},
        input_spec={"shape": [64], "dtype": "float32"},
        labels=[str(i) for i in range(10)],
        quantized=quantized,
        metrics={"testAccuracy": 0.5},
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == FORMAT and manifest["formatVersion"] == 1
    assert bool(manifest["quantization"]) is quantized
    loaded = load_exported(out)
    x = torch.rand(32, 64) * 16
    assert torch.allclose(loaded.logits(x), served(x), atol=1e-5)
    assert len(loaded.predict(x[:3])) == 3 and loaded.labels[3] == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # temp dirs cleaned up


def test_export_refuses_damage_and_newer_versions(tmp_path: Path) -> None:
    out = tmp_path / "m"
    export_model(_trained_ish(), out, architecture="digits-cnn", config={}, input_spec={}, labels=list("0123456789"))
    weights = out / "weights.pt"
    good = weights.read_bytes()
    weights.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(ExportFormatError, match="checksum"):
        load_exported(out)
    weights.write_bytes(good)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "formatVersion": 2}))
    with pytest.raises(ExportFormatError, match="newer"):
        load_exported(out)


def test_int8_is_smaller_and_close() -> None:
    model = _trained_ish().eval()
    q = quantize_int8(model)
    x = torch.rand(64, 64) * 16
    with torch.no_grad():
        ref, out = model(x), q(x)
    assert (ref.argmax(1) == out.argmax(1)).float().mean() > 0.9
    assert torch.allclose(ref, out, atol=0.05 * float(ref.abs().max()))
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    qsize = sum(t.numel() * t.element_size() for t in q.state_dict().values())
    assert qsize < 0.4 * size
