"""The largest batch that fits in memory: doubling, then bisection; OOM is a result.

The IPU of Arcelin (2021) stopped at batch 14 (CNN) and 8 (BNN) for lack of its 300 MB of
on-chip memory; this search finds the same limit on any device. A batch *fits* when two
calls run (the second allocates everything the first left lazily: optimiser moments, cached
workspaces). ``torch.OutOfMemoryError`` is caught, memory released, and the search goes on.

On the CPU an allocation past the machine's memory rarely raises: the kernel's OOM killer
ends the process. The search therefore predicts the next batch's memory from the
resident-set high-water mark per image of the last batch that fitted, and records ``oom``
(``predicted``) when it would exceed 80 % of the available memory.
"""

from __future__ import annotations

import gc
from typing import Any

import torch

from cosmobench.bench.meters import MemoryMeter
from cosmobench.bench.modes import Mode
from cosmobench.bench.timing import synchronize
from cosmobench.bench.workloads import BuildContext, Workload
from cosmobench.memory import available_bytes

__all__ = ["find_max_batch", "fits", "is_oom", "release_memory"]

#: Fraction of the available host memory the CPU search allows itself.
CPU_MEMORY_FRACTION = 0.8


def is_oom(e: BaseException) -> bool:
    """Whether ``e`` is an out-of-memory error (CUDA, other accelerators, or the CPU allocator)."""
    if isinstance(e, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def release_memory(device: torch.device, *, collect: bool = True) -> None:
    """Free what a finished or failed point held (Python garbage, the CUDA cache)."""
    if collect or device.type != "cpu":  # reference cycles (tracebacks) can hold tensors
        gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def fits(
    workload: Workload, mode: Mode, size: int, ctx: BuildContext
) -> tuple[str, str | None, int | None]:
    """Try two calls at ``size``: ``("ok", None, peak_bytes)`` or ``("oom"|"error", why, None)``."""
    meter = MemoryMeter(ctx.device)
    case = None
    try:
        meter.start()
        case = workload.build(mode, size, ctx)
        case.call()
        case.call()
        synchronize(ctx.device)
        return "ok", None, meter.peak()
    except Exception as e:
        line = str(e).strip().splitlines()
        why = f"{type(e).__name__}: {line[0][:200] if line else ''}"
        return ("oom" if is_oom(e) else "error"), why, None
    finally:
        if case is not None and case.cleanup is not None:
            case.cleanup()
        del case
        release_memory(ctx.device)


def find_max_batch(workload: Workload, mode: Mode, ctx: BuildContext, *, limit: int = 4096,
                   start: int = 1) -> dict[str, Any]:
    """Largest batch in ``[start, limit]`` that fits: double until a failure, then bisect.

    Returns:
        ``{"largest": int | None, "status": "ok" | "limit" | "oom" | "error", "reason",
        "tried": [[size, status], ...]}``; ``status`` ``limit`` means everything up to
        ``limit`` fitted, ``oom`` that the search found the edge.
    """
    tried: list[list[Any]] = []
    baseline = MemoryMeter(ctx.device).peak() if ctx.device.type == "cpu" else None
    per_image: float | None = None

    def attempt(b: int) -> bool:
        nonlocal per_image
        if ctx.device.type == "cpu" and per_image is not None and baseline is not None:
            need, avail = baseline + per_image * b, available_bytes()
            if avail is not None and need - baseline > CPU_MEMORY_FRACTION * avail:
                tried.append([b, "oom", f"predicted {need / 2**30:.1f} GiB > "
                              f"{CPU_MEMORY_FRACTION:.0%} of {avail / 2**30:.1f} GiB available"])
                return False
        status, why, peak = fits(workload, mode, b, ctx)
        tried.append([b, status, why])
        if status == "ok" and peak is not None and baseline is not None:
            per_image = max(peak - baseline, 0) / b
        if status == "error":
            raise _SearchError(why or "error")
        return status == "ok"

    good, bad = None, None
    try:
        b = start
        while b <= limit:
            if attempt(b):
                good, b = b, b * 2
            else:
                bad = b
                break
        if bad is None:
            return {"largest": good, "status": "limit", "reason": f"every batch up to the "
                    f"search limit {limit} fits", "tried": tried}
        lo, hi = (good or 0), bad
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if attempt(mid):
                lo = mid
            else:
                hi = mid
        good = lo or None
        return {"largest": good, "status": "oom", "reason": f"batch {hi} does not fit",
                "tried": tried}
    except _SearchError as e:
        return {"largest": good, "status": "error", "reason": str(e), "tried": tried}


class _SearchError(Exception):
    pass
