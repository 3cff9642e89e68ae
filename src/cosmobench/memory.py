"""How much host memory is free: one reader for every "does it fit?" check."""

from __future__ import annotations

__all__ = ["available_bytes"]


def available_bytes() -> int | None:
    """Bytes the kernel says are available (``MemAvailable`` of ``/proc/meminfo``, page
    cache included); ``None`` where that file does not exist (not Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
