"""The device's peak FLOP/s, measured in the same run: a large matrix product.

Model FLOPs utilisation (MFU, Chowdhery et al. 2022, "PaLM", Appendix B) divides the FLOPs a
step needs by its time and by the device's peak. nanoGPT's ``bench.py`` hard-codes an A100
peak; we measure it instead, on the same device, with the same thread count and precision as
the step: ``2 N^3`` FLOPs for an ``N x N`` product, timed with
``torch.utils.benchmark.Timer.blocked_autorange`` (device-synchronised), best block kept.

On CUDA, fp32 convolutions run in TF32 by default (``torch.backends.cudnn.allow_tf32``), so
an fp32 step is compared with a TF32 matmul peak when that flag is on (:func:`peak_key`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.benchmark import Timer

__all__ = ["measure_peak", "measure_peaks", "peak_key"]

_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}


def peak_key(precision: str, device: torch.device) -> str:
    """Which measured peak a step of ``precision`` is compared with on ``device``."""
    if precision == "fp32" and device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return precision


@contextlib.contextmanager
def _matmul_precision(key: str, device: torch.device) -> Iterator[None]:
    if device.type != "cuda":
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = key == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def default_size(device: torch.device) -> int:
    """Matrix size: big enough to saturate the device, small enough to time in ~1 s."""
    return 2048 if device.type == "cpu" else 8192


def measure_peak(
    device: torch.device, precision: str = "fp32", *, size: int | None = None,
    min_run_time: float = 0.5,
) -> dict[str, Any]:
    """Measure the peak FLOP/s of an ``N x N`` matrix product.

    Arguments:
        device: where to run it.
        precision: ``fp32``, ``tf32`` (CUDA) or ``bf16``.
        size: N (default 2048 on CPU, 8192 elsewhere).
        min_run_time: seconds of timed blocks (``blocked_autorange``).

    Returns:
        ``{"flops_per_s", "size", "dtype", "median_s", "min_s", "threads"}``; the peak uses
        the fastest block (a peak, not a typical value).
    """
    n = size or default_size(device)
    g = torch.Generator(device=device).manual_seed(0)  # drawn where they are used
    a = torch.randn(n, n, generator=g, device=device).to(_DTYPES[precision])
    b = torch.randn(n, n, generator=g, device=device).to(_DTYPES[precision])
    with _matmul_precision(precision, device):
        timer = Timer(
            stmt="torch.mm(a, b)",
            globals={"torch": torch, "a": a, "b": b},
            num_threads=torch.get_num_threads(),
            label="peak",
            sub_label=precision,
        )
        timer.timeit(2)  # warm-up: oneDNN / cuBLAS kernel selection
        m = timer.blocked_autorange(min_run_time=min_run_time)
    best = min(m.times)
    return {
        "flops_per_s": 2.0 * n**3 / best,
        "size": n,
        "dtype": str(_DTYPES[precision]).removeprefix("torch."),
        "median_s": m.median,
        "min_s": best,
        "threads": torch.get_num_threads(),
    }


def measure_peaks(
    device: torch.device, precisions: set[str], *, size: int | None = None,
    min_run_time: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Peaks for the precisions the run's modes use, keyed by :func:`peak_key`."""
    keys = sorted({peak_key(p, device) for p in precisions})
    if min_run_time is None:  # a GPU's 8192^3 product takes milliseconds: 0.25 s is plenty
        min_run_time = 0.5 if device.type == "cpu" else 0.25
    out = {}
    for key in keys:
        try:
            out[key] = measure_peak(device, key, size=size, min_run_time=min_run_time)
        except RuntimeError as e:  # e.g. bf16 matmul not implemented on this device
            out[key] = {"flops_per_s": None, "error": str(e).splitlines()[0][:200]}
    return out
