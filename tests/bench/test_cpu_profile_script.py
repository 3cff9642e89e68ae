"""``benchmarks/cpu_profile.py``: one training step's self CPU time by operator family."""

from __future__ import annotations

import dataclasses

import pytest

from cosmobench.bench.hardware import cpu_info


def test_profile_step_reads_the_real_step(load_script):
    """The paper's CNN at batch 2: its convolutions, Adam and hundreds of aten calls."""
    mod = load_script("benchmarks/cpu_profile.py")
    wall, families, top, calls = mod.profile_step(False, 2, "fp32", steps=2, compiled=False)
    assert wall > 0
    assert families["conv forward"] > 0 and families["conv backward"] > 0
    assert "aten::convolution_backward" in top and len(top) <= 12
    assert list(top.values()) == sorted(top.values(), reverse=True)
    # 8 convolutions, 8 PReLUs, BatchNorm, the dense layer, the loss and Adam, each several
    # aten calls forward and backward: hundreds per step, the same count per step however
    # many steps are profiled
    assert 500 < calls < 3000
    assert mod.profile_step(False, 2, "fp32", steps=1, compiled=False)[3] == calls


def test_family_groups_operators(load_script):
    family = load_script("benchmarks/cpu_profile.py").family
    assert family("aten::mkldnn_convolution") == "conv forward"
    assert family("aten::convolution_backward") == "conv backward"
    assert family("aten::_foreach_mul_") == "Adam (fused)"  # a prefix ending in "_"
    assert family("aten::_fused_adam_") == "Adam (fused)"  # what the trainer's Adam runs
    # the PReLU's own backward passes, not Adam's in-place lerp_
    assert family("aten::lerp") == family("aten::threshold_backward") == "PReLU (fwd+bwd)"
    assert family("aten::lerp_") == "Adam (fused)"
    assert family("aten::normal_") == "weight noise and KL (BNN)"
    assert family("aten::native_batch_norm") == "BatchNorm"
    assert family("aten::not_a_listed_op") == "other"


def test_bf16_is_profiled_only_where_native(load_script, monkeypatch):
    """Emulated bf16 (tens of times slower) is left out by default, with the reason; asked
    for, it runs; a precision that is not one gives a one-line error."""
    mod = load_script("benchmarks/cpu_profile.py")
    here = cpu_info()
    for isa, native in (("avx2", False), ("avx512_bf16", True), ("amx", True)):
        fake = dataclasses.replace(here, isa=isa, flags_isa=isa, caps={})
        monkeypatch.setattr(mod, "cpu_info", lambda fake=fake: fake)
        names, why = mod.precisions_to_run(None)
        assert names == (["fp32", "bf16"] if native else ["fp32"])
        assert (why is None) == native and (native or "no native bf16" in why)
        assert mod.precisions_to_run("fp32,bf16") == (["fp32", "bf16"], None)
    with pytest.raises(SystemExit, match="each must be one of fp32, bf16"):
        mod.precisions_to_run("fp32,fp16")
    with pytest.raises(SystemExit, match="each must be one of"):
        mod.precisions_to_run(" , ")
