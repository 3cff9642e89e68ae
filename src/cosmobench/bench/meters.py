"""Peak memory and energy meters wrapped around a benchmarked point.

* Memory: on CUDA ``torch.cuda.max_memory_allocated`` after resetting the peak; on CPU the
  process's resident-set high-water mark (``VmHWM``), reset through ``/proc/self/clear_refs``
  (Linux >= 4.0) -- it includes the Python interpreter and torch itself, so compare points as
  differences or ratios.
* Energy: NVML's total-energy counter (mJ since the driver loaded, Volta and later) read
  before and after the timed blocks, through ``pynvml`` when importable. Elsewhere energy is
  recorded as unavailable with the reason -- the paper made power a point (§2, Table 1).
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["EnergyMeter", "MemoryMeter"]


class MemoryMeter:
    """Peak memory of one point: ``start()`` before building it, ``peak()`` after timing."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "rss_high_water"

    def start(self) -> None:
        """Reset the peak counter."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:  # "5" resets the peak RSS (VmHWM) to the current RSS
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass

    def peak(self) -> int | None:
        """Peak bytes since :meth:`start` (for CPU: process-wide high-water mark)."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        if self.device.type != "cpu":
            return None
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class EnergyMeter:
    """GPU energy from NVML's cumulative counter; ``available`` is False with a ``reason``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.handle: Any = None
        self.reason: str | None = None
        self._e0 = self._t0 = 0.0
        if device.type != "cuda":
            self.reason = f"no energy counter for {device.type} devices"
            return
        try:
            import pynvml
        except ImportError:
            self.reason = "pynvml (package nvidia-ml-py) is not installed"
            return
        try:
            pynvml.nvmlInit()
            uuid = str(torch.cuda.get_device_properties(device).uuid)
            handle = None
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                u = pynvml.nvmlDeviceGetUUID(h)
                u = u.decode() if isinstance(u, bytes) else u
                if u.removeprefix("GPU-") == uuid.removeprefix("GPU-"):
                    handle = h
                    break
            if handle is None:
                raise RuntimeError("no NVML device matches the torch device's UUID")
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            self.handle, self._nvml = handle, pynvml
        except Exception as e:  # NVML errors are many; energy is optional
            self.reason = f"NVML energy counter unavailable ({str(e)[:100]})"

    @property
    def available(self) -> bool:
        """Whether energy can be measured."""
        return self.handle is not None

    def start(self) -> None:
        """Read the counter before the timed blocks."""
        if self.available:
            self._e0 = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1e3
            self._t0 = time.perf_counter()

    def stop(self, items: int) -> dict[str, Any]:
        """Energy since :meth:`start`: joules per item (image) and mean power (watts)."""
        if not self.available:
            return {"available": False, "reason": self.reason}
        joules = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1e3 - self._e0
        seconds = time.perf_counter() - self._t0
        return {
            "available": True,
            "joules": joules,
            "seconds": seconds,
            "mean_power_w": joules / seconds if seconds > 0 else None,
            "j_per_image": joules / items if items else None,
        }
