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
    SameConv2d,
    SameConvTranspose2d,
    channels_innermost,
    slopes_channels_last,
)
from cosmobench.models.onednn import PACK_LINEAR_MIN, PackedLinear, packed_conv2d

__all__ = ["FlippedConv", "FrozenElementPReLU", "PhaseConv", "PlainConv", "inference_decoder"]


class PlainConv(nn.Module):
    """A stride-1 convolution with symmetric padding for inference: fixed weights, prepacked
    for oneDNN on a CPU (:func:`~cosmobench.models.onednn.packed_conv2d`), channels-last."""

    def __init__(self, weight: Tensor, bias: Tensor | None, padding: int) -> None:
        super().__init__()
        self.register_buffer("weight", weight.contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.padding = int(padding)

    @classmethod
    def from_same_conv(cls, layer: SameConv2d) -> PlainConv:
        """A stride-1, odd-kernel Keras-'same' convolution (padding ``(k - 1) / 2`` each side)."""
        k = layer.kernel_size[0]
        if layer.stride != (1, 1) or layer.kernel_size != (k, k) or k % 2 == 0:
            raise ValueError("PlainConv.from_same_conv takes a stride-1 odd square SameConv2d")
        return cls(layer.weight.detach().clone(), layer.bias, (k - 1) // 2)

    def forward(self, x: Tensor) -> Tensor:
        return packed_conv2d(x, self.weight, self.bias, self.padding)


class FlippedConv(PlainConv):
    """A stride-1 Keras-'same' transposed convolution as a plain convolution (inference)."""

    def __init__(self, layer: SameConvTranspose2d) -> None:
        if layer.stride != (1, 1) or layer.kernel_size[0] != layer.kernel_size[1]:
            raise ValueError("FlippedConv takes a stride-1 square-kernel SameConvTranspose2d")
        k, p = layer.kernel_size[0], layer.padding[0]
        w = layer.weight.detach().transpose(0, 1).flip(2, 3)  # (C_out, C_in, k, k)
        super().__init__(w, layer.bias, k - 1 - p)


class PhaseConv(nn.Module):
    """A stride-2, 3×3 Keras-'same' transposed convolution as four plain convolutions, one per
    output phase with only the taps that phase uses, interleaved (inference); the output is
    channels-last in memory.

    A single galaxy (batch 1) instead takes the sub-pixel form, one 2×2 convolution to
    4·C_out channels and a depth-to-space: 16 taps where the phases have 9, but one call and
    one copy instead of four of each, which is what a batch-1 layer's time is made of. On 2
    Zen 4 cores (ad hoc, layer by layer, prepacked weights) the four decoder layers took
    0.66–0.80× the phase form's time at batch 1 in fp32 (0.62–0.91× in bf16), about the same
    at batch 2, and 1.1–1.7× at batch 4–32.
    """

    # kernel index of each tap (input i-1, then i) of an even (0) and an odd (1) output phase
    _TAPS = {0: [2, 0], 1: [1]}
    # the same taps in the sub-pixel form's 2-wide window (input i-1, then i); None: a zero
    _WINDOW = {a: [None] * (2 - len(taps)) + taps for a, taps in _TAPS.items()}
    # largest batch that takes the sub-pixel form
    SUB_PIXEL_MAX_BATCH = 1

    def __init__(self, layer: SameConvTranspose2d) -> None:
        super().__init__()
        if layer.stride != (2, 2) or layer.kernel_size != (3, 3) or layer.padding != (0, 0):
            raise ValueError("PhaseConv takes a stride-2 3x3 SameConvTranspose2d")
        w = layer.weight.detach()  # (C_in, C_out, 3, 3)
        c_in, c_out = w.shape[:2]
        for a, rows in self._TAPS.items():
            for b, cols in self._TAPS.items():
                k = w[:, :, rows][:, :, :, cols].transpose(0, 1)  # (C_out, C_in, |rows|, |cols|)
                self.register_buffer(f"k{a}{b}", k.contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", layer.bias.detach().clone())
        # sub-pixel kernel: output channel (2a + b)·C_out + c is phase (a, b)'s channel c
        sub = w.new_zeros(2, 2, c_out, c_in, 2, 2)
        for a, rows in self._WINDOW.items():
            for b, cols in self._WINDOW.items():
                for p, kr in enumerate(rows):
                    for q, kc in enumerate(cols):
                        if kr is not None and kc is not None:
                            sub[a, b, :, :, p, q] = w[:, :, kr, kc].t()
        sub = sub.reshape(4 * c_out, c_in, 2, 2)
        self.register_buffer("k_sub", sub.contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias_sub", layer.bias.detach().repeat(4))

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, 2H, 2W)
        b, _, h, w = x.shape
        xp = F.pad(x, (1, 0, 1, 0))  # inputs (i-1, i) x (j-1, j): padded in front
        if b <= self.SUB_PIXEL_MAX_BATCH:
            y = packed_conv2d(xp, self.k_sub, self.bias_sub)  # (B, 4·C_out, H, W)
            c = y.shape[1] // 4
            # depth to space: (B, H, W, a, b, C) -> (B, H, a, W, b, C), one copy
            y = y.permute(0, 2, 3, 1).reshape(b, h, w, 2, 2, c).permute(0, 1, 3, 2, 4, 5)
            return y.reshape(b, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
        ee = packed_conv2d(xp, self.k00, self.bias)  # even rows and columns
        # mixed phases: the convolution pads both ends of the two-tap axis; the last row
        # (column) it adds is dropped
        eo = packed_conv2d(x, self.k01, self.bias, (1, 0))[:, :, :h]
        oe = packed_conv2d(x, self.k10, self.bias, (0, 1))[:, :, :, :w]
        oo = packed_conv2d(x, self.k11, self.bias)  # odd rows and columns: input (i, j) alone
        c = ee.shape[1]
        out = torch.empty(b, c, 2 * h, 2 * w, dtype=ee.dtype, device=ee.device,
                          memory_format=torch.channels_last)
        out[:, :, 0::2, 0::2] = ee
        out[:, :, 0::2, 1::2] = eo
        out[:, :, 1::2, 0::2] = oe
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
    replaced by :class:`FlippedConv` (stride 1) or :class:`PhaseConv` (stride 2, 3×3), every
    stride-1 odd-kernel :class:`~cosmobench.models.layers.SameConv2d` by a :class:`PlainConv`
    and every ``nn.Linear`` of at least ``PACK_LINEAR_MIN`` weights by a
    :class:`~cosmobench.models.onednn.PackedLinear` (weights prepacked for oneDNN on a CPU);
    other layers are kept."""
    out = copy.deepcopy(decoder).eval()
    for parent in list(out.modules()):
        for name, child in parent.named_children():
            if isinstance(child, ElementPReLU):
                setattr(parent, name, FrozenElementPReLU(child))
            if not plain_convs:
                continue
            if isinstance(child, SameConvTranspose2d):
                if child.stride == (1, 1) and child.kernel_size[0] == child.kernel_size[1]:
                    setattr(parent, name, FlippedConv(child))
                elif child.stride == (2, 2) and child.kernel_size == (3, 3):
                    setattr(parent, name, PhaseConv(child))
            elif isinstance(child, SameConv2d):
                k = child.kernel_size
                if child.stride == (1, 1) and k[0] == k[1] and k[0] % 2:
                    setattr(parent, name, PlainConv.from_same_conv(child))
            elif isinstance(child, nn.Linear) and child.weight.numel() >= PACK_LINEAR_MIN:
                setattr(parent, name, PackedLinear(child))
    return out
