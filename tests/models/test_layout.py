"""The mixed per-layer memory layout: which layers it converts, and that nothing else changes."""

from __future__ import annotations

import copy

import pytest
import torch

from cosmobench.models import ShapeConfig, ShapeNet, build_model
from cosmobench.models.layers import ElementPReLU, SameConv2d, kernel_format, same_conv2d
from cosmobench.models.layout import (
    MAX_CHANNELS_LAST_KERNEL,
    match_optimizer_state,
    mixed_channels_last,
)
from cosmobench.models.variational import VariationalConv2d, _randn_like

CL = torch.channels_last


def _is_cl(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=CL) and not t.is_contiguous()


@pytest.mark.parametrize("bayesian", [False, True])
def test_paper_network_small_kernels_go_channels_last_large_ones_stay_nchw(bayesian):
    net = ShapeNet(ShapeConfig(bayesian=bayesian))
    assert mixed_channels_last(net) == 6  # of 8 convolutions: not 128->256, 256->256
    layers = list(net.features)
    convs = [(i, m) for i, m in enumerate(layers) if isinstance(m, SameConv2d | VariationalConv2d)]
    assert len(convs) == 8
    for i, conv in convs:
        kernels = [conv.weight] if isinstance(conv, SameConv2d) else [conv.weight_mu,
                                                                      conv.weight_rho]
        small = kernels[0].numel() <= MAX_CHANNELS_LAST_KERNEL
        assert all(_is_cl(k) == small for k in kernels), i
        assert all(k.is_contiguous() != small for k in kernels), i
        slopes = layers[i + 1].weight  # the element PReLU after it: channels innermost or not
        assert isinstance(layers[i + 1], ElementPReLU)
        assert (slopes.stride(0) == 1) == small, i
    assert net.dense.weight.is_contiguous() if not bayesian else net.dense.weight_mu.is_contiguous()
    # idempotent: a second call changes nothing
    before = {n: p.stride() for n, p in net.named_parameters()}
    assert mixed_channels_last(net) == 6
    assert before == {n: p.stride() for n, p in net.named_parameters()}


@pytest.mark.parametrize("kind", ["cnn", "vae"])
def test_mixed_layout_computes_the_same_function(kind):
    torch.manual_seed(0)
    cfg = {"image_size": 32, "filters": [8, 16, 32]}
    if kind == "vae":
        cfg |= {"hidden": 16, "latent": 4}
    ref = build_model(kind, cfg).eval()
    net = copy.deepcopy(ref)
    # a bound that splits this small network into channels-last and NCHW layers
    assert 0 < mixed_channels_last(net, max_kernel=16 * 16 * 9) < 2 * len(cfg["filters"])
    x = torch.randn(3, 6, 32, 32)
    with torch.no_grad():
        out, expected = net(x), ref(x)
    for a, b in zip(out if isinstance(out, tuple) else [out],
                    expected if isinstance(expected, tuple) else [expected], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("how", ["mixed", "whole model"])
def test_optimizer_state_follows_its_parameters(how):
    """CPU fused Adam walks parameter, gradient and state in memory order: a channels-last
    parameter with NCHW state (e.g. a resumed run) would mix its elements up silently."""
    torch.manual_seed(0)
    net = ShapeNet(ShapeConfig(image_size=16, filters=(4, 8)))
    ref = copy.deepcopy(net)
    x, y = torch.randn(4, 6, 16, 16), 0.3 * torch.randn(4, 3)
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2, fused=True) for m in (net, ref)]
    for m, opt in zip((net, ref), opts, strict=True):  # one step in NCHW: Adam state exists
        m.loss(x, y).backward()
        opt.step()
        opt.zero_grad()
    if how == "mixed":
        assert mixed_channels_last(net, opts[0]) == 4
    else:  # make_train_step(channels_last=True)
        net.to(memory_format=CL)
        match_optimizer_state(opts[0])
    assert any(_is_cl(p) for p in net.parameters())
    for p in net.parameters():
        for v in opts[0].state[p].values():
            if v.dim():
                assert v.stride() == p.stride()
    for m, opt in zip((net, ref), opts, strict=True):  # the second step: the same update
        m.loss(x, y).backward()
        opt.step()
    for (name, p), q in zip(net.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_kernel_format_and_the_convolution_input_follow_the_kernel():
    w = torch.randn(8, 4, 3, 3)
    assert kernel_format(w) == torch.contiguous_format
    assert kernel_format(w.contiguous(memory_format=CL)) == CL
    # a 1x1 kernel is both: it counts as contiguous
    assert kernel_format(torch.randn(8, 4, 1, 1).contiguous(memory_format=CL)) == (
        torch.contiguous_format
    )
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    for kernel in (w, w.contiguous(memory_format=CL)):
        y = same_conv2d(x.contiguous(memory_format=CL), kernel, None, 2)
        ref = same_conv2d(x, w, None, 2)
        assert y.is_contiguous(memory_format=kernel_format(kernel))
        torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


def test_channels_last_kernel_noise_is_the_nchw_kernels():
    """A Bayesian kernel draws the same numbers in either layout, so a run's noise does not
    depend on the layout chosen for speed."""
    t = torch.empty(16, 8, 3, 3)
    torch.manual_seed(3)
    a = _randn_like(t)
    torch.manual_seed(3)
    b = _randn_like(t.contiguous(memory_format=CL))
    assert _is_cl(b) and a.is_contiguous()
    assert torch.equal(a, b)
    torch.manual_seed(3)
    assert torch.equal(torch.randn_like(t), a)
