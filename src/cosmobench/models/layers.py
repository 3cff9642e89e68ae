"""Building blocks of the Arcelin (2021) networks, matching Keras layer for layer.

The paper's networks were written in TensorFlow 2.1 / Keras. Three Keras conventions matter
for reproducing them exactly in PyTorch:

* **PReLU** has one slope *per element* by default (``shared_axes=None``: a weight of shape
  ``(C, H, W)``), initialised to zero. This is what makes the paper's parameter counts
  (1,517,217 for the shape CNN) come out; :class:`ElementPReLU` implements it and
  :func:`make_prelu` offers the per-channel variant as an option.
* **'same' padding** with stride 2 pads *asymmetrically*: for an even input the single
  padding pixel goes after (bottom/right), so a 3×3 stride-2 convolution of 64 pixels looks
  at pixels (0, 1, 2), (2, 3, 4), ... (62, 63, pad). PyTorch's ``padding=1`` would centre
  the windows one pixel earlier. :class:`SameConv2d` and :class:`SameConvTranspose2d` follow
  TensorFlow (``tf.nn.conv2d`` / ``conv2d_transpose`` with ``padding='SAME'``), so output
  sizes are 64 → 32 → 16 → 8 → 4 and transposed convolutions give exactly ×2.
* **Initialisation**: Glorot-uniform kernels and zero biases (Keras defaults); BatchNorm with
  momentum 0.99 (PyTorch ``momentum=0.01``) and ``epsilon=1e-3``.

Data layout stays PyTorch's NCHW; Keras flattens NHWC, which only permutes the weights of the
dense layer that follows (same function class, same parameter count).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ElementPReLU",
    "SameConv2d",
    "SameConvTranspose2d",
    "halve",
    "keras_batchnorm",
    "keras_linear",
    "element_prelu",
    "element_prelu_reference",
    "make_prelu",
    "same_conv2d",
    "kernel_format",
    "same_pads",
    "channels_innermost",
    "slopes_channels_last",
]


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding (before, after) along one axis.

    The output has ``ceil(size / stride)`` pixels; the total padding needed is split with the
    extra pixel *after*, as ``tf.nn.conv2d`` does.

    Example:
        >>> same_pads(64, 3, 2)
        (0, 1)
        >>> same_pads(64, 3, 1)
        (1, 1)
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def kernel_format(weight: Tensor) -> torch.memory_format:
    """The memory format a convolution's input should have to match its kernel.

    ``channels_last`` for a kernel laid out channels-last (and not also plainly contiguous,
    as a 1×1 or single-input-channel kernel is), else ``contiguous_format``. PyTorch's
    oneDNN path converts whichever of input and kernel disagrees with the other, and
    converting a large kernel (256×256×3×3) costs more than converting a small activation:
    each convolution therefore takes its input in its kernel's layout
    (:mod:`cosmobench.models.layout` chooses the kernels' layouts).
    """
    if weight.dim() == 4 and not weight.is_contiguous() and weight.is_contiguous(
        memory_format=torch.channels_last
    ):
        return torch.channels_last
    return torch.contiguous_format


def same_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int) -> Tensor:
    """2-D convolution with TensorFlow 'SAME' padding (asymmetric when needed), its input
    laid out as its kernel (:func:`kernel_format`).

    Arguments:
        x: Input ``(B, C_in, H, W)``.
        weight: Kernel ``(C_out, C_in, k, k)``.
        bias: Bias ``(C_out,)`` or ``None``.
        stride: Stride (same on both axes).

    Returns:
        ``(B, C_out, ceil(H / stride), ceil(W / stride))``.
    """
    x = x.contiguous(memory_format=kernel_format(weight))  # no-op when they already agree
    k = weight.shape[-1]
    ph = same_pads(x.shape[-2], k, stride)
    pw = same_pads(x.shape[-1], k, stride)
    if ph[0] == ph[1] and pw[0] == pw[1]:  # symmetric: let the convolution pad (no copy)
        return F.conv2d(x, weight, bias, stride=stride, padding=(ph[0], pw[0]))
    # shapes are static, so this branch is resolved once under torch.compile / CUDA graphs
    x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
    return F.conv2d(x, weight, bias, stride=stride)


def _keras_init_(module: nn.Module) -> None:
    """Glorot-uniform weight and zero bias, the Keras defaults."""
    nn.init.xavier_uniform_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with Keras ``padding='same'`` and Keras initialisation.

    Arguments:
        in_channels: Input channels.
        out_channels: Output channels (Keras ``filters``).
        kernel_size: Square kernel size.
        stride: Stride; 2 halves the image (rounding up), as TensorFlow.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)
        _keras_init_(self)

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, H/s, W/s)
        return same_conv2d(x, self.weight, self.bias, self.stride[0])


class SameConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with Keras ``padding='same'``: output size = input × stride.

    TensorFlow's transposed 'SAME' convolution is the adjoint of the 'SAME' convolution of the
    (stride × larger) output, so it crops the full transposed result by that convolution's
    padding: ``(k - s) // 2`` pixels before and the rest after (0 and 1 for k=3, s=2).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1
    ) -> None:
        if kernel_size < stride:
            raise ValueError("SameConvTranspose2d needs kernel_size >= stride")
        before = (kernel_size - stride) // 2
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=before)
        self._crop_after = (kernel_size - stride) - 2 * before  # 0 or 1 extra pixel to drop
        _keras_init_(self)

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, s·H, s·W)
        y = F.conv_transpose2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)
        if self._crop_after:
            y = y[..., : y.shape[-2] - self._crop_after, : y.shape[-1] - self._crop_after]
        return y


class _ElementPReLU(torch.autograd.Function):
    """Forward: ATen's fused ``_prelu_kernel``. Backward in three vectorised passes instead of
    ATen's scalar ``_prelu_kernel_backward`` (2x slower on CPU): with ``t`` the gradient
    where ``x > 0`` (``threshold_backward``), ``dx = t + w (g - t)`` is one ``lerp``, and
    ``dw = Σ_b g · min(x, 0)`` is accumulated over the (small) batch in place."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return torch._prelu_kernel(x, weight)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            kept = torch.ops.aten.threshold_backward(grad, x, 0)  # grad where x > 0, else 0
        if ctx.needs_input_grad[0]:
            grad_x = torch.lerp(kept, grad, weight)  # grad where x > 0, else weight · grad
        if ctx.needs_input_grad[1]:
            neg = grad - kept  # grad where x <= 0, else 0
            if weight.dim() < x.dim():  # per-sample weight: sum over the batch
                grad_w = neg[0] * x[0]
                for b in range(1, x.shape[0]):
                    grad_w.addcmul_(neg[b], x[b])
                grad_w = grad_w.sum_to_size(weight.shape)
            else:
                grad_w = (neg * x).sum_to_size(weight.shape)
        return grad_x, grad_w


def element_prelu(x: Tensor, weight: Tensor) -> Tensor:
    """PReLU with a slope per element: ``where(x > 0, x, weight * x)``, ``weight`` broadcast
    over the batch.

    One fused element-wise kernel forward (ATen's ``_prelu_kernel``, which ``F.prelu`` itself
    calls after reshaping a per-channel weight; it broadcasts any weight) and three
    vectorised passes backward, instead of the five kernels forward and seven backward of
    ``relu(x) - weight * relu(-x)`` (``benchmarks/small_batch.py``). The slope is cast to the
    activation's dtype so that bf16 activations stay bf16 under autocast.

    Arguments:
        x: Activations ``(B, *shape)``.
        weight: Slopes ``shape`` (or anything broadcastable to ``x``'s trailing dimensions).
    """
    return _ElementPReLU.apply(x, weight.to(x.dtype))


def channels_innermost(x: Tensor) -> bool:
    """Whether a 4-d activation has its channels innermost in memory (channels-last, or a
    cropped view of it): per-element PReLU slopes must then be laid out the same way, or
    the kernel walks two layouts at once and cannot vectorise."""
    return x.dim() == 4 and x.stride(1) == 1 and x.shape[1] > 1


def slopes_channels_last(weight: Tensor) -> Tensor:
    """Per-element slopes ``(C, H, W)`` copied with their channels innermost (same shape)."""
    return weight.permute(1, 2, 0).contiguous().permute(2, 0, 1)


def element_prelu_reference(x: Tensor, weight: Tensor) -> Tensor:
    """The textbook form of :func:`element_prelu`, kept as the tests' reference."""
    return torch.where(x > 0, x, weight.to(x.dtype) * x)


class ElementPReLU(nn.Module):
    r"""Keras ``PReLU()``: :math:`f(x) = x` for :math:`x > 0`, :math:`\alpha x` otherwise,
    with one learnt slope :math:`\alpha` per element of the feature map.

    Arguments:
        shape: Shape of one sample's features, e.g. ``(C, H, W)`` or ``(F,)``.
        init: Initial slope (Keras: 0, i.e. the layer starts as a ReLU).

    Example:
        >>> act = ElementPReLU((2, 4, 4))
        >>> act.weight.shape
        torch.Size([2, 4, 4])
    """

    def __init__(self, shape: tuple[int, ...], init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full(tuple(shape), float(init)))

    def forward(self, x: Tensor) -> Tensor:  # (B, *shape) -> (B, *shape)
        w = self.weight
        if channels_innermost(x) and w.stride(0) != 1:
            w = slopes_channels_last(w)
        return element_prelu(x, w)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.weight.shape)}"


def make_prelu(kind: str, channels: int, size: int | None = None) -> nn.Module:
    """A PReLU for a ``(channels, size, size)`` map (or ``(channels,)`` vector if ``size`` is None).

    Arguments:
        kind: ``"element"`` (Keras default, one slope per element) or ``"channel"`` (one
            slope per channel, ``shared_axes=[1, 2]`` in Keras).
        channels: Number of channels or features.
        size: Spatial size of the square map, ``None`` for a dense layer's output.
    """
    if size is None:  # dense features: per element and per channel coincide
        return ElementPReLU((channels,))
    if kind == "element":
        return ElementPReLU((channels, size, size))
    if kind == "channel":
        return nn.PReLU(channels, init=0.0)
    raise ValueError(f"prelu must be 'element' or 'channel'; got {kind!r}")


def keras_batchnorm(channels: int) -> nn.BatchNorm2d:
    """``BatchNormalization()`` with Keras's defaults (momentum 0.99, epsilon 1e-3)."""
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


def keras_linear(in_features: int, out_features: int) -> nn.Linear:
    """``Dense(out_features)`` with Keras initialisation (Glorot uniform, zero bias)."""
    layer = nn.Linear(in_features, out_features)
    _keras_init_(layer)
    return layer


def halve(size: int) -> int:
    """Spatial size after a stride-2 'same' convolution (``ceil(size / 2)``)."""
    return math.ceil(size / 2)
