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
  for an odd one (from input ``i``). Each of the four output phases is therefore a plain
  convolution of the input with only its own taps — 2×2, 2×1, 1×2 and 1×1, the transposed
  kernel's 9 taps in all — whose outputs interleave into the upsampled map (the phase
  decomposition behind "sub-pixel convolution", Shi et al. 2016, CVPR, arXiv:1609.05158).
  One 2×2 convolution to 4·C_out channels and a depth-to-space would compute the same sums
  with zeros in 7 of its 16 taps per pixel; the four phase convolutions skip them. On 2 Zen 4
  cores the four layers took 0.73× the single convolution's time at batch 32 in fp32 and
  0.75× in bf16, and 0.80× the transposed convolutions' own time at batch 1 (ad hoc, layer
  by layer).

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

__all__ = ["FlippedConv", "FrozenElementPReLU", "PhaseConv", "inference_decoder"]


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


class PhaseConv(nn.Module):
    """A stride-2, 3×3 Keras-'same' transposed convolution as four plain convolutions, one per
    output phase with only the taps that phase uses, interleaved (inference); the output is
    channels-last in memory."""

    # kernel index of each tap (input i-1, then i) of an even (0) and an odd (1) output phase
    _TAPS = {0: [2, 0], 1: [1]}

    def __init__(self, layer: SameConvTranspose2d) -> None:
        super().__init__()
        if layer.stride != (2, 2) or layer.kernel_size != (3, 3) or layer.padding != (0, 0):
            raise ValueError("PhaseConv takes a stride-2 3x3 SameConvTranspose2d")
        w = layer.weight.detach()  # (C_in, C_out, 3, 3)
        for a, rows in self._TAPS.items():
            for b, cols in self._TAPS.items():
                k = w[:, :, rows][:, :, :, cols].transpose(0, 1)  # (C_out, C_in, |rows|, |cols|)
                self.register_buffer(f"k{a}{b}", k.contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", layer.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, 2H, 2W)
        b, _, h, w = x.shape
        # even rows and columns: inputs (i-1, i) x (j-1, j), the input padded in front
        ee = F.conv2d(F.pad(x, (1, 0, 1, 0)), self.k00, self.bias)
        # mixed phases: the convolution pads both ends of the two-tap axis; the last row
        # (column) it adds is dropped
        eo = F.conv2d(x, self.k01, self.bias, padding=(1, 0))
        oe = F.conv2d(x, self.k10, self.bias, padding=(0, 1))
        oo = F.conv2d(x, self.k11, self.bias)  # odd rows and columns: input (i, j) alone
        out = torch.empty(b, ee.shape[1], 2 * h, 2 * w, dtype=ee.dtype, device=ee.device,
                          memory_format=torch.channels_last)
        out[:, :, 0::2, 0::2] = ee
        out[:, :, 0::2, 1::2] = eo[:, :, :h]
        out[:, :, 1::2, 0::2] = oe[:, :, :, :w]
        out[:, :, 1::2, 1::2] = oo
        return out


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
    replaced by :class:`FlippedConv` (stride 1) or :class:`PhaseConv` (stride 2, 3×3);
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
                setattr(parent, name, PhaseConv(child))
    return out
