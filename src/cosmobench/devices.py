"""Choosing the torch device and the numerical precision: one check, one message, for
every command.

``--device`` takes any torch device string (``cpu``, ``cuda``, ``cuda:N``, ``mps``, ...).
An unknown string, a device this machine lacks, or a CUDA index past the last GPU is a
one-line :class:`~cosmobench.errors.CosmobenchError` naming what is allowed. Every
stage that computes in reduced precision (training step, generation decoder, benchmark
workloads) enters the same :func:`autocast` context.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from cosmobench.errors import CosmobenchError, check_choice

if TYPE_CHECKING:
    import torch

__all__ = ["PRECISIONS", "autocast", "inductor_options", "resolve_device"]

#: Numerical precisions: fp32, or bf16 autocast (weights and optimiser state stay fp32).
PRECISIONS = ("fp32", "bf16")


def inductor_options(device_type: str) -> dict[str, object]:
    """Inductor options every ``torch.compile`` in cosmobench passes for ``device_type``.

    On a CPU, Inductor's own C++ kernels are generated for 256-bit vectors
    (``cpp.simdlen = 256``). With its default, 512-bit code on an AVX-512 CPU, torch 2.13
    generated kernels that write past their buffers: on 2 Zen 4 cores the compiled BNN
    training step aborted with a corrupted heap and the compiled sampler decoder did too,
    and with ``ATEN_CPU_CAPABILITY=avx2`` the compiled CNN step returned a NaN loss; all
    ran correctly with 256-bit code (``tests/train/test_compiled_cpu.py``). Convolutions and
    matrix products are oneDNN/BLAS calls whatever this option, and Zen 4 executes 512-bit
    instructions as two 256-bit halves anyway.
    """
    return {"cpp.simdlen": 256} if device_type == "cpu" else {}


def autocast(
    device_type: str, precision: str, *, cache_enabled: bool = True
) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``precision == "bf16"``, a no-op context for ``fp32``.

    Arguments:
        device_type: ``cpu``, ``cuda``, ... (``torch.device.type``).
        precision: one of :data:`PRECISIONS`.
        cache_enabled: keep autocast's cache of cast weights; turn it off inside CUDA-graph
            captures, whose cached casts would be freed when the context exits.

    Example:
        >>> import torch
        >>> with autocast("cpu", "bf16"):
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.bfloat16
    """
    import torch

    check_choice("precision", precision, PRECISIONS)
    if precision == "bf16":
        return torch.autocast(
            device_type=device_type, dtype=torch.bfloat16, cache_enabled=cache_enabled
        )
    return contextlib.nullcontext()


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """The ``torch.device`` for ``name``, checked to exist on this machine.

    Arguments:
        name: a torch device string.
        local_rank: under ``torchrun``, this process's local rank: a bare ``cuda`` then
            means ``cuda:LOCAL_RANK`` (modulo the GPUs here); otherwise the current GPU.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise CosmobenchError(
            f"device must be a torch device (cpu, cuda, cuda:N, mps, ...); got {name!r}"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CosmobenchError(
                f"device {name!r} asked for but CUDA is not available here; use --device cpu"
            )
        count = torch.cuda.device_count()
        if device.index is None:
            index = torch.cuda.current_device() if local_rank is None else local_rank % count
            device = torch.device("cuda", index)
        if device.index >= count:
            raise CosmobenchError(
                f"device {name!r} does not exist: {count} CUDA device(s) "
                f"here (cuda:0 .. cuda:{count - 1})"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise CosmobenchError(
            f"device {name!r} asked for but MPS is not available here; use --device cpu"
        )
    return device
