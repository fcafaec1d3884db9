"""The price table: defaults, and a ConfigMap's partial override."""

from __future__ import annotations

import pytest
from lepton_operator.handlers.prices import parse
from lepton_operator.prices import DEFAULT_PRICES
from pydantic import ValidationError


def test_a_partial_table_overrides_only_what_it_names() -> None:
    table = parse("gpus:\n  NVIDIA-H100-80GB-HBM3: {onDemand: 4.5}\ncpuCoreHour: 0.05\n", "configmap x/y")
    assert table.gpu("NVIDIA-H100-80GB-HBM3").on_demand == 4.5
    assert table.gpu("NVIDIA-A100-SXM4-80GB") == DEFAULT_PRICES.gpu("NVIDIA-A100-SXM4-80GB")
    assert table.cpu_core_hour == 0.05 and table.source == "configmap x/y"


def test_unknown_products_use_the_default_gpu_price() -> None:
    assert DEFAULT_PRICES.gpu("NVIDIA-B200").on_demand == DEFAULT_PRICES.default_gpu.on_demand


def test_a_negative_price_is_refused() -> None:
    with pytest.raises(ValidationError):
        parse("cpuCoreHour: -1\n", "configmap x/y")
