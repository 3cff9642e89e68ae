"""The one optimisation step every model trains with, and the benchmark times.

:func:`make_train_step` returns ``step(x, y) -> loss``: ``zero_grad(set_to_none=True)``,
forward and loss (under bf16 autocast when asked), backward, ``optimizer.step()``. It never
reads a value back to the host (no ``.item()``), so the whole step can be wrapped in
``torch.compile`` or captured in one CUDA graph (with ``make_optimizer(capturable=True)``).

How a batch becomes a loss depends on the model (:func:`model_loss`): the shape networks
minimise the ELBO ``NLL + KL / n_train`` (the KL is zero for the deterministic CNN); the VAE
reconstructs noiseless from noisy normalised images; the flow maximises the likelihood of
VAE latents (``step(z, None)``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from cosmobench.allocator import retain_freed_memory
from cosmobench.devices import PRECISIONS, autocast, inductor_options
from cosmobench.errors import check_choice
from cosmobench.models.layout import match_optimizer_state, mixed_channels_last

__all__ = [
    "make_optimizer",
    "make_train_step",
    "model_loss",
    "LossModule",
    "autocast",
    "compile_options",
]

TrainStep = Callable[[Tensor, Tensor | None], Tensor]


def make_optimizer(
    model: nn.Module, lr: float = 1e-3, *, capturable: bool = False, tensor_lr: bool = False
) -> torch.optim.Adam:
    """Adam (Kingma & Ba 2014, arXiv:1412.6980) with the paper's learning rate 1e-3.

    Arguments:
        model: the network whose parameters are optimised.
        lr: learning rate.
        capturable: keep Adam's step counter on the device so that ``optimizer.step()``
            can be captured in a CUDA graph (needs the parameters on CUDA).
        tensor_lr: hold the learning rate in a 0-d tensor, for a rate that changes during
            training: a compiled step then reads the new value instead of recompiling for
            every new float (schedulers update it in place).
    """
    rate: float | Tensor = torch.tensor(float(lr)) if tensor_lr else lr
    # One fused kernel for every parameter on CPU and CUDA (torch >= 2.4 on CPU) instead of
    # ~10 element-wise passes per parameter: a quarter of a batch-2 CNN step on a CPU.
    fused = _device_type(model) in ("cpu", "cuda")
    return torch.optim.Adam(model.parameters(), lr=rate, capturable=capturable, fused=fused or None)


def model_loss(model: nn.Module, x: Tensor, y: Tensor | None, n_train: int) -> Tensor:
    """The training loss of one batch for any cosmobench model.

    Arguments:
        model: any cosmobench model — ``ShapeNet`` (CNN or BNN), ``VAE``, ``LatentFlow``
            all share the signature ``loss(x, y, n_train)`` — or a :class:`LossModule` /
            ``DistributedDataParallel(LossModule)``, whose ``forward(x, y)`` is the loss.
        x: inputs: images ``(B, 6, 64, 64)``, or latents ``(B, D)`` for the flow.
        y: targets ``(B, T)`` for the shape networks, normalised noiseless images for the
            VAE, ``None`` for the flow.
        n_train: number of training examples; weights the BNN's KL term (the ELBO).

    Returns:
        A scalar tensor (mean over the batch).
    """
    if isinstance(model, LossModule | nn.parallel.DistributedDataParallel):
        return model(x, y)
    return model.loss(x, y, n_train)


class LossModule(nn.Module):
    """A model whose ``forward(x, y)`` is its training loss.

    DistributedDataParallel synchronises gradients only for work done inside its
    ``forward``; wrapping the loss in a module lets ``DDP(LossModule(model, n))`` average
    the gradients of :func:`model_loss` across ranks.
    """

    def __init__(self, model: nn.Module, n_train: int) -> None:
        super().__init__()
        self.model = model
        self.n_train = int(n_train)

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        """The loss of batch ``(x, y)``."""
        return model_loss(self.model, x, y, self.n_train)


def _device_type(model: nn.Module) -> str:
    for p in model.parameters():
        return p.device.type
    return "cpu"


def _aten_random_under_compile() -> None:
    """Make ``torch.compile`` draw random numbers with ATen's generator, as eager does.

    Inductor's own generator (Philox, one call per element) is a scalar loop on the CPU: for
    the BNN's 1.2 M weight-noise numbers per step it cost more than the whole eager step
    (batch 2, one thread: 154 ms CPU compiled against ~90 ms eager; 111 ms with ATen's).
    With ATen's, a compiled step also draws the same numbers as the eager one.
    """
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True


def compile_options(model: nn.Module) -> dict[str, object]:
    """Inductor options for ``torch.compile`` of ``model``'s steps: on a CPU,
    :func:`cosmobench.devices.inductor_options` (256-bit code) and the following.

    A Bayesian network on the CPU compiles without inductor's layout optimisation
    (``layout_optimization=False``). That optimisation lays convolution weights out
    channels-last, which for a network whose weights are a fresh sample every step means
    transposing every sample every step: on 2 Xeon cores, a compiled bf16 BNN step took
    91 ms at batch 2 and 168 ms at batch 8 with it, 42 and 100 ms without. On AVX-512 CPUs
    torch 2.13 also generates, for a 3×3 kernel's 9-element axis, a transposing kernel that
    stores whole 16-float vectors out of 8-float tiles; the paper's compiled fp32 BNN step
    then aborted with a corrupted heap (``malloc_consolidate(): invalid chunk size``), and
    ran with the code generation capped to AVX2 or without the layout optimisation. The
    deterministic CNN keeps it (its weights change by an Adam step, and the optimisation
    made its compiled bf16 step at batch 14 faster: 81 ms against 111 ms).
    """
    from cosmobench.models.variational import VariationalLayer

    device_type = _device_type(model)
    options = inductor_options(device_type)
    if device_type == "cpu" and any(isinstance(m, VariationalLayer) for m in model.modules()):
        options["layout_optimization"] = False
    return options


def make_train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    n_train: int,
    precision: str = "fp32",
    channels_last: bool = False,
    mixed_layout: bool | None = None,
) -> TrainStep:
    """Build the exact optimisation step the trainer runs and the benchmark times.

    Arguments:
        model: a cosmobench model (see :func:`model_loss`), a :class:`LossModule`, or a
            ``DistributedDataParallel`` wrapping a :class:`LossModule`.
        optimizer: from :func:`make_optimizer`.
        n_train: number of training examples (the ELBO's KL weight is ``1 / n_train``).
        precision: ``fp32``, or ``bf16`` to autocast the forward pass and loss to bfloat16
            (weights, gradients and the optimiser stay fp32).
        channels_last: lay the model's 4-d weights and each batch of images out
            channels-last (NHWC, oneDNN's own layout; the same gradients to rounding,
            tested). The model is converted in place. Off by default: for the CNN on 2
            Xeon cores (2 threads, interleaved, idle) NHWC was 9 % slower at batch 2 and
            4 % at batch 4, 4–7 % faster at batch 8–14; a BNN step doubled (measured
            before channels-last kernels drew their noise contiguously).
        mixed_layout: lay the small convolutions out channels-last and keep the large ones
            NCHW (:func:`cosmobench.models.layout.mixed_channels_last`; parameters and any
            optimiser state converted in place). ``None`` (default): on when the model is
            on the CPU, not ``DistributedDataParallel``-wrapped and ``channels_last`` is
            off. The NCHW reorders it saves were a fifth of the oneDNN time of a CNN step
            at batch 8; the step was 1.03-1.16x faster (``benchmarks/step_variants.py``).

    Returns:
        ``step(x, y) -> loss``: one step on batch ``(x, y)``; the loss is returned as a
        detached device tensor, never synchronised with the host. Its ``compile_options``
        attribute holds :func:`compile_options` of ``model``, which
        :func:`cosmobench.bench.modes.mode_step` passes to ``torch.compile``.

    Example:
        >>> net = torch.nn.Linear(3, 1)
        >>> net.loss = lambda x, y, n: ((net(x) - y) ** 2).mean()
        >>> step = make_train_step(net, make_optimizer(net), n_train=8)
        >>> step(torch.ones(4, 3), torch.zeros(4, 1)).shape
        torch.Size([])
    """
    check_choice("precision", precision, PRECISIONS)
    ctx_type = _device_type(model)
    n_train = int(n_train)
    _aten_random_under_compile()
    if channels_last:
        model.to(memory_format=torch.channels_last)  # same Parameter objects: Adam keeps them
        match_optimizer_state(optimizer)  # ... and any state it has follows their layout
    if ctx_type == "cpu":
        retain_freed_memory()  # no page faults for each step's activations
    if mixed_layout is None:
        mixed_layout = ctx_type == "cpu" and not channels_last and not isinstance(
            model, nn.parallel.DistributedDataParallel
        )
    if mixed_layout:
        mixed_channels_last(model, optimizer)

    def step(x: Tensor, y: Tensor | None) -> Tensor:
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with autocast(ctx_type, precision):
            loss = model_loss(model, x, y, n_train)
        loss.backward()
        optimizer.step()
        return loss.detach()

    step.compile_options = compile_options(model)  # type: ignore[attr-defined]
    return step
