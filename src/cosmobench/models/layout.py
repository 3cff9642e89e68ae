"""Per-layer memory layout for training on a CPU: channels-last where the activations
outweigh the kernel.

PyTorch hands a convolution to oneDNN, whose kernels work on channels-innermost data. With
the usual NCHW tensors oneDNN reorders every activation into its blocked layout and back,
in the forward and both backward passes: at batch 8 the paper's CNN spent 8.6 of its 45 ms
of oneDNN time in reorders (2 Xeon cores with AMX; 3.3 ms in this layout, the kernels' own;
``benchmarks/step_variants.py``). Channels-last (NHWC) activations need no reorder, but a
channels-last *kernel* costs PyTorch a strided copy of its gradient every step, and a
contiguous kernel fed a channels-last input is converted four times a step: a 256×256×3×3
kernel's copy takes longer than the reorders it saves.

So the layout is chosen per layer, by size: a convolution whose kernel has at most
:data:`MAX_CHANNELS_LAST_KERNEL` elements (the first three blocks of the paper's network, up
to 128×128×3×3) is laid out channels-last, the larger ones (the 256-filter block, the
8×8 and 4×4 maps) stay NCHW, and each convolution takes its input in its kernel's layout
(:func:`~cosmobench.models.layers.kernel_format`): one conversion of a small map where the
two meet. A per-element PReLU after a channels-last convolution keeps its slopes
channels-innermost, so its kernel walks one layout. The arithmetic is the same; only the
order of oneDNN's sums can differ (tested to rounding).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cosmobench.models.layers import ElementPReLU, SameConv2d, slopes_channels_last
from cosmobench.models.variational import VariationalConv2d

__all__ = ["MAX_CHANNELS_LAST_KERNEL", "match_optimizer_state", "mixed_channels_last"]

#: Largest kernel (elements) laid out channels-last by :func:`mixed_channels_last`.
MAX_CHANNELS_LAST_KERNEL = 128 * 128 * 3 * 3


def _kernels(module: nn.Module) -> list[nn.Parameter]:
    if isinstance(module, SameConv2d):
        return [module.weight]
    if isinstance(module, VariationalConv2d):
        return [module.weight_mu, module.weight_rho]
    return []


def match_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Lay every state tensor of ``optimizer`` out as its parameter (same values).

    The CPU's fused Adam walks parameter, gradient and state in memory order, so their
    layouts must agree: a parameter converted to channels-last after its state was created
    (a resumed run) would otherwise have its elements silently mixed up (tested)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if (isinstance(value, Tensor) and value.shape == p.shape
                        and value.stride() != p.stride()):  # fmt: skip
                    state[key] = torch.empty_like(p).copy_(value)


def mixed_channels_last(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    max_kernel: int = MAX_CHANNELS_LAST_KERNEL,
) -> int:
    """Lay the small convolution kernels of ``model`` (and the PReLU slopes after them) out
    channels-last, in place; return how many convolutions were.

    Call it before the optimiser's first step, or pass ``optimizer`` so that any state it
    holds follows its parameters. Idempotent. Not for a model wrapped in
    ``DistributedDataParallel`` (its gradient buckets fix the layouts at wrapping).

    Arguments:
        model: any module; :class:`~cosmobench.models.layers.SameConv2d` and
            :class:`~cosmobench.models.variational.VariationalConv2d` layers are laid out.
        optimizer: the optimiser of ``model``'s parameters, if it exists yet.
        max_kernel: largest kernel (elements) laid out channels-last.

    Example:
        >>> from cosmobench.models import ShapeConfig, ShapeNet
        >>> mixed_channels_last(ShapeNet(ShapeConfig()))  # the first 6 of 8 convolutions
        6
    """
    count = 0
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        layers = list(seq)
        for i, layer in enumerate(layers):
            kernels = _kernels(layer)
            if not kernels or kernels[0].numel() > max_kernel:
                continue
            for p in kernels:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
            count += 1
            after = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(after, ElementPReLU) and after.weight.dim() == 3:
                after.weight.data = slopes_channels_last(after.weight.data)
    if optimizer is not None:
        match_optimizer_state(optimizer)
    return count
