"""Timer statistics on workloads of known duration; raw times and their statistics."""

from __future__ import annotations

import time

import pytest
import torch

from cosmobench.bench.timing import (
    RawTiming,
    Stats,
    WallClock,
    block_size,
    measure_steady,
    time_epochs,
    warm_up,
)

CPU = torch.device("cpu")


class FakeTime:
    """A clock that moves only when a workload says it took time: timings are exact and
    independent of the machine's load (the timer code reads ``time.perf_counter``)."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def work(self, seconds: float):
        def fn() -> None:
            self.now += seconds

        return fn


@pytest.fixture
def fake_time(monkeypatch):
    from cosmobench.bench import timing

    clock = FakeTime()
    monkeypatch.setattr(timing, "time", clock)
    return clock


def test_steady_timer_recovers_a_known_duration(fake_time):
    """A call of exactly 20 ms is measured as 20 ms, in blocks of ceil(50 ms / 20 ms) = 3."""
    raw = measure_steady(fake_time.work(0.02), CPU, repeats=6, min_block_s=0.05)
    st = raw.stats()
    assert raw.number_per_run == block_size(0.02, 0.05) == 3
    assert len(raw.raw_times_s) == 6 and st.blocks == 6
    assert st.min_s == pytest.approx(0.02) and st.median_s == pytest.approx(0.02)
    assert raw.warmup_times_s == pytest.approx([0.02] * 3)  # settled after min_calls
    assert st.iqr_s == pytest.approx(0.0, abs=1e-12)


def test_steady_timer_on_the_real_clock_is_never_faster_than_the_work():
    """The wall clock can only overshoot a sleep (a loaded machine adds latency)."""
    raw = measure_steady(lambda: time.sleep(0.005), CPU, repeats=3, min_block_s=0.01)
    assert raw.stats().min_s >= 0.005


def test_statistics_from_raw_times():
    """Per-call times 1..5 s (blocks of 2 calls): median 3, IQR 2, min 1 -> IQR warning."""
    raw = RawTiming(number_per_run=2, raw_times_s=(2.0, 4.0, 6.0, 8.0, 10.0))
    st = raw.stats()
    assert st.median_s == pytest.approx(3.0)
    assert st.iqr_s == pytest.approx(2.0)
    assert st.min_s == pytest.approx(1.0)
    assert st.mean_s == pytest.approx(3.0)
    assert st.iqr_warning
    quiet = Stats.from_raw(RawTiming(1, (1.0, 1.01, 1.02, 0.99, 1.0)))
    assert not quiet.iqr_warning


def test_raw_timing_round_trip_and_merge():
    a = RawTiming(2, (2.0, 2.2), (5.0,), "wall")
    assert RawTiming.from_dict(a.to_dict()) == a
    b = RawTiming(2, (1.8,), (), "wall")
    merged = RawTiming.merge([a, b])
    assert merged.number_per_run == 2 and merged.raw_times_s == (2.0, 2.2, 1.8)
    c = RawTiming(4, (4.0,), (), "wall")  # different block size: per-call times pooled
    mixed = RawTiming.merge([a, c])
    assert mixed.number_per_run == 1 and sorted(mixed.raw_times_s) == [1.0, 1.0, 1.1]
    with pytest.raises(ValueError):
        RawTiming(1, ())


def test_warm_up_runs_until_the_duration_settles(fake_time):
    """A first call 10x slower (compilation) is not timed; warm-up stops once it settles."""
    durations = iter([0.2, 0.05, 0.03] + [0.02] * 100)

    def fn() -> None:
        fake_time.now += next(durations)

    times = warm_up(fn, WallClock(CPU), min_calls=3, tolerance=0.15)
    assert times == pytest.approx([0.2, 0.05, 0.03, 0.02, 0.02, 0.02])


def test_warm_up_gives_up_on_a_machine_that_never_settles(fake_time):
    durations = iter([0.01, 0.02] * 100)  # alternating: never within 15 %

    def fn() -> None:
        fake_time.now += next(durations)

    assert len(warm_up(fn, WallClock(CPU), min_calls=3, max_calls=10)) == 10
    assert len(warm_up(fn, WallClock(CPU), min_calls=3, max_s=0.1)) < 10


def test_block_size():
    assert block_size(0.2, 0.05) == 1
    assert block_size(0.001, 0.05) == 50
    assert block_size(0.0, 0.05) == 1000


def test_time_epochs_times_only_the_later_epochs(fake_time):
    seen = []

    def epoch(e: int) -> None:
        seen.append(e)
        fake_time.now += 0.03 if e == 0 else 0.01

    raw = time_epochs(epoch, CPU, epochs=4, untimed=1, steps_per_epoch=7)
    assert seen == [0, 1, 2, 3]
    assert raw.number_per_run == 7
    assert raw.warmup_times_s == pytest.approx([0.03])
    assert raw.raw_times_s == pytest.approx([0.01] * 3)
    with pytest.raises(ValueError):
        time_epochs(epoch, CPU, epochs=2, untimed=2, steps_per_epoch=1)


@pytest.mark.cuda
def test_cuda_event_clock_times_device_work(device):
    if not device.startswith("cuda"):
        pytest.skip("needs --device cuda")
    from cosmobench.bench.timing import CudaEventClock

    dev = torch.device(device)
    a = torch.randn(4096, 4096, device=dev)
    clock = CudaEventClock(dev)
    one = clock.time_block(lambda: a @ a, 1)
    ten = clock.time_block(lambda: a @ a, 10)
    assert one > 0 and 5 * one < ten < 20 * one


def test_timed_window_starts_after_warm_up():
    """Energy is metered over the timed blocks only: the hook fires after the warm-up."""
    events = []
    raw = measure_steady(lambda: events.append("call"), CPU, repeats=2, min_block_s=0.0,
                         on_timed_start=lambda: events.append("start"))
    start = events.index("start")
    assert start == len(raw.warmup_times_s)
    assert len(events) - start - 1 == raw.number_per_run * 2
    seen = []
    time_epochs(lambda e: seen.append(e), CPU, epochs=3, untimed=1, steps_per_epoch=1,
                on_timed_start=lambda: seen.append("start"))
    assert seen == [0, "start", 1, 2]
