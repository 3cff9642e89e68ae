"""``cosmobench demo``: the whole pipeline of Arcelin (2021) on built-in defaults, in minutes.

Simulate a small LSST-like data set, train the shape CNN, the Bayesian CNN, the VAE and the
flow briefly, evaluate them, generate galaxies, benchmark every workload on every device
present, and write a report folder that opens with what was measured and how it compares
with the paper's V100 and IPU timings. Every stage writes into ``cfg.out`` and is skipped
when its output is already complete, so a killed demo resumes where it stopped.

The networks are trained for a few epochs on a few thousand galaxies: enough to see the
losses fall and the pipeline run end to end, not science-grade (``benchmarks/shape_science.py``
and ``benchmarks/generation_science.py`` are the long versions).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cosmobench.config import Config
from cosmobench.errors import CosmobenchError, check_positive

__all__ = ["DemoConfig", "run_demo"]


@dataclasses.dataclass(frozen=True)
class DemoConfig(Config):
    """Settings of the demo (defaults: 2.4 minutes measured on 2 idle CPU cores, longer under load).

    Attributes:
        out: report folder (data, runs, evaluation, generation, benchmark inside).
        n_train: simulated training galaxies.
        n_test: simulated test galaxies (also the reference of the generation fidelity,
            which needs at least twice ``n_generate``).
        epochs: training epochs of each network.
        batch_size: training batch size.
        n_generate: galaxies generated from the flow and the VAE decoder.
        workers: simulation processes.
        seed: master seed (the test set uses ``seed + 1``).
        devices: devices to benchmark; ``None`` means every device present (cpu, and cuda
            when available).
        bench_budget_s: wall-clock budget of the benchmark on each device.
    """

    out: str = "cosmobench-demo"
    n_train: int = 1000
    n_test: int = 400
    epochs: int = 2
    batch_size: int = 32
    n_generate: int = 128
    workers: int = 2
    seed: int = 0
    devices: tuple[str, ...] | None = None
    bench_budget_s: float = 90.0

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test", "epochs", "batch_size", "n_generate", "workers",
                     "bench_budget_s"):
            check_positive(name, getattr(self, name))
        if self.n_test < 2 * self.n_generate:
            raise CosmobenchError(
                f"--n-test must be at least 2 x --n-generate ({2 * self.n_generate}) for the "
                f"generation fidelity floor; got {self.n_test}"
            )
        # 10 % of the galaxies are held out for validation; the rest must fill a batch
        if self.n_train < 2 * self.batch_size:
            raise CosmobenchError(
                f"--n-train must be at least {2 * self.batch_size} (twice the demo's training "
                f"batch of {self.batch_size}); got {self.n_train}"
            )


#: what a demo folder holds (anything else means the folder is someone else's)
DEMO_ENTRIES = frozenset({"data", "runs", "eval", "bench", "generated.zarr", "generated.png",
                          "REPORT.md"})


def check_demo(cfg: DemoConfig) -> tuple[str, ...]:
    """Every check of the demo's options and output, before its first stage; returns the
    devices to benchmark."""
    from cosmobench.devices import resolve_device
    from cosmobench.outputs import check_output, store_bytes

    devices = cfg.devices or present_devices()
    for d in devices:
        resolve_device(d)
    out = Path(cfg.out)
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir()
                       if p.name not in DEMO_ENTRIES and not p.name.startswith("."))
        if other:
            raise CosmobenchError(
                f"--out {out} holds files that are not a demo's (e.g. {other[0]}); give a new "
                "or empty folder, or the folder of an earlier demo to resume it"
            )
    need = store_bytes(cfg.n_train + cfg.n_test, 2) + store_bytes(cfg.n_generate, 1) + (200 << 20)
    check_output(out, "dir", need_bytes=need)
    return tuple(devices)


def present_devices() -> tuple[str, ...]:
    """``("cpu",)`` plus ``"cuda"`` when a CUDA device is available."""
    import torch

    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


class _Stages:
    """Runs named stages in order, printing a header and the time each took."""

    def __init__(self, total: int, console: Any) -> None:
        self.console = console
        self.total = total
        self.done = 0
        self.times: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], Any], *, skip: bool = False) -> Any:
        self.done += 1
        head = f"[{self.done}/{self.total}]"
        if skip:
            self.console.rule(f"{head} already done: {name}", style="dim")
            return None
        self.console.rule(f"{head} {name}")
        t0 = time.perf_counter()
        result = fn()
        self.times[name] = time.perf_counter() - t0
        self.console.print(f"[green]✓[/] {name} in {self.times[name]:.1f} s")
        return result


def run_demo(cfg: DemoConfig, console: Any = None) -> Path:
    """Run every stage of the demo into ``cfg.out``; return the path of ``REPORT.md``.

    Arguments:
        cfg: what to run.
        console: a ``rich.console.Console`` for the stage headers and times (default: a
            new one on standard output).
    """
    if console is None:
        from rich.console import Console

        console = Console()
    from cosmobench.bench import compare, run_bench
    from cosmobench.evaluate import evaluate_shape, write_shape_report
    from cosmobench.generate.fidelity import evaluate_generation
    from cosmobench.generate.run import GenerateConfig, generate
    from cosmobench.models.registry import MODEL_KINDS, SHAPE_KINDS
    from cosmobench.sim import SimConfig, simulate
    from cosmobench.store import open_dataset
    from cosmobench.train import TrainConfig, fit, load_run, make_task

    devices = check_demo(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    train_data, test_data = out / "data" / "train.zarr", out / "data" / "test.zarr"
    runs, evals = out / "runs", out / "eval"
    gen = out / "generated.zarr"
    stages = _Stages(8 + len(devices) + 1, console)

    def complete_store(path: Path) -> bool:
        try:
            open_dataset(path)
        except CosmobenchError:
            return False
        return True

    def sim(n: int, seed: int, path: Path) -> None:
        simulate(SimConfig(n=n, seed=seed), path, workers=cfg.workers)

    stages.run(f"simulate {cfg.n_train} training galaxies",
               lambda: sim(cfg.n_train, cfg.seed, train_data), skip=complete_store(train_data))
    stages.run(f"simulate {cfg.n_test} test galaxies",
               lambda: sim(cfg.n_test, cfg.seed + 1, test_data), skip=complete_store(test_data))

    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                       precision="fp32", device="cpu")
    for kind in MODEL_KINDS:
        run_dir = runs / kind
        options = {"vae_run": str(runs / "vae")} if kind == "flow" else {}
        # model.pt is written when training ends; a checkpoint alone means a killed run
        resume = (run_dir / "checkpoint.pt").exists()
        stages.run(f"train {kind}",
                   lambda kind=kind, run_dir=run_dir, options=options, resume=resume: fit(
                       make_task(kind, None, options), train_data, tcfg, run_dir,
                       resume=resume),
                   skip=(run_dir / "model.pt").exists())

    def evaluate_both() -> dict[str, Any]:
        metrics = {}
        for kind in SHAPE_KINDS:
            model, _ = load_run(runs / kind, expect_kind=kind)
            # 10 weight samples per BNN prediction (30 in `cosmobench evaluate`): a demo budget
            m = evaluate_shape(model, test_data, samples=10 if kind == "bnn" else None,
                               progress=True)
            write_shape_report(m, evals / kind)
            metrics[kind] = m.to_dict()
        return metrics

    stages.run("evaluate the shape networks on unseen galaxies", evaluate_both,
               skip=all((evals / k / "metrics.json").exists() for k in SHAPE_KINDS))

    def generate_and_check() -> None:
        gcfg = GenerateConfig(vae_run=str(runs / "vae"), flow_run=str(runs / "flow"),
                              n=cfg.n_generate, seed=cfg.seed)
        generate(gcfg, gen, device="cpu", png=out / "generated.png")
        evaluate_generation(gen, test_data, evals / "generation", n=cfg.n_generate)

    stages.run(f"generate {cfg.n_generate} galaxies and measure their fidelity",
               generate_and_check,
               skip=(evals / "generation" / "fidelity.json").exists())

    results = []
    for device in devices:
        # one results file per workload, each with its share of the budget, so that a slow
        # device still shows every workload of the paper rather than only the first one
        paths = []
        for workload in _BENCH_WORKLOADS:
            name = f"results-{device.replace(':', '')}-{workload}.json"
            paths.append(out / "bench" / name)
        results += paths
        stages.run(f"benchmark on {device}",
                   lambda device=device, paths=paths: [
                       run_bench(_bench_config(device, w, cfg.bench_budget_s
                                               / len(_BENCH_WORKLOADS)), p, command=["demo"])
                       for w, p in zip(_BENCH_WORKLOADS, paths, strict=True)],
                   skip=all(_bench_complete(p) for p in paths))

    stages.run("compare with Arcelin (2021) and write the report",
               lambda: compare(results, out / "bench"))
    return _write_report(cfg, out, devices, results, stages.times)


_BENCH_WORKLOADS = ("train-cnn", "train-bnn", "generate")


def _bench_config(device: str, workload: str, budget_s: float) -> Any:
    """The demo's benchmark of one workload: the paper's batch sizes and n, few repeats, the
    modes the device runs natively (bf16 only where the CPU has bf16 instructions or on a
    GPU that supports it; :func:`cosmobench.bench.modes.supported_modes`)."""
    from cosmobench.bench import BenchConfig
    from cosmobench.bench.modes import supported_modes
    from cosmobench.devices import resolve_device

    wanted = ("eager", "bf16") if device == "cpu" else ("cudagraph", "eager", "bf16")
    modes = supported_modes(wanted, resolve_device(device))
    return BenchConfig(
        workloads=(workload,), device=device, modes=modes, repeats=5, min_block_s=0.05,
        n=(1, 10, 100, 500, 1000) if device == "cpu" else None,
        budget_s=budget_s, warmup_max_s=10.0,
    )


def _bench_complete(path: Path) -> bool:
    from cosmobench.files import read_json

    if not path.exists():
        return False
    try:
        return bool(read_json(path).get("complete"))
    except CosmobenchError:
        return False


def _write_report(cfg: DemoConfig, out: Path, devices: tuple[str, ...], results: list[Path],
                  times: dict[str, float]) -> Path:
    from cosmobench.demo_report import format_demo_report
    from cosmobench.files import atomic_write

    text = format_demo_report(cfg, out, devices, results, times)
    path = out / "REPORT.md"
    atomic_write(path, lambda f: f.write(text.encode()))
    return path
