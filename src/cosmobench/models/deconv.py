"""The decoder's transposed convolutions recast as plain convolutions, for fast inference.

The VAE decoder (Arcelin 2021, §2.3) upsamples with Keras-'same' transposed convolutions
(:class:`~cosmobench.models.layers.SameConvTranspose2d`). On CPUs oneDNN runs the stride-2
ones far below the efficiency of a plain convolution (on 2 Xeon cores with AMX, bf16, batch
32: a seventh to a third of a stride-1 layer's FLOP rate). A transposed convolution is a plain
convolution in disguise (Shi et al. 2016, arXiv:1609.07009, "Is the deconvolution layer the
same as a convolutional layer?"):

* **stride 1**: ``conv_transpose(x, W, pad=p)`` is ``conv(x, W', pad=k-1-p)`` with ``W'`` the
  kernel flipped in space and its in/out channels swapped;
* **stride 2, kernel 3** (Keras crops 0 before and 1 after): output pixel ``(2i+a, 2j+b)``
  takes kernel taps ``{2, 0}`` for an even phase (from input ``i-1`` and ``i``) and ``{1}``
  for an odd one (from input ``i``). One 2×2 convolution of the input padded by a row and a
  column in front, with the four phases' kernels as 4·C_out output channels (zeros where a
  phase has no tap), followed by depth-to-space ("sub-pixel convolution", Shi et al. 2016,
  CVPR, arXiv:1609.05158), computes exactly the same sums. The zero taps cost 16/9 of the
  FLOPs, which the plain convolution's efficiency repays.

Same parameters, same function (up to summation order: tested), inference only: the
derived kernels are copied from the trained layer at construction.

The decoder's per-element PReLUs are frozen the same way (:class:`FrozenElementPReLU`): a
training :class:`~cosmobench.models.layers.ElementPReLU` re-lays its slopes out channels-last on
every call to match a channels-last activation (one copy of the slopes per call: at batch 1 as
large as the activation itself, ~1.8 ms of a 9.5 ms decode on 2 Xeon cores); the frozen one keeps
both layouts.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cosmobench.models.layers import (
    ElementPReLU,
    SameConvTranspose2d,
    channels_innermost,
    slopes_channels_last,
)

__all__ = ["FlippedConv", "FrozenElementPReLU", "SubPixelConv", "inference_decoder"]


class FlippedConv(nn.Module):
    """A stride-1 Keras-'same' transposed convolution as a plain convolution (inference)."""

    def __init__(self, layer: SameConvTranspose2d) -> None:
        super().__init__()
        if layer.stride != (1, 1) or layer.kernel_size[0] != layer.kernel_size[1]:
            raise ValueError("FlippedConv takes a stride-1 square-kernel SameConvTranspose2d")
        k, p = layer.kernel_size[0], layer.padding[0]
        w = layer.weight.detach().transpose(0, 1).flip(2, 3)  # (C_out, C_in, k, k)
        self.register_buffer("weight", w.contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", layer.bias.detach().clone())
        self.padding = k - 1 - p

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)


class SubPixelConv(nn.Module):
    """A stride-2, 3×3 Keras-'same' transposed convolution as a 2×2 convolution to
    4·C_out channels and depth-to-space (inference); the output is channels-last in memory."""

    # kernel index of each (phase, tap): even phase: tap 0 (input i-1) -> 2, tap 1 (i) -> 0
    _TAPS = {0: {0: 2, 1: 0}, 1: {1: 1}}

    def __init__(self, layer: SameConvTranspose2d) -> None:
        super().__init__()
        if layer.stride != (2, 2) or layer.kernel_size != (3, 3) or layer.padding != (0, 0):
            raise ValueError("SubPixelConv takes a stride-2 3x3 SameConvTranspose2d")
        w = layer.weight.detach()  # (C_in, C_out, 3, 3)
        c_in, c_out = w.shape[:2]
        k = w.new_zeros(2, 2, c_out, c_in, 2, 2)  # phase a, phase b, C_out, C_in, tap, tap
        for a, rows in self._TAPS.items():
            for b, cols in self._TAPS.items():
                for ta, kh in rows.items():
                    for tb, kw in cols.items():
                        k[a, b, :, :, ta, tb] = w[:, :, kh, kw].T
        k = k.reshape(4 * c_out, c_in, 2, 2)  # output channel (2a + b)·C_out + c
        self.register_buffer("weight", k.contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", layer.bias.detach().repeat(4))
        self.out_channels = c_out

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, 2H, 2W)
        y = F.conv2d(F.pad(x, (1, 0, 1, 0)), self.weight, self.bias)  # (B, 4·C_out, H, W)
        b, _, h, w = y.shape
        c = self.out_channels
        # depth to space, channels innermost: (B, H, W, a, b, C) -> (B, H, a, W, b, C)
        t = y.permute(0, 2, 3, 1).reshape(b, h, w, 2, 2, c).permute(0, 1, 3, 2, 4, 5)
        return t.reshape(b, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


class FrozenElementPReLU(nn.Module):
    """An :class:`~cosmobench.models.layers.ElementPReLU` for inference, its slopes laid out
    once both ways: as stored, and channels-last (channels innermost) for 4-d activations
    with that layout, so that ATen's ``_prelu_kernel`` walks one layout and vectorises."""

    def __init__(self, layer: ElementPReLU) -> None:
        super().__init__()
        w = layer.weight.detach()
        self.register_buffer("weight", w.clone())
        channels_last = slopes_channels_last(w) if w.dim() == 3 else w.clone()
        self.register_buffer("weight_channels_last", channels_last)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight_channels_last if channels_innermost(x) else self.weight
        return torch._prelu_kernel(x, w.to(x.dtype))


def inference_decoder(decoder: nn.Module, plain_convs: bool = True) -> nn.Module:
    """A copy of ``decoder`` for inference (eval mode), the same function: every
    :class:`~cosmobench.models.layers.ElementPReLU` it holds (at any depth) frozen as
    :class:`FrozenElementPReLU` and, with ``plain_convs``, every :class:`SameConvTranspose2d`
    replaced by :class:`FlippedConv` (stride 1) or :class:`SubPixelConv` (stride 2, 3×3);
    other transposed convolutions are kept."""
    out = copy.deepcopy(decoder).eval()
    for parent in list(out.modules()):
        for name, child in parent.named_children():
            if isinstance(child, ElementPReLU):
                setattr(parent, name, FrozenElementPReLU(child))
            if not plain_convs or not isinstance(child, SameConvTranspose2d):
                continue
            if child.stride == (1, 1) and child.kernel_size[0] == child.kernel_size[1]:
                setattr(parent, name, FlippedConv(child))
            elif child.stride == (2, 2) and child.kernel_size == (3, 3):
                setattr(parent, name, SubPixelConv(child))
    return out
