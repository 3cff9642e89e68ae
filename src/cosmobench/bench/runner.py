"""``run_bench(cfg) -> Results``: sweep workloads x modes x sizes, one record per point.

Every point ends as a record, whatever happens: ``ok`` with raw times; ``oom`` when the
device runs out of memory (caught, memory released, the sweep goes on); ``unsupported``
with the reason when a mode cannot run on the device or a workload's dependency is missing;
``error`` with the exception's first line; ``skipped`` once the run's time budget is spent.
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
from cosmobench.bench.modes import Mode, parse_mode, unsupported_reason
from cosmobench.bench.peak import measure_peaks, peak_key
from cosmobench.bench.results import Record, Results, load_results
from cosmobench.bench.timing import RawTiming, WallClock, measure_steady, time_epochs
from cosmobench.bench.workloads import BuildContext, InferWorkload, TrainWorkload, Workload
from cosmobench.devices import resolve_device
from cosmobench.errors import CosmobenchError

__all__ = ["default_workloads", "run_bench", "run_point"]


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


def run_point(
    workload: Workload, mode: Mode, size: int, cfg: BenchConfig, ctx: BuildContext,
    *, on_progress: Callable[[], None] | None = None,
) -> Record:
    """Build, warm up and time one point; always returns a record (never raises for OOM)."""
    device = ctx.device
    base = {
        "workload": workload.name, "mode": str(mode), "size": int(size),
        "size_name": workload.size_name, "device": str(device), "protocol": cfg.protocol,
        "precision": mode.precision, "epochs_axis": workload.epochs_axis,
    }
    reason = workload.unsupported(mode, device) or unsupported_reason(mode, device)
    if reason is not None:
        return Record(status="unsupported", reason=reason, **base)
    memory, energy = MemoryMeter(device), EnergyMeter(device)
    info: dict[str, Any] = {"load_1m_start": (load_average() or [None])[0],
                            "data": cfg.data or "synthetic"}
    started = time.perf_counter()
    case, failed = None, True
    try:
        memory.start()
        case = workload.build(mode, size, ctx)
        info.update(case.info)
        timing = _time_case(case, cfg, device, on_progress, energy.start)
        calls = timing.number_per_run * len(timing.raw_times_s)
        if case.items_per_call is None:
            raise RuntimeError("case has no items_per_call")
        energy_info = energy.stop(calls * case.items_per_call)
        info["wall_s"] = time.perf_counter() - started
        info["load_1m_end"] = (load_average() or [None])[0]
        failed = False
        return Record(
            status="ok", items_per_call=case.items_per_call, timing=timing,
            flops_per_call=case.flops_per_call, peak_key=peak_key(mode.precision, device),
            peak_memory_bytes=memory.peak(), memory_kind=memory.kind, energy=energy_info,
            info=info, **base,
        )
    except Exception as e:  # every failure becomes a record; the sweep goes on
        status = "oom" if is_oom(e) else "error"
        info["wall_s"] = time.perf_counter() - started
        return Record(status=status, reason=_first_line(e), info=info, **base)
    finally:
        if case is not None and case.cleanup is not None:
            case.cleanup()
        del case
        release_memory(device, collect=failed)


def _time_case(case: Any, cfg: BenchConfig, device: torch.device,
               on_progress: Callable[[], None] | None,
               on_timed_start: Callable[[], None]) -> RawTiming:
    if cfg.protocol == "steady":
        return measure_steady(
            case.call, device, repeats=cfg.repeats, min_block_s=cfg.min_block_s,
            events=case.events, warmup_max_s=cfg.warmup_max_s, on_block=on_progress,
            on_timed_start=on_timed_start,
        )
    if case.run_epoch is not None:  # paper protocol, training: whole epochs
        return time_epochs(
            case.run_epoch, device, epochs=cfg.epochs, untimed=cfg.untimed_epochs,
            steps_per_epoch=case.steps_per_epoch, on_epoch=on_progress,
            on_timed_start=on_timed_start,
        )
    clock = WallClock(device)  # paper protocol, generation: one warm-up, one timed call
    warm = clock.time_block(case.call, 1)
    on_timed_start()
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
    torch.manual_seed(cfg.seed)
    resumed = _resume(out, cfg, overwrite)
    results = resumed or Results(env=capture_env(device, command), config=cfg.to_dict())
    points = _points(cfg, registry, device)
    if not results.peaks:
        precisions = {parse_mode(m).precision for m in cfg.mode_list}
        results.peaks = measure_peaks(device, precisions)
    ctx = BuildContext(device=device, seed=cfg.seed, n_train=cfg.n_train,
                       protocol=cfg.protocol, data=cfg.data)
    start = time.perf_counter()

    def save() -> None:
        if out is not None:
            results.save(out)

    with _progress(progress) as bar:
        task = bar.add_task("benchmark", total=len(points))
        for workload, mode, size in points:
            if results.find(workload.name, str(mode), size) is not None:
                bar.advance(task)
                continue
            bar.update(task, description=f"{workload.name} {mode} {workload.size_name}={size}")
            if cfg.budget_s is not None and time.perf_counter() - start > cfg.budget_s:
                record = Record(
                    workload=workload.name, mode=str(mode), size=size,
                    size_name=workload.size_name, status="skipped", device=str(device),
                    protocol=cfg.protocol, precision=mode.precision,
                    reason=f"time budget of {cfg.budget_s:g} s spent before this point",
                    epochs_axis=workload.epochs_axis,
                )
            else:
                if device.type == "cpu" and results.records:  # the peak, sampled again
                    _fold_peaks(results, measure_peaks(device, {mode.precision},
                                                       min_run_time=0.2))
                record = run_point(workload, mode, size, cfg, ctx,
                                   on_progress=lambda: bar.refresh())
            results.records.append(record)
            save()
            bar.advance(task)
        if cfg.max_batch:
            _max_batch_searches(results, cfg, registry, ctx, bar, save)
    _remeasure_peaks(results, device)
    results.env["load_average_end"] = load_average()
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


def _remeasure_peaks(results: Results, device: torch.device) -> None:
    """Measure the peaks again at the end and keep the best: a peak taken while the machine
    was busy would inflate every MFU (every sample is recorded). On a CPU, shared with other
    processes, the peak is also sampled before every point."""
    _fold_peaks(results, measure_peaks(device, {k if k != "tf32" else "fp32"
                                                for k in results.peaks}))


def _fold_peaks(results: Results, again: dict[str, Any]) -> None:
    for key, new in again.items():
        old = results.peaks.get(key)
        if old is None or not old.get("flops_per_s"):
            results.peaks[key] = new
            continue
        samples = old.get("samples_flops_per_s", [old["flops_per_s"]])
        best = new if (new.get("flops_per_s") or 0) > old["flops_per_s"] else old
        results.peaks[key] = {**best, "samples_flops_per_s": [*samples, new.get("flops_per_s")]}


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
            reason = workload.unsupported(mode, ctx.device) or unsupported_reason(mode, ctx.device)
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
