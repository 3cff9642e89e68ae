"""The device's roofline, measured in the same run, next to its theoretical peak.

Model FLOPs utilisation (MFU, Chowdhery et al. 2022, "PaLM", Appendix B) divides the FLOPs a
step needs by its time and by the device's peak. nanoGPT's ``bench.py`` hard-codes an A100
peak; we measure it instead, on the same device, with the same thread count and precision as
the step. One matrix product is not the machine's peak (a compiled CNN step can beat a
2048² ``mm``), so the roofline is the best of several kernels: matrix products at several
sizes (``2 N^3`` FLOPs) and a 3x3 'same' convolution shaped like the shape network's second
block (``2 B C_out H W C_in 9`` FLOPs), each timed with
``torch.utils.benchmark.Timer.blocked_autorange`` (device-synchronised), best block kept.
The theoretical peak (:func:`cosmobench.bench.hardware.theoretical_peak`) is stored next to
it. A step that beats the measured roofline (MFU > 1) means the instrument is wrong.

On CUDA, fp32 convolutions run in TF32 by default (``torch.backends.cudnn.allow_tf32``), so
an fp32 step is compared with a TF32 peak when that flag is on (:func:`peak_key`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

from cosmobench.bench.hardware import theoretical_peak

__all__ = ["measure_peak", "measure_peaks", "measure_roofline", "peak_key"]

_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}


def peak_key(precision: str, device: torch.device) -> str:
    """Which measured peak a step of ``precision`` is compared with on ``device``."""
    if precision == "fp32" and device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return precision


@contextlib.contextmanager
def _tf32(key: str, device: torch.device) -> Iterator[None]:
    if device.type != "cuda":
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = key == "tf32"
    torch.backends.cudnn.allow_tf32 = key == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def default_sizes(device: torch.device) -> tuple[int, ...]:
    """Matrix sizes: from one that fits in cache to one that saturates the device."""
    return (512, 1024, 2048) if device.type == "cpu" else (2048, 4096, 8192)


def _conv_shape(device: torch.device) -> tuple[int, int, int]:
    """(batch, channels, pixels) of the convolution kernel: the shape net's second block."""
    return (32, 64, 32) if device.type == "cpu" else (256, 128, 32)


def _time(stmt: Callable[[], Any], flops: float, precision: str, min_run_time: float,
          label: str) -> dict[str, Any]:
    timer = Timer(stmt="f()", globals={"f": stmt}, num_threads=torch.get_num_threads(),
                  label="peak", sub_label=label)
    timer.timeit(2)  # warm-up: oneDNN / cuBLAS / cuDNN kernel selection
    m = timer.blocked_autorange(min_run_time=min_run_time)
    best = min(m.times)
    return {"flops_per_s": flops / best, "median_s": m.median, "min_s": best}


def measure_peak(
    device: torch.device, precision: str = "fp32", *, size: int | None = None,
    min_run_time: float = 0.5,
) -> dict[str, Any]:
    """Peak FLOP/s of one ``N x N`` matrix product (``N`` default 2048 CPU / 8192 GPU)."""
    n = size or default_sizes(device)[-1]
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=g, device=device).to(_DTYPES[precision])
    b = torch.randn(n, n, generator=g, device=device).to(_DTYPES[precision])
    with _tf32(precision, device):
        out = _time(lambda: torch.mm(a, b), 2.0 * n**3, precision, min_run_time, f"mm{n}")
    return {**out, "size": n, "dtype": str(_DTYPES[precision]).removeprefix("torch."),
            "threads": torch.get_num_threads()}


def _conv_kernel(device: torch.device, precision: str, min_run_time: float) -> dict[str, Any]:
    b, c, hw = _conv_shape(device)
    g = torch.Generator(device=device).manual_seed(0)
    dtype = _DTYPES[precision]
    x = torch.randn(b, c, hw, hw, generator=g, device=device).to(dtype)
    w = torch.randn(c, c, 3, 3, generator=g, device=device).to(dtype)
    flops = 2.0 * b * c * hw * hw * c * 9
    with _tf32(precision, device), torch.no_grad():
        return _time(lambda: F.conv2d(x, w, padding=1), flops, precision, min_run_time,
                     "conv3x3")


def measure_roofline(
    device: torch.device, precision: str, *, sizes: tuple[int, ...] | None = None,
    min_run_time: float = 0.2, conv: bool = True, deadline: float | None = None,
) -> dict[str, Any]:
    """The best FLOP/s of several kernels, with each kernel's figure and the theory.

    Arguments:
        device: where to run.
        precision: ``fp32``, ``tf32`` (CUDA) or ``bf16``.
        sizes: matrix sizes (default :func:`default_sizes`).
        min_run_time: seconds of timed blocks per kernel.
        conv: include the 3x3 convolution.
        deadline: ``time.perf_counter()`` value after which no further kernel starts.

    Returns:
        ``{"flops_per_s", "kernel", "kernels": {name: flops_per_s}, "theoretical":
        {"flops_per_s", "source"}, "roofline": True, "threads", "dtype"}``.
    """
    kernels: dict[str, float] = {}
    errors: dict[str, str] = {}
    jobs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        (f"mm{n}", lambda n=n: measure_peak(device, precision, size=n,
                                            min_run_time=min_run_time))
        for n in sorted(sizes or default_sizes(device), reverse=True)
    ]  # the likeliest peaks first: a deadline cuts the rest
    if conv:
        jobs.insert(1, ("conv3x3", lambda: _conv_kernel(device, precision, min_run_time)))
    for name, job in jobs:
        if deadline is not None and time.perf_counter() > deadline and kernels:
            errors[name] = "not measured: time budget"
            continue
        try:
            kernels[name] = job()["flops_per_s"]
        except RuntimeError as e:  # e.g. bf16 not implemented on this device
            errors[name] = str(e).splitlines()[0][:200]
    theory = theoretical_peak(device, "fp32" if precision == "tf32" and device.type == "cpu"
                              else precision, torch.get_num_threads())
    out: dict[str, Any] = {
        "flops_per_s": max(kernels.values()) if kernels else None,
        "kernel": max(kernels, key=kernels.__getitem__) if kernels else None,
        "kernels": kernels, "theoretical": theory, "roofline": True,
        "threads": torch.get_num_threads(),
        "dtype": str(_DTYPES[precision]).removeprefix("torch."),
    }
    if errors:
        out["errors"] = errors
    if not kernels:
        out["error"] = next(iter(errors.values()), "no kernel ran")
    return out


def measure_peaks(
    device: torch.device, precisions: set[str], *, sizes: tuple[int, ...] | None = None,
    min_run_time: float | None = None, deadline: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Rooflines for the precisions the run's modes use, keyed by :func:`peak_key`."""
    keys = sorted({peak_key(p, device) for p in precisions})
    if min_run_time is None:
        min_run_time = 0.2 if device.type == "cpu" else 0.1
    return {key: measure_roofline(device, key, sizes=sizes, min_run_time=min_run_time,
                                  deadline=deadline) for key in keys}
