"""``run_bench(cfg) -> Results``: sweep workloads x modes x sizes, one record per point.

Every point ends as a record, whatever happens: ``ok`` with raw times; ``oom`` when the
device runs out of memory (caught, memory released, the sweep goes on); ``unsupported``
with the reason when a mode cannot run on the device or a workload's dependency is missing;
``error`` with the exception's first line; ``skipped`` when the point cannot finish inside
what is left of the run's time budget (``--budget`` is a wall-clock limit: peak measurement,
build, warm-up and timed blocks all count; a point is cut as soon as it is clear that it
would end past the limit; the first call of a point, whose cost nothing predicts before it
has run once, can overrun by itself, and a compiled point does not start with less than its
likely compilation time left). A mode the device runs only emulated (bf16 on a CPU without bf16
instructions, :mod:`cosmobench.bench.hardware`) is ``unsupported`` unless the user named it,
then it runs with a warning. Each point releases what it allocated (compiled code, CUDA
graphs and their pools, the allocator's cache) before the next one starts.
The results file is rewritten atomically after every point (``complete: false`` until the
end), so an interrupted run keeps what it measured, and rerunning the same command resumes
it, redoing only the missing points.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cosmobench.bench.config import BenchConfig
from cosmobench.bench.env import capture_env, load_average
from cosmobench.bench.generation import GenerateWorkload, SimulateWorkload
from cosmobench.bench.maxbatch import find_max_batch, is_oom, release_memory
from cosmobench.bench.meters import EnergyMeter, MemoryMeter
from cosmobench.bench.modes import Mode, not_native_reason, parse_mode, unsupported_reason
from cosmobench.bench.peak import measure_peaks, peak_key
from cosmobench.bench.results import Record, Results, load_results
from cosmobench.bench.timing import (
    BudgetExceeded,
    RawTiming,
    WallClock,
    measure_steady,
    synchronize,
    time_epochs,
)
from cosmobench.bench.workloads import BuildContext, InferWorkload, TrainWorkload, Workload
from cosmobench.devices import resolve_device
from cosmobench.errors import CosmobenchError

__all__ = ["default_workloads", "release_point", "run_bench", "run_point"]

#: A run may overrun its budget by this fraction, at most BUDGET_TOLERANCE_S seconds (clock
#: reads, the release of the last point).
BUDGET_TOLERANCE, BUDGET_TOLERANCE_S = 0.05, 2.0
#: Share of a budget the roofline measurement may take (its first kernel always runs).
PEAK_SHARE = 0.25
#: First guess of a compiled point's cost (compilation) before one has been seen (seconds).
COMPILE_GUESS_S = {"cpu": 60.0, "cuda": 30.0}


def default_workloads() -> dict[str, Workload]:
    """The five workloads of ``docs/benchmarking.md`` with the paper's networks."""
    return {
        "train-cnn": TrainWorkload("train-cnn", bayesian=False),
        "train-bnn": TrainWorkload("train-bnn", bayesian=True),
        "infer-cnn": InferWorkload("infer-cnn", bayesian=False),
        "generate": GenerateWorkload(),
        "simulate": SimulateWorkload(),
    }


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def _base(workload: Workload, mode: Mode, size: int, cfg: BenchConfig,
          device: torch.device) -> dict[str, Any]:
    return {
        "workload": workload.name, "mode": str(mode), "size": int(size),
        "size_name": workload.size_name, "device": str(device), "protocol": cfg.protocol,
        "precision": mode.precision, "epochs_axis": workload.epochs_axis,
    }


def point_unsupported(workload: Workload, mode: Mode, device: torch.device,
                      explicit: bool) -> str | None:
    """Why a point is not timed (``None``: it is); an emulated mode runs only when named."""
    reason = workload.unsupported(mode, device) or unsupported_reason(mode, device)
    if reason is None and not explicit:
        reason = not_native_reason(mode, device)
    return reason


def run_point(
    workload: Workload, mode: Mode, size: int, cfg: BenchConfig, ctx: BuildContext,
    *, on_progress: Callable[[], None] | None = None, deadline: float | None = None,
    explicit: bool = True,
) -> Record:
    """Build, warm up and time one point; always returns a record (never raises for OOM).

    Arguments:
        workload, mode, size: the point.
        cfg: the run's configuration; ctx: the build context.
        on_progress: called after every timed block.
        deadline: ``time.perf_counter()`` value the point must end by (else ``skipped``).
        explicit: the user named this mode; an emulated mode then runs, with a warning.
    """
    device = ctx.device
    base = _base(workload, mode, size, cfg, device)
    reason = point_unsupported(workload, mode, device, explicit)
    if reason is not None:
        return Record(status="unsupported", reason=reason, **base)
    memory, energy = MemoryMeter(device), EnergyMeter(device)
    info: dict[str, Any] = {"load_1m_start": (load_average() or [None])[0],
                            "data": cfg.data or "synthetic"}
    warning = not_native_reason(mode, device)
    if warning:
        info["warning"] = f"run on request although {warning}"
    started = time.perf_counter()
    case = None
    try:
        memory.start()
        info["memory_baseline_bytes"] = memory.baseline
        case = workload.build(mode, size, ctx)
        info.update(case.info)
        if case.items_per_call is None:
            raise RuntimeError("case has no items_per_call")
        timing = _time_case(case, cfg, device, on_progress, deadline)
        energy_info = energy.measure(case.call, case.items_per_call,
                                     lambda: synchronize(device), deadline)
        info["wall_s"] = time.perf_counter() - started
        info["load_1m_end"] = (load_average() or [None])[0]
        return Record(
            status="ok", items_per_call=case.items_per_call, timing=timing,
            flops_per_call=case.flops_per_call, peak_key=peak_key(mode.precision, device),
            peak_memory_bytes=memory.peak(), memory_kind=memory.kind, energy=energy_info,
            info=info, **base,
        )
    except BudgetExceeded as e:
        info["wall_s"] = time.perf_counter() - started
        return Record(status="skipped", reason=str(e), info=info, **base)
    except Exception as e:  # every failure becomes a record; the sweep goes on
        status = "oom" if is_oom(e) else "error"
        info["wall_s"] = time.perf_counter() - started
        return Record(status=status, reason=_first_line(e), info=info, **base)
    finally:
        if case is not None and case.cleanup is not None:
            case.cleanup()
        del case
        release_point(device, compiled=mode.compile)


def release_point(device: torch.device, *, compiled: bool = False) -> None:
    """Free everything a point allocated: its objects (and their reference cycles), CUDA
    graphs and their private pools, compiled code (``torch._dynamo.reset``), the CUDA
    allocator's cache."""
    if compiled:
        torch._dynamo.reset()
    release_memory(device, collect=True)


def _time_case(case: Any, cfg: BenchConfig, device: torch.device,
               on_progress: Callable[[], None] | None, deadline: float | None) -> RawTiming:
    if cfg.protocol == "steady":
        return measure_steady(
            case.call, device, repeats=cfg.repeats, min_block_s=cfg.min_block_s,
            events=case.events, warmup_max_s=cfg.warmup_max_s, on_block=on_progress,
            deadline=deadline,
        )
    if case.run_epoch is not None:  # paper protocol, training: whole epochs
        return time_epochs(
            case.run_epoch, device, epochs=cfg.epochs, untimed=cfg.untimed_epochs,
            steps_per_epoch=case.steps_per_epoch, on_epoch=on_progress, deadline=deadline,
        )
    clock = WallClock(device)  # paper protocol, generation: one warm-up, one timed call
    warm = clock.time_block(case.call, 1)
    if deadline is not None and time.perf_counter() + warm > deadline:
        raise BudgetExceeded(f"cut: the timed call needs about {warm:.1f} s, past the budget")
    return RawTiming(1, (clock.time_block(case.call, 1),), (warm,), clock.kind)


def _points(cfg: BenchConfig, registry: dict[str, Workload], device: torch.device
            ) -> list[tuple[Workload, Mode, int]]:
    modes = [parse_mode(m) for m in cfg.mode_list]
    return [
        (registry[w], mode, size)
        for w in cfg.workloads
        for mode in modes
        for size in cfg.sizes_for(w, device)
    ]


def _resume(out: Path | None, cfg: BenchConfig, overwrite: bool) -> Results | None:
    if out is None or not out.exists() or overwrite:
        return None
    old = load_results(out)
    if old.config != cfg.to_dict():
        raise CosmobenchError(
            f"{out} holds results of another configuration; choose another --out or "
            "overwrite it (--force)"
        )
    if old.complete:
        raise CosmobenchError(f"{out} holds a finished run; choose another --out or measure "
                              "again over it (--force)")
    return old


def run_bench(
    cfg: BenchConfig,
    out: str | Path | None = None,
    *,
    registry: dict[str, Workload] | None = None,
    progress: bool = True,
    command: list[str] | None = None,
    overwrite: bool = False,
) -> Results:
    """Run the benchmark described by ``cfg``; write ``out`` after every point.

    Arguments:
        cfg: what to measure.
        out: results JSON path (rewritten atomically after each point); an unfinished file
            of the same configuration is resumed; any other existing file is an error unless
            ``overwrite``.
        registry: workload name -> :class:`Workload` (default :func:`default_workloads`).
        progress: show a rich progress bar.
        command: the command line stored in the environment.
        overwrite: measure afresh over an existing ``out``.

    Returns:
        The :class:`Results`, also saved at ``out``.
    """
    out = Path(out) if out is not None else None
    device = resolve_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    registry = registry or default_workloads()
    unknown = [w for w in cfg.workloads if w not in registry]
    if unknown:
        raise CosmobenchError(f"workload must be one of {', '.join(registry)}; got {unknown[0]!r}")
    start = time.perf_counter()
    deadline = None if cfg.budget_s is None else start + cfg.budget_s + min(
        BUDGET_TOLERANCE_S, BUDGET_TOLERANCE * cfg.budget_s)
    torch.manual_seed(cfg.seed)
    resumed = _resume(out, cfg, overwrite)
    results = resumed or Results(env=capture_env(device, command), config=cfg.to_dict())
    points = _points(cfg, registry, device)
    explicit = cfg.explicit_modes
    if not results.peaks:  # once per run, for the precisions of the points that will run
        precisions = {mode.precision for w, mode, _ in points
                      if point_unsupported(w, mode, device, str(mode) in explicit) is None}
        peak_deadline = None if deadline is None else min(
            deadline, start + PEAK_SHARE * cfg.budget_s)  # leave most of it to the points
        results.peaks = measure_peaks(device, precisions, deadline=peak_deadline)
    ctx = BuildContext(device=device, seed=cfg.seed, n_train=cfg.n_train,
                       protocol=cfg.protocol, data=cfg.data)
    cost: dict[tuple[str, str], float] = {}  # wall time of the last point of each series

    def save() -> None:
        if out is not None:
            results.save(out)

    unsaved = False
    with _progress(progress) as bar:
        task = bar.add_task("benchmark", total=len(points))
        for workload, mode, size in points:
            if results.find(workload.name, str(mode), size) is not None:
                bar.advance(task)
                continue
            bar.update(task, description=f"{workload.name} {mode} {workload.size_name}={size}")
            why = _cannot_start(deadline, cost.get((workload.name, str(mode))), mode, device,
                                cfg.budget_s)
            if why is not None and point_unsupported(workload, mode, device,
                                                     str(mode) in explicit) is None:
                record = Record(status="skipped", reason=why,
                                **_base(workload, mode, size, cfg, device))
            else:
                if unsaved:  # what is decided is on disk before a point that may be killed
                    save()
                record = run_point(workload, mode, size, cfg, ctx, deadline=deadline,
                                   explicit=str(mode) in explicit,
                                   on_progress=lambda: bar.refresh())
                if record.status == "ok" and record.summary(results.peaks).get(
                        "mfu_above_roofline"):  # faster than the roofline: the instrument errs
                    record.info["warning"] = ("MFU above 1 against the roofline measured in "
                                              "this run: FLOP count or peak is wrong")
                if record.status in ("ok", "skipped") and "wall_s" in record.info:
                    cost[(workload.name, str(mode))] = record.info["wall_s"]
            if record.info.get("warning"):
                _warn(record.info["warning"], workload.name, str(mode))
            results.records.append(record)
            unsaved = "wall_s" not in record.info  # decided at once: saved with the next
            if not unsaved:  # a point that ran
                save()
            bar.advance(task)
        if cfg.max_batch:
            _max_batch_searches(results, cfg, registry, ctx, bar, save)
    results.env["load_average_end"] = load_average()
    results.env["wall_s"] = time.perf_counter() - start
    failed = [r for r in results.records if r.status in ("error", "oom")]
    if results.records and len(failed) == len(results.records):  # nothing measured: a failure
        save()  # complete stays false: the file says the run did not succeed
        raise CosmobenchError(
            f"every point of the benchmark failed ({len(failed)}; the first: "
            f"{failed[0].reason}); nothing was measured{f', see {out}' if out else ''}"
        )
    results.complete = True
    save()
    return results


_warned: set[tuple[str, str]] = set()


def _warn(text: str, workload: str, mode: str) -> None:
    import warnings

    if (workload, mode) not in _warned:
        _warned.add((workload, mode))
        warnings.warn(f"{workload} {mode}: {text}", RuntimeWarning, stacklevel=3)


def _cannot_start(deadline: float | None, last_s: float | None, mode: Mode,
                  device: torch.device, budget_s: float | None) -> str | None:
    """Why a point should not start with what is left of the budget (``None``: it may)."""
    if deadline is None:
        return None
    left = deadline - time.perf_counter()
    if left <= 0:
        return f"time budget of {budget_s:g} s spent before this point"
    guess = last_s if last_s is not None else (
        COMPILE_GUESS_S.get(device.type, 30.0) if mode.compile else None)
    if guess is not None and guess > left:
        return (f"time budget: a point of this series takes about {guess:.0f} s "
                f"({'last point' if last_s is not None else 'compilation'}), "
                f"{left:.0f} s of {budget_s:g} s left")
    return None


def _max_batch_searches(results: Results, cfg: BenchConfig, registry: dict[str, Workload],
                        ctx: BuildContext, bar: Any, save: Callable[[], None]) -> None:
    done = {(m["workload"], m["mode"]) for m in results.max_batch}
    for name in cfg.workloads:
        workload = registry[name]
        if workload.size_name != "batch_size":
            continue
        for mode in (parse_mode(m) for m in cfg.mode_list):
            if (name, str(mode)) in done:
                continue
            reason = point_unsupported(workload, mode, ctx.device,
                                       str(mode) in cfg.explicit_modes)
            if reason is not None:
                results.max_batch.append({"workload": name, "mode": str(mode), "largest": None,
                                          "status": "unsupported", "reason": reason, "tried": []})
                save()
                continue
            bar.update(bar.task_ids[0], description=f"max batch {name} {mode}")
            found = find_max_batch(workload, mode, ctx, limit=cfg.max_batch_limit)
            results.max_batch.append({"workload": name, "mode": str(mode), **found})
            save()


class _NoProgress:
    task_ids = [0]

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *a: Any, **k: Any) -> int:
        return 0

    def update(self, *a: Any, **k: Any) -> None:
        return None

    def advance(self, *a: Any, **k: Any) -> None:
        return None

    def refresh(self) -> None:
        return None


def _progress(enabled: bool) -> Any:
    if not enabled:
        return _NoProgress()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=Console(stderr=True), transient=False,
    )
