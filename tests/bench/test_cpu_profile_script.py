"""``benchmarks/cpu_profile.py``: one training step's self CPU time by operator family."""

from __future__ import annotations


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
    assert family("aten::_foreach_mul_") == "Adam (foreach)"  # a prefix ending in "_"
    assert family("aten::native_batch_norm") == "BatchNorm"
    assert family("aten::not_a_listed_op") == "other"
