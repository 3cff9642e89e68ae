"""Keep freed CPU memory in the process, so that a training step does not page-fault.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc hands large blocks back to
the kernel when they are freed (``munmap``, or trimming the top of the heap past
``M_TRIM_THRESHOLD``, by default twice its adaptive mmap threshold), so every step's
activations are mapped afresh and the kernel zero-fills each new page: on 2 Xeon cores a
Bayesian CNN step at batch 14 took 9,700 page faults and 23 ms of system CPU time, a CNN step
at batch 2 1,400 and 4 ms (``benchmarks/allocator.py``). TensorFlow, the paper's framework,
keeps its memory in its own allocator. :func:`retain_freed_memory` asks glibc (``mallopt``)
to keep blocks of up to :data:`MMAP_THRESHOLD` on its heap and not to trim the heap below
:data:`TRIM_THRESHOLD` of free memory: the pages are then reused, not faulted in again. The
process's resident memory stays at its peak instead of shrinking between steps, which is
how long-running training holds memory anyway. Nothing changes elsewhere than Linux with
glibc (no ``mallopt``), or when ``COSMOBENCH_KEEP_MALLOC`` is set to ``0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "retain_freed_memory"]

#: Blocks up to this size come from the heap (glibc's adaptive default stops at 32 MiB).
MMAP_THRESHOLD = 64 << 20
#: Free memory at the top of the heap kept rather than returned to the kernel.
TRIM_THRESHOLD = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
_done: bool | None = None


def retain_freed_memory() -> bool:
    """Set glibc's malloc to keep freed memory (once per process); whether it is set.

    Called by the CPU training step (``make_train_step``) and the CPU galaxy sampler.
    Returns ``False`` where there is no glibc ``mallopt`` or ``COSMOBENCH_KEEP_MALLOC=0``.
    """
    global _done
    if _done is None:
        _done = False
        if sys.platform.startswith("linux") and os.environ.get("COSMOBENCH_KEEP_MALLOC") != "0":
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                mallopt = libc.mallopt
            except (OSError, AttributeError):  # not glibc (musl has no mallopt)
                return False
            _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            )
    return _done
