"""Peak memory and energy meters wrapped around a benchmarked point.

* Memory: the point's own peak above its baseline. On CUDA ``torch.cuda.max_memory_allocated``
  after resetting the peak, minus what was allocated when the point started; on CPU the
  process's resident-set high-water mark (``VmHWM``), reset through ``/proc/self/clear_refs``
  (Linux >= 4.0), minus the resident set at the start. The runner releases what a point
  allocated before the next one starts, so the baselines do not creep.
* Energy: NVML's total-energy counter (mJ since the driver loaded, Volta and later), read
  around a block of calls of its own that lasts at least :data:`MIN_ENERGY_WINDOW_S` -- the
  counter is updated every few tens of milliseconds and power readings average over about a
  second (NVML's documentation of ``nvmlDeviceGetPowerUsage``), so a 0.2 s window measures
  the counter's granularity, not the device. A counter that did not move is reported as
  unavailable, never as 0 J. Elsewhere energy is recorded as unavailable with the reason --
  the paper made power a point (§2, Table 1).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["MIN_ENERGY_WINDOW_S", "RSS_GROWTH", "RSS_GROWTH_NOTE", "EnergyMeter", "MemoryMeter"]

#: ``memory_kind`` of a CPU point: the resident set's growth during the point
RSS_GROWTH = "rss_high_water_above_baseline"
#: what that figure is, for the report and the bench table
RSS_GROWTH_NOTE = ("growth of the process's resident memory during the point, a lower bound "
                   "of what the point needs: memory that earlier points freed and the "
                   "allocator kept is reused without growing it")

#: Shortest window energy is integrated over (seconds).
MIN_ENERGY_WINDOW_S = 2.0


def _rss_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class MemoryMeter:
    """Peak memory of one point above its own baseline: ``start()`` before building it,
    ``peak()`` after timing; ``baseline`` is what was in use at ``start()``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = ("cuda_max_allocated_above_baseline" if device.type == "cuda"
                     else RSS_GROWTH)
        self.baseline: int | None = None

    def current(self) -> int | None:
        """Bytes in use now (CUDA: allocated by torch; CPU: resident set)."""
        if self.device.type == "cuda":
            return int(torch.cuda.memory_allocated(self.device))
        if self.device.type != "cpu":
            return None
        return _rss_bytes("VmRSS")

    def start(self) -> None:
        """Record the baseline and reset the peak counter to it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:  # "5" resets the peak RSS (VmHWM) to the current RSS
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
        self.baseline = self.current()

    def absolute_peak(self) -> int | None:
        """Peak bytes in use since :meth:`start` (CPU: the process's high-water mark)."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        if self.device.type != "cpu":
            return None
        hwm = _rss_bytes("VmHWM")
        if hwm is not None:
            return hwm
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

    def peak(self) -> int | None:
        """Peak bytes the point added above its baseline."""
        top = self.absolute_peak()
        if top is None:
            return None
        return max(0, top - (self.baseline or 0))


class EnergyMeter:
    """GPU energy from NVML's cumulative counter; ``available`` is False with a ``reason``.

    Arguments:
        device: the benchmarked device.
        read_mj: a counter to read instead of NVML (millijoules since some origin), e.g. a
            fake power source in tests.
        min_window_s: shortest integration window.
    """

    def __init__(self, device: torch.device, *, read_mj: Callable[[], float] | None = None,
                 min_window_s: float = MIN_ENERGY_WINDOW_S) -> None:
        self.device = device
        self.min_window_s = float(min_window_s)
        self.read_mj: Callable[[], float] | None = read_mj
        self.reason: str | None = None
        if read_mj is not None:
            return
        if device.type != "cuda":
            self.reason = f"no energy counter for {device.type} devices"
            return
        try:
            import pynvml  # noqa: F401
        except ImportError:
            self.reason = "pynvml (package nvidia-ml-py) is not installed"
            return
        try:
            from cosmobench.bench.hardware import _nvml_handle

            nvml, handle = _nvml_handle(device)
            nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            self.read_mj = lambda: float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except Exception as e:  # NVML errors are many; energy is optional
            self.reason = f"NVML energy counter unavailable ({str(e)[:100]})"

    @property
    def available(self) -> bool:
        """Whether energy can be measured."""
        return self.read_mj is not None

    def measure(self, call: Callable[[], Any], items_per_call: int,
                sync: Callable[[], None] = lambda: None,
                deadline: float | None = None) -> dict[str, Any]:
        """Run ``call`` for at least ``min_window_s`` and integrate the counter over it.

        Returns ``{"available", "joules", "seconds", "calls", "mean_power_w",
        "j_per_image"}``, or ``{"available": False, "reason"}`` when there is no counter, the
        window would end past ``deadline``, or the counter did not move.
        """
        if self.read_mj is None:
            return {"available": False, "reason": self.reason}
        if deadline is not None and time.perf_counter() + self.min_window_s > deadline:
            return {"available": False,
                    "reason": f"time budget: no {self.min_window_s:g} s left for the energy window"}
        sync()
        e0, t0, calls = self.read_mj(), time.perf_counter(), 0
        while True:
            call()
            calls += 1
            if time.perf_counter() - t0 >= self.min_window_s:
                sync()
                if time.perf_counter() - t0 >= self.min_window_s:
                    break
        seconds = time.perf_counter() - t0
        joules = (self.read_mj() - e0) / 1e3
        if joules <= 0:
            return {"available": False, "seconds": seconds, "calls": calls,
                    "reason": f"the energy counter did not move in {seconds:.2f} s"}
        items = calls * items_per_call
        return {
            "available": True,
            "joules": joules,
            "seconds": seconds,
            "calls": calls,
            "mean_power_w": joules / seconds,
            "j_per_image": joules / items if items else None,
        }
