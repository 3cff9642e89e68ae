"""Meters: energy integrated over a window of at least MIN_ENERGY_WINDOW_S, never 0 J."""

from __future__ import annotations

import time

import torch

from cosmobench.bench.meters import MIN_ENERGY_WINDOW_S, EnergyMeter, MemoryMeter


class FakePower:
    """A cumulative energy counter (mJ) of a device drawing ``watts``, updated every
    ``tick_s`` seconds like NVML's."""

    def __init__(self, watts: float, tick_s: float = 0.1) -> None:
        self.watts, self.tick_s, self.t0 = watts, tick_s, time.perf_counter()

    def __call__(self) -> float:
        elapsed = time.perf_counter() - self.t0
        return self.watts * 1e3 * (elapsed // self.tick_s) * self.tick_s


def test_energy_window_is_at_least_the_minimum():
    assert MIN_ENERGY_WINDOW_S >= 2.0
    meter = EnergyMeter(torch.device("cpu"), read_mj=FakePower(300.0))
    calls = []
    e = meter.measure(lambda: (calls.append(1), time.sleep(0.01)), items_per_call=4)
    assert e["available"] and e["seconds"] >= MIN_ENERGY_WINDOW_S
    assert e["calls"] == len(calls) and len(calls) >= 100  # 10 ms calls over >= 2 s
    assert abs(e["mean_power_w"] - 300.0) / 300.0 < 0.1  # one tick of error over 2 s
    assert e["j_per_image"] == e["joules"] / (4 * len(calls))


def test_a_counter_that_does_not_move_is_unavailable_not_zero():
    meter = EnergyMeter(torch.device("cpu"), read_mj=lambda: 1234.0, min_window_s=0.05)
    e = meter.measure(lambda: None, items_per_call=1)
    assert e["available"] is False and "did not move" in e["reason"]
    assert "joules" not in e and "j_per_image" not in e


def test_no_counter_and_no_time_left_are_reasons():
    e = EnergyMeter(torch.device("cpu")).measure(lambda: None, 1)
    assert e == {"available": False, "reason": "no energy counter for cpu devices"}
    meter = EnergyMeter(torch.device("cpu"), read_mj=FakePower(100.0))
    late = meter.measure(lambda: None, 1, deadline=time.perf_counter() + 0.5)
    assert late["available"] is False and "budget" in late["reason"]


def test_memory_is_measured_above_the_points_baseline():
    meter = MemoryMeter(torch.device("cpu"))
    keep = torch.ones(64, 1024, 1024)  # 256 MiB allocated before the point: baseline
    meter.start()
    assert meter.baseline is not None and meter.baseline > 256 * 2**20
    x = torch.ones(32, 1024, 1024)  # 128 MiB allocated by the point
    peak = meter.peak()
    del x, keep
    assert 100 * 2**20 < peak < 200 * 2**20
