"""Modes: parsing, canonical names, and the reason a mode cannot run on a device."""

from __future__ import annotations

import pytest
import torch

from cosmobench.bench.config import BenchConfig
from cosmobench.bench.modes import ALL_MODES, Mode, parse_mode, parse_modes, unsupported_reason
from cosmobench.errors import CosmobenchError


def test_parse_and_canonical_names():
    assert parse_mode("eager") == Mode()
    assert parse_mode("bf16+cudagraph") == Mode(cudagraph=True, bf16=True)
    assert str(parse_mode("bf16+cudagraph")) == "cudagraph+bf16"
    assert str(parse_mode("channels_last + bf16")) == "channels-last+bf16"
    assert parse_mode("compile+bf16").precision == "bf16"
    assert [str(m) for m in parse_modes(["all"])] == list(ALL_MODES)
    assert len(parse_modes(["eager", "eager", "bf16"])) == 2


@pytest.mark.parametrize("text", ["fast", "eager+bf16", "bf16+bf16", ""])
def test_bad_modes_name_the_allowed_parts(text):
    with pytest.raises(CosmobenchError):
        parse_mode(text)


def test_cudagraph_is_unsupported_on_cpu_with_the_alternative():
    reason = unsupported_reason(parse_mode("cudagraph"), torch.device("cpu"))
    assert reason is not None and "CUDA" in reason and "compile" in reason
    assert unsupported_reason(parse_mode("eager"), torch.device("cpu")) is None


def test_config_validation():
    cfg = BenchConfig(workloads=("train-cnn", "generate"), modes=("all",))
    assert cfg.sizes_for("train-cnn", torch.device("cpu")) == (2, 4, 8, 10, 12, 14)
    assert cfg.sizes_for("generate", torch.device("cpu")) == (1, 10, 100, 500, 1000, 5000)
    assert BenchConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ({"workloads": ("train-gan",)}, {"protocol": "fast"}, {"repeats": 0},
                {"modes": ("turbo",)}, {"batch_sizes": (2, 0)}, {"untimed_epochs": 110}):
        with pytest.raises(CosmobenchError):
            BenchConfig(**bad)
