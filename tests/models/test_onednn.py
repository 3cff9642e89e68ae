"""Weights prepacked for oneDNN (cosmobench.models.onednn): the plain operators' results."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cosmobench.models import onednn
from cosmobench.models.onednn import (
    PACK_LINEAR_MIN,
    PackedLinear,
    packed_conv2d,
    packed_linear,
    prepacking_available,
)

needs_onednn = pytest.mark.skipif(not prepacking_available(), reason="torch without oneDNN")


def _inputs(batch, channels, size, dtype, channels_last=True):
    g = torch.Generator().manual_seed(batch * 1000 + channels)
    x = torch.randn(batch, channels, *size, generator=g).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@needs_onednn
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("kernel", "padding"), [((3, 3), 1), ((2, 2), 0), ((2, 1), (1, 0)), ((1, 2), (0, 1))]
)
def test_packed_conv_equals_conv2d_at_every_batch_size(kernel, padding, dtype):
    w = torch.randn(12, 8, *kernel).to(dtype).contiguous(memory_format=torch.channels_last)
    b = torch.randn(12).to(dtype)
    for batch in (1, 5, 2):  # the layout packed for the first shape serves the others
        x = _inputs(batch, 8, (9, 7), dtype)
        with torch.inference_mode():
            got, ref = packed_conv2d(x, w, b, padding), F.conv2d(x, w, b, padding=padding)
        assert got.shape == ref.shape and got.dtype == dtype
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(got, ref, rtol=tol, atol=tol)
    # the prepacked path ran, not the fallback (bf16: where the CPU can lay it out)
    assert (w in onednn._PACKED) == prepacking_available(dtype)


@needs_onednn
def test_packed_conv_is_bitwise_where_conv2d_uses_onednn_too():
    w = torch.randn(32, 32, 3, 3).contiguous(memory_format=torch.channels_last)
    x = _inputs(4, 32, (32, 32), torch.float32)  # large enough for ATen's oneDNN path
    with torch.inference_mode():
        assert torch.equal(packed_conv2d(x, w, None, 1), F.conv2d(x, w, None, padding=1))


@needs_onednn
def test_packed_layout_follows_in_place_changes_and_new_shapes():
    w = torch.randn(6, 4, 3, 3)
    x = _inputs(2, 4, (8, 8), torch.float32)
    with torch.inference_mode():
        first = packed_conv2d(x, w, None, 1)
        w.mul_(-2.0)  # an in place update (load_state_dict does the same): repacked
        torch.testing.assert_close(packed_conv2d(x, w, None, 1), -2.0 * first)
        y = _inputs(1, 4, (5, 11), torch.float32)  # another map size
        torch.testing.assert_close(packed_conv2d(y, w, None, 1), F.conv2d(y, w, padding=1))


def test_calls_that_need_gradients_take_the_plain_operators():
    w = torch.randn(6, 4, 3, 3, requires_grad=True)
    x = _inputs(2, 4, (8, 8), torch.float32)
    y = packed_conv2d(x, w, None, 1)
    y.sum().backward()
    torch.testing.assert_close(w.grad, _conv_grad(x, w))
    big = torch.randn(300, PACK_LINEAR_MIN // 300 + 1, requires_grad=True)
    out = packed_linear(torch.randn(3, big.shape[1]), big, None)
    assert out.requires_grad and big not in onednn._PACKED


def _conv_grad(x, w):
    w2 = w.detach().clone().requires_grad_()
    F.conv2d(x, w2, None, padding=1).sum().backward()
    return w2.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_linear_equals_linear_large_and_small(dtype):
    lin = torch.nn.Linear(256, PACK_LINEAR_MIN // 256)
    small = torch.nn.Linear(32, 16)
    fast, fast_small = PackedLinear(lin).to(dtype), PackedLinear(small).to(dtype)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for batch in (1, 9):
        x = torch.randn(batch, 256).to(dtype)
        v = torch.randn(batch, 32).to(dtype)
        with torch.inference_mode():
            torch.testing.assert_close(fast(x), lin.to(dtype)(x), rtol=tol, atol=tol)
            torch.testing.assert_close(fast_small(v), small.to(dtype)(v), rtol=tol, atol=tol)
    assert (fast.weight in onednn._PACKED) == prepacking_available(dtype)
    assert fast_small.weight not in onednn._PACKED  # small weights run as F.linear
    assert not list(fast.parameters())  # inference weights are buffers


def test_flop_counters_see_the_plain_convolution():
    from torch.utils.flop_counter import FlopCounterMode

    w = torch.randn(6, 4, 3, 3)
    x = _inputs(2, 4, (8, 8), torch.float32)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        packed_conv2d(x, w, None, 1)
    assert counter.get_total_flops() == 2 * 2 * 6 * 4 * 9 * 64
    assert w not in onednn._PACKED


@needs_onednn
def test_prepacking_can_be_turned_off_for_a_block():
    w = torch.randn(6, 4, 3, 3)
    x = _inputs(2, 4, (8, 8), torch.float32)
    with torch.inference_mode():
        with onednn.prepacking(False):
            off = packed_conv2d(x, w, None, 1)
            assert w not in onednn._PACKED
        on = packed_conv2d(x, w, None, 1)
    assert w in onednn._PACKED
    torch.testing.assert_close(on, off, rtol=1e-5, atol=1e-5)


def test_bf16_takes_the_plain_operators_where_the_cpu_cannot_lay_it_out(monkeypatch):
    """An AVX2-only CPU has no bf16 conversions: oneDNN refuses to lay bf16 weights out."""
    monkeypatch.setattr(onednn, "_DTYPES", (torch.float32,))
    assert not prepacking_available(torch.bfloat16)
    w = torch.randn(6, 4, 3, 3).bfloat16()
    x = _inputs(2, 4, (8, 8), torch.bfloat16)
    big = torch.randn(PACK_LINEAR_MIN // 64, 64).bfloat16()
    with torch.inference_mode():
        torch.testing.assert_close(packed_conv2d(x, w, None, 1), F.conv2d(x, w, padding=1))
        v = torch.randn(3, 64).bfloat16()
        torch.testing.assert_close(packed_linear(v, big, None), F.linear(v, big))
    assert w not in onednn._PACKED and big not in onednn._PACKED
