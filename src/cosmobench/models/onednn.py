"""Convolutions and dense layers with their weights laid out once for oneDNN (CPU inference).

On a CPU, ``F.conv2d`` and ``F.linear`` hand oneDNN a weight in PyTorch's plain layout, and
every call re-lays it out into the blocked format oneDNN's kernels read (and, for the 4×4 and
8×8 maps of the decoder's first layers at batch 1, ATen takes its slower native convolution
instead). For inference the weight is fixed, so it can be laid out once: oneDNN's *weight
prepacking*, the step PyTorch's own Inductor backend takes when it freezes a model
(``torch._inductor.config.freezing``), done here without compiling, through the same two
operators (``mkldnn::_reorder_convolution_weight`` / ``_reorder_linear_weight`` to lay out,
``mkldnn::_convolution_pointwise`` / ``_linear_pointwise`` to run). The arithmetic is oneDNN's
either way: the same result to rounding (tested), and bit for bit wherever ``F.conv2d``
already went to oneDNN.

The prepacked path saves a fixed cost per call, so it matters for small batches: on 2 Zen 4
cores (ad hoc, hot), a 256→256 3×3 convolution of an 8×8 map took 0.35 against 0.55 ms at
batch 1 (0.20 against 0.32 ms in bf16) and 10.0 against 11.0 ms at batch 32, and the
decoder's 256→4,096 dense layer 70 against 146 µs at batch 1. Dense layers with small
weights (32→256: 17 against 3.5 µs) are faster as they are, so only large ones are packed.

The layouts are cached per weight tensor and rebuilt when the weight is changed in place
(its version counter; an inference tensor has none, so change those by replacing them),
replaced (``.to()``), or meets another input shape or dtype. Calls
that need gradients, run under ``torch.compile`` (Inductor packs by itself) or a dispatch mode
(``FlopCounterMode`` counts the plain operators, not these), or are not on a CPU with oneDNN
take the plain operators.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary

try:  # torch's own test for an active TorchDispatchMode (FlopCounterMode, fake tensors)
    from torch.utils._python_dispatch import is_in_torch_dispatch_mode
except ImportError:  # a torch without it: ask the dispatcher's mode stack directly

    def is_in_torch_dispatch_mode() -> bool:
        return torch._C._len_torch_dispatch_stack() > 0

__all__ = [
    "PackedLinear",
    "packed_conv2d",
    "packed_linear",
    "prepacking",
    "prepacking_available",
]

# Dense layers with fewer weights than this run as F.linear (prepacking loses below it).
PACK_LINEAR_MIN = 1 << 16

_PACKED: WeakIdKeyDictionary = WeakIdKeyDictionary()  # weight -> (stamp, packed weight)


def _operators_available() -> bool:
    ops = torch.ops.mkldnn
    names = (
        "_convolution_pointwise",
        "_reorder_convolution_weight",
        "_linear_pointwise",
        "_reorder_linear_weight",
    )
    return bool(torch.backends.mkldnn.is_available() and all(hasattr(ops, n) for n in names))


def _bf16_supported() -> bool:
    # oneDNN lays bf16 weights out only where the CPU has bf16 conversions (AVX-512 BW/VL/DQ
    # or AVX-NE-CONVERT); elsewhere, an AVX2-only CPU for one, bf16 takes the plain operators
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check is not None and check())


_AVAILABLE = _operators_available()
_DTYPES = (torch.float32, torch.bfloat16) if _AVAILABLE and _bf16_supported() else (torch.float32,)


def prepacking_available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether this torch build has oneDNN and the prepacked operators, and this CPU can lay
    out weights of ``dtype`` (fp32 always; bf16 needs the CPU's bf16 conversions)."""
    return _AVAILABLE and dtype in _DTYPES


_ENABLED = True


@contextlib.contextmanager
def prepacking(enabled: bool) -> Iterator[None]:
    """Turn the prepacked path on or off inside the block (off: the plain operators, the
    computation as before prepacking; for side-by-side benchmarks and debugging)."""
    global _ENABLED
    before, _ENABLED = _ENABLED, bool(enabled)
    try:
        yield
    finally:
        _ENABLED = before


def _eligible(x: Tensor, weight: Tensor) -> bool:
    return (
        _AVAILABLE
        and _ENABLED
        and x.device.type == "cpu"
        and weight.device.type == "cpu"
        and x.dtype == weight.dtype
        and x.dtype in _DTYPES
        and not (x.requires_grad or weight.requires_grad)
        and not torch.compiler.is_compiling()
        and not is_in_torch_dispatch_mode()  # FLOP counters, fake tensors: the plain ops
    )


def _version(weight: Tensor) -> int:
    # an inference tensor (made under torch.inference_mode) has no version counter; it can
    # only be changed in place inside inference mode, which this cache cannot see
    return -1 if weight.is_inference() else weight._version


def _packed(weight: Tensor, stamp: tuple, pack: Callable[[], Tensor]) -> Tensor:
    hit = _PACKED.get(weight)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    packed = pack()
    _PACKED[weight] = (stamp, packed)
    return packed


def packed_conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None, padding: int | Sequence[int] = 0
) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` (stride 1) with the weight prepacked
    for oneDNN when the call allows it (see the module docstring)."""
    pad = [padding, padding] if isinstance(padding, int) else [int(p) for p in padding]
    if not _eligible(x, weight) or x.dim() != 4:
        return F.conv2d(x, weight, bias, padding=pad)
    stamp = (_version(weight), weight.dtype, tuple(x.shape[1:]), tuple(pad))
    packed = _packed(
        weight,
        stamp,
        lambda: torch.ops.mkldnn._reorder_convolution_weight(
            weight, pad, [1, 1], [1, 1], 1, list(x.shape)
        ),
    )
    return torch.ops.mkldnn._convolution_pointwise(
        x, packed, bias, pad, [1, 1], [1, 1], 1, "none", [], ""
    )


def packed_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear(x, weight, bias)`` with the weight prepacked for oneDNN when the call allows
    it and the weight is large (``PACK_LINEAR_MIN``)."""
    if weight.numel() < PACK_LINEAR_MIN or x.dim() != 2 or not _eligible(x, weight):
        return F.linear(x, weight, bias)
    stamp = (_version(weight), weight.dtype)
    packed = _packed(
        weight, stamp, lambda: torch.ops.mkldnn._reorder_linear_weight(weight, x.shape[0])
    )
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


class PackedLinear(nn.Module):
    """An ``nn.Linear`` for inference whose weight is prepacked (:func:`packed_linear`)."""

    def __init__(self, layer: nn.Linear) -> None:
        super().__init__()
        self.register_buffer("weight", layer.weight.detach().clone())
        bias = None if layer.bias is None else layer.bias.detach().clone()
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        return packed_linear(x, self.weight, self.bias)
