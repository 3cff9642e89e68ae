"""Keras-exact building blocks: TF 'same' padding, transposed 'same', per-element PReLU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cosmobench.models.layers import (
    ElementPReLU,
    SameConv2d,
    SameConvTranspose2d,
    keras_batchnorm,
    make_prelu,
    same_conv2d,
    same_pads,
)


@pytest.mark.parametrize(
    ("size", "k", "s", "pads"),
    [
        (64, 3, 2, (0, 1)),
        (63, 3, 2, (1, 1)),
        (64, 3, 1, (1, 1)),
        (8, 5, 2, (1, 2)),
        (5, 1, 2, (0, 0)),
    ],
)
def test_same_pads_follow_tensorflow(size, k, s, pads):
    # TF: out = ceil(n/s); total = max((out-1)s + k - n, 0); before = total // 2
    assert same_pads(size, k, s) == pads


def _tf_same_conv_reference(x, w, stride):
    """Direct sum from TF's definition: window of output i starts at i·s − pad_before."""
    _, _, h, wd = x.shape
    k = w.shape[-1]
    (pt, _), (pl, _) = same_pads(h, k, stride), same_pads(wd, k, stride)
    oh, ow = -(-h // stride), -(-wd // stride)
    out = torch.zeros(x.shape[0], w.shape[0], oh, ow, dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            for a in range(k):
                for b in range(k):
                    r, c = i * stride - pt + a, j * stride - pl + b
                    if 0 <= r < h and 0 <= c < wd:
                        out[:, :, i, j] += torch.einsum("bc,oc->bo", x[:, :, r, c], w[:, :, a, b])
    return out


@pytest.mark.parametrize(("size", "stride"), [(8, 2), (7, 2), (6, 1)])
def test_same_conv_matches_tensorflow_definition(size, stride):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, size, size, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    got = same_conv2d(x, w, None, stride)
    torch.testing.assert_close(got, _tf_same_conv_reference(x, w, stride))


def test_stride2_looks_at_last_pixel_not_first_padding():
    # TF pads after: output (0, 0) sees pixels 0..2 and the last output sees pixel 63;
    # PyTorch's symmetric padding=1 would miss pixel 63 entirely.
    conv = SameConv2d(1, 1, 3, 2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.zeros(1, 1, 64, 64)
    x[..., 63, 63] = 1.0
    y = conv(x)
    assert y.shape == (1, 1, 32, 32) and y[0, 0, 31, 31] == 1.0 and y.sum() == 1.0


@pytest.mark.parametrize(("size", "stride"), [(4, 2), (5, 2), (6, 1)])
def test_transposed_same_is_adjoint_of_same_conv(size, stride):
    """TF defines conv2d_transpose as the gradient of conv2d: ⟨Cx, y⟩ = ⟨x, Cᵀy⟩ with the
    same kernel, where the convolution acts on the (size·stride) output grid."""
    g = torch.Generator().manual_seed(1)
    convt = SameConvTranspose2d(4, 3, 3, stride).double()
    nn.init.zeros_(convt.bias)
    y = torch.randn(2, 4, size, size, generator=g, dtype=torch.float64)
    x = torch.randn(2, 3, size * stride, size * stride, generator=g, dtype=torch.float64)
    ty = convt(y)
    assert ty.shape == x.shape  # exactly × stride
    cx = same_conv2d(x, convt.weight, None, stride)  # weight (4, 3, k, k): conv 3 → 4
    torch.testing.assert_close((cx * y).sum(), (x * ty).sum())


def test_trunk_sizes_halve_to_four():
    x = torch.randn(1, 6, 64, 64)
    sizes = []
    for c_in, c_out in [(6, 32), (32, 64), (64, 128), (128, 256)]:
        x = SameConv2d(c_out, c_out, 3, 2)(SameConv2d(c_in, c_out, 3, 1)(x))
        sizes.append(x.shape[-1])
    assert sizes == [32, 16, 8, 4]


def test_element_prelu():
    act = ElementPReLU((2, 3, 3))
    assert act.weight.shape == (2, 3, 3) and (act.weight == 0).all()  # Keras: starts as ReLU
    with torch.no_grad():
        act.weight.copy_(torch.arange(18.0).view(2, 3, 3))
    x = torch.randn(4, 2, 3, 3)
    expected = torch.where(x > 0, x, x * torch.arange(18.0).view(2, 3, 3))
    torch.testing.assert_close(act(x), expected)
    x.requires_grad_(True)
    act(x).sum().backward()
    # d/dα = x where x ≤ 0, summed over the batch: one independent slope per element
    torch.testing.assert_close(act.weight.grad, torch.where(x > 0, 0, x).sum(0))


def test_make_prelu_kinds():
    assert make_prelu("element", 8, 4).weight.shape == (8, 4, 4)
    ch = make_prelu("channel", 8, 4)
    assert isinstance(ch, nn.PReLU) and ch.weight.shape == (8,) and (ch.weight == 0).all()
    assert make_prelu("channel", 16).weight.shape == (16,)  # dense features
    with pytest.raises(ValueError, match="element"):
        make_prelu("pixel", 8, 4)


def test_keras_defaults():
    bn = keras_batchnorm(6)
    assert bn.eps == 1e-3 and bn.momentum == pytest.approx(0.01)
    conv = SameConv2d(6, 32, 3, 1)
    assert (conv.bias == 0).all()
    limit = (6 / (9 * 6 + 9 * 32)) ** 0.5  # Glorot uniform
    assert conv.weight.abs().max() <= limit and conv.weight.abs().max() > 0.9 * limit
