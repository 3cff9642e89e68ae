"""Device-synchronised timing: warm-up until settled, repeated blocks, robust statistics.

Three things are kept apart, as in ``torch.utils.benchmark``: *what* was timed (the
:class:`~cosmobench.bench.results.CaseSpec`), the *raw* measurement (:class:`RawTiming`: the
seconds of each block of ``number_per_run`` calls, kept in the results file), and the
*statistics* computed from the raw times on demand (:class:`Stats`, through torch's
:class:`~torch.utils.benchmark.Measurement`: median, IQR and its 10 % warning).

Clocks: :class:`WallClock` synchronises the device before reading ``time.perf_counter``
(what ``torch.utils.benchmark.Timer`` does); :class:`CudaEventClock` times a block with CUDA
events, for CUDA-graph replays whose cost is below the host clock's resolution.

Why not ``Timer.timeit`` for every block: it runs ``max(number // 100, 2)`` untimed calls
before each measurement, which triples the cost of one-call blocks of a 100 ms CPU training
step. We warm up once (:func:`warm_up`, until the step time settles -- compilation, cuDNN
autotuning and allocator caches are then done) and time the blocks with the same
synchronising clock; ``Timer.blocked_autorange`` is used where it fits, for the peak
(:mod:`cosmobench.bench.peak`). The ``paper`` protocol times whole epochs with the wall clock,
as Arcelin (2021) did with ``time.time()`` at epoch ends (:func:`time_epochs`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.utils.benchmark import Measurement
from torch.utils.benchmark.utils.common import TaskSpec

__all__ = [
    "IQR_WARN",
    "BudgetExceeded",
    "CudaEventClock",
    "RawTiming",
    "Stats",
    "WallClock",
    "make_clock",
    "measure_steady",
    "synchronize",
    "time_epochs",
    "warm_up",
]

#: A measurement warns when its interquartile range exceeds this fraction of its median.
IQR_WARN = 0.10


class BudgetExceeded(Exception):
    """A point cannot finish inside the run's time budget; it is cut and recorded skipped."""


def _check(deadline: float | None, need_s: float, what: str) -> None:
    if deadline is None:
        return
    left = deadline - time.perf_counter()
    if need_s > left:
        raise BudgetExceeded(f"cut: {what} needs about {need_s:.1f} s, "
                             f"{max(left, 0.0):.1f} s of the time budget left")


def synchronize(device: torch.device) -> None:
    """Wait for all work queued on ``device`` (no-op on CPU)."""
    if device.type == "cpu":
        return
    mod = getattr(torch, device.type, None)
    sync = getattr(mod, "synchronize", None)
    if sync is not None:
        sync(device) if device.type == "cuda" else sync()


class WallClock:
    """Host wall clock read after synchronising ``device``."""

    kind = "wall"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def time_block(self, fn: Callable[[], Any], number: int) -> float:
        """Seconds for ``number`` calls of ``fn``, the device synchronised at both ends."""
        synchronize(self.device)
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        synchronize(self.device)
        return time.perf_counter() - t0


class CudaEventClock:
    """CUDA events recorded on the current stream around a block of calls."""

    kind = "cuda-events"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def time_block(self, fn: Callable[[], Any], number: int) -> float:
        """Seconds of device time between two events enclosing ``number`` calls."""
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(number):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3  # elapsed_time is in ms


def make_clock(device: torch.device, *, events: bool = False) -> WallClock | CudaEventClock:
    """CUDA events when asked for on a CUDA device, otherwise the synchronised wall clock."""
    return CudaEventClock(device) if events and device.type == "cuda" else WallClock(device)


@dataclasses.dataclass(frozen=True)
class RawTiming:
    """Raw times: ``raw_times_s[i]`` is the duration of block *i* of ``number_per_run`` calls.

    Attributes:
        number_per_run: calls per timed block (steps, generation calls, or steps per epoch).
        raw_times_s: seconds of each timed block.
        warmup_times_s: seconds of each untimed warm-up call (the first includes compilation).
        clock: ``"wall"`` or ``"cuda-events"``.
    """

    number_per_run: int
    raw_times_s: tuple[float, ...]
    warmup_times_s: tuple[float, ...] = ()
    clock: str = "wall"

    def __post_init__(self) -> None:
        if self.number_per_run < 1 or not self.raw_times_s:
            raise ValueError("a RawTiming needs number_per_run >= 1 and at least one time")

    def measurement(self, label: str = "", sub_label: str = "", threads: int = 1) -> Measurement:
        """The same data as a ``torch.utils.benchmark.Measurement`` (for its statistics)."""
        spec = TaskSpec(
            stmt="step()", setup="", label=label, sub_label=sub_label, num_threads=threads
        )
        return Measurement(self.number_per_run, list(self.raw_times_s), spec)

    def stats(self) -> Stats:
        """Statistics per call, computed from the raw times."""
        return Stats.from_raw(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "number_per_run": self.number_per_run,
            "raw_times_s": list(self.raw_times_s),
            "warmup_times_s": list(self.warmup_times_s),
            "clock": self.clock,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RawTiming:
        """Inverse of :meth:`to_dict`."""
        return cls(
            number_per_run=int(d["number_per_run"]),
            raw_times_s=tuple(float(t) for t in d["raw_times_s"]),
            warmup_times_s=tuple(float(t) for t in d.get("warmup_times_s", ())),
            clock=str(d.get("clock", "wall")),
        )

    @staticmethod
    def merge(timings: Iterable[RawTiming]) -> RawTiming:
        """Pool the blocks of several measurements of the same thing (per-call times kept)."""
        timings = list(timings)
        if len({t.number_per_run for t in timings}) == 1:
            return RawTiming(
                timings[0].number_per_run,
                tuple(x for t in timings for x in t.raw_times_s),
                tuple(x for t in timings for x in t.warmup_times_s),
                timings[0].clock,
            )
        per_call = tuple(x / t.number_per_run for t in timings for x in t.raw_times_s)
        return RawTiming(1, per_call, (), timings[0].clock)


@dataclasses.dataclass(frozen=True)
class Stats:
    """Per-call statistics of a :class:`RawTiming` (seconds).

    ``iqr_warning`` is set when the IQR exceeds :data:`IQR_WARN` of the median, the
    threshold ``torch.utils.benchmark`` warns at: the machine was not quiet enough.
    """

    median_s: float
    iqr_s: float
    min_s: float
    mean_s: float
    blocks: int
    iqr_warning: bool

    @classmethod
    def from_raw(cls, raw: RawTiming) -> Stats:
        """Median and quartiles as torch's ``Measurement`` computes them (linear quantiles)."""
        m = raw.measurement()
        per_call = m.times
        median = m.median
        iqr = m.iqr if len(per_call) > 1 else 0.0
        return cls(
            median_s=median,
            iqr_s=iqr,
            min_s=min(per_call),
            mean_s=m.mean,
            blocks=len(per_call),
            iqr_warning=bool(median > 0 and iqr / median > IQR_WARN),
        )


def warm_up(
    fn: Callable[[], Any],
    clock: WallClock | CudaEventClock,
    *,
    min_calls: int = 3,
    max_calls: int = 50,
    max_s: float = 60.0,
    tolerance: float = 0.15,
    deadline: float | None = None,
) -> list[float]:
    """Call ``fn`` until its duration settles; returns the duration of every warm-up call.

    Settled means the last ``min_calls`` durations lie within ``1 + tolerance`` of each other
    (compilation, autotuning and caching are over). Stops anyway after ``max_calls`` calls or
    ``max_s`` seconds -- a busy shared machine may never settle; the IQR then says so.
    Raises :class:`BudgetExceeded` when the next call would end past ``deadline``.
    """
    times: list[float] = []
    start = time.perf_counter()
    while True:
        if times:
            _check(deadline, min(times[-3:]), "the warm-up")
        times.append(clock.time_block(fn, 1))
        last = times[-min_calls:]
        if len(times) >= min_calls and max(last) <= (1 + tolerance) * min(last):
            break
        if len(times) >= max_calls or time.perf_counter() - start > max_s:
            break
    return times


def block_size(per_call_s: float, min_block_s: float) -> int:
    """Calls per block so that a block lasts at least ``min_block_s`` (clock cost amortised)."""
    if per_call_s <= 0:
        return 1000
    return max(1, math.ceil(min_block_s / per_call_s))


def measure_steady(
    fn: Callable[[], Any],
    device: torch.device,
    *,
    repeats: int = 10,
    min_block_s: float = 0.02,
    events: bool = False,
    warmup_max_s: float = 60.0,
    on_block: Callable[[], None] | None = None,
    on_timed_start: Callable[[], None] | None = None,
    deadline: float | None = None,
) -> RawTiming:
    """The ``steady`` protocol: warm up until settled, then ``repeats`` synchronised blocks.

    Arguments:
        fn: one call of the workload (one training step, one generation call ...).
        device: the device ``fn`` runs on (synchronised around every block).
        repeats: number of timed blocks.
        min_block_s: a block repeats ``fn`` until it lasts about this long.
        events: time blocks with CUDA events (for CUDA-graph replays).
        warmup_max_s: cap on the warm-up time.
        on_block: called after every block (progress bars).
        on_timed_start: called when warm-up is over (e.g. to start an energy meter).
        deadline: ``time.perf_counter()`` value the point must end by; warm-up and blocks
            that would end past it raise :class:`BudgetExceeded` (checked before starting).

    Returns:
        The raw times, warm-up included.
    """
    clock = make_clock(device, events=events)
    warm = warm_up(fn, clock, max_s=warmup_max_s, deadline=deadline)
    settled = min(warm[-3:])
    number = block_size(settled, min_block_s)
    _check(deadline, repeats * number * settled, f"{repeats} timed blocks")
    if on_timed_start is not None:
        on_timed_start()
    times = []
    for _ in range(repeats):
        times.append(clock.time_block(fn, number))
        if on_block is not None:
            on_block()
    return RawTiming(number, tuple(times), tuple(warm), clock.kind)


def time_epochs(
    run_epoch: Callable[[int], None],
    device: torch.device,
    *,
    epochs: int,
    untimed: int,
    steps_per_epoch: int,
    on_epoch: Callable[[], None] | None = None,
    on_timed_start: Callable[[], None] | None = None,
    deadline: float | None = None,
) -> RawTiming:
    """The ``paper`` protocol: wall clock per epoch, the first ``untimed`` epochs not timed.

    Arcelin (2021) trained 110 epochs and reported epochs 11-110 (``time.time()`` at epoch
    ends, Keras ``fit`` with data in memory). The device is synchronised at each epoch end.

    Arguments:
        run_epoch: runs one whole epoch (argument: the epoch index).
        device: device to synchronise.
        epochs: total epochs; untimed: leading epochs excluded from the timing.
        steps_per_epoch: optimisation steps in one epoch (``number_per_run`` of the result).
        on_epoch: called after every epoch (progress bars).
        on_timed_start: called before the first timed epoch.
        deadline: ``time.perf_counter()`` value by which all epochs must end; checked after
            the first epoch (the rest would take ``epochs - 1`` times as long) and before
            every epoch (:class:`BudgetExceeded`).
    """
    if not 0 <= untimed < epochs:
        raise ValueError(f"need 0 <= untimed < epochs; got untimed={untimed}, epochs={epochs}")
    clock = WallClock(device)
    warm, timed = [], []
    for epoch in range(epochs):
        done = warm + timed
        if done:
            _check(deadline, (epochs - epoch) * min(done), f"{epochs - epoch} more epochs")
        if epoch == untimed and on_timed_start is not None:
            on_timed_start()
        seconds = clock.time_block(lambda e=epoch: run_epoch(e), 1)
        (warm if epoch < untimed else timed).append(seconds)
        if on_epoch is not None:
            on_epoch()
    return RawTiming(steps_per_epoch, tuple(timed), tuple(warm), clock.kind)
