"""CLI: ``cosmobench bench`` (time the workloads) and ``cosmobench compare`` (the paper's
figures and a report from results files). Options fill a ``BenchConfig``; the library does
the rest (:func:`cosmobench.bench.run_bench`, :func:`cosmobench.bench.compare`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cosmobench.cli.app import app, console
from cosmobench.errors import CosmobenchError

__all__ = ["bench", "compare_cmd", "parse_ints"]


def parse_ints(name: str, text: str | None) -> tuple[int, ...] | None:
    """``"2,4,8"`` -> ``(2, 4, 8)``; a one-line error for anything else."""
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise CosmobenchError(
            f"{name} must be comma-separated positive integers (e.g. 2,4,8); got {text!r}"
        ) from None
    if not values:
        raise CosmobenchError(f"{name} must list at least one integer; got {text!r}")
    return values


def _command_line(cfg: object, out: Path) -> list[str]:
    """The command that reproduces this run (every option, resolved), for the record."""
    d = cfg.to_dict()  # type: ignore[attr-defined]
    args = ["cosmobench", "bench", *d["workloads"], "--out", str(out), "--device", d["device"],
            "--modes", ",".join(d["modes"]), "--protocol", d["protocol"]]
    for key, opt in (("batch_sizes", "--batch-sizes"), ("n", "--n")):
        if d[key] is not None:
            args += [opt, ",".join(map(str, d[key]))]
    for key, opt in (("repeats", "--repeats"), ("epochs", "--epochs"),
                     ("untimed_epochs", "--untimed-epochs"), ("n_train", "--n-train"),
                     ("data", "--data"), ("threads", "--threads"), ("seed", "--seed"),
                     ("budget_s", "--budget"), ("min_block_s", "--min-block"),
                     ("warmup_max_s", "--warmup-max"), ("sim_galaxies", "--sim-galaxies")):
        if d[key] is not None:
            args += [opt, str(d[key])]
    if d["max_batch"]:
        args += ["--max-batch", "--max-batch-limit", str(d["max_batch_limit"])]
    return args


@app.command()
def bench(
    workloads: Annotated[list[str], typer.Argument(
        help="train-cnn, train-bnn, infer-cnn, generate, simulate, or all.")],
    out: Annotated[Path, typer.Option("--out", help="Results JSON to write.")],
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or any torch device.")] = "cpu",
    batch_sizes: Annotated[str | None, typer.Option(
        "--batch-sizes", help="Comma-separated (default: the paper's 2..14 / 2..8).")] = None,
    n: Annotated[str | None, typer.Option(
        "--n", help="Galaxies per generation call (default: 1,10,100,500,1000,5000; "
        "plus 20000,50000 off CPU).")] = None,
    modes: Annotated[str, typer.Option(
        help="Comma-separated among eager, compile, cudagraph, bf16, channels-last and "
        "'+'-combinations (cudagraph+bf16, compile+cudagraph), or all. A mode the device "
        "only emulates (bf16 on a CPU without AVX-512 BF16 or AMX) is recorded unsupported, "
        "unless named here: it then runs, with a warning.")] = "eager",
    protocol: Annotated[str, typer.Option(
        help="steady (warm-up, synchronised repeats, median/IQR) or paper (110 epochs, "
        "10 untimed).")] = "steady",
    repeats: Annotated[int, typer.Option(help="Timed blocks per point (steady).")] = 10,
    epochs: Annotated[int, typer.Option(help="Epochs (paper protocol).")] = 110,
    untimed_epochs: Annotated[int, typer.Option(
        "--untimed-epochs", help="Leading epochs not timed (paper protocol).")] = 10,
    n_train: Annotated[int, typer.Option(
        "--n-train", help="Training images per epoch; the BNN's KL weight.")] = 8000,
    data: Annotated[Path | None, typer.Option(
        "--data", help="Read batches from this store instead of synthetic tensors.")] = None,
    max_batch: Annotated[bool, typer.Option(
        "--max-batch", help="Also find the largest batch that fits in memory.")] = False,
    max_batch_limit: Annotated[int, typer.Option(
        "--max-batch-limit", help="Largest batch the search tries.")] = 4096,
    sim_galaxies: Annotated[int, typer.Option(
        "--sim-galaxies", help="Galaxies per timed call of simulate.")] = 32,
    threads: Annotated[int | None, typer.Option(help="torch threads (default: torch's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of data and weights.")] = 0,
    budget: Annotated[float | None, typer.Option(
        "--budget", help="Wall-clock limit of the whole run (peak measurement, builds and "
        "warm-ups included); a point that cannot finish inside it is cut, recorded skipped.")
    ] = None,
    min_block: Annotated[float, typer.Option(
        "--min-block", help="Seconds per timed block (calls are repeated to fill it).")] = 0.05,
    warmup_max: Annotated[float, typer.Option(
        "--warmup-max", help="Cap on each point's warm-up (seconds).")] = 60.0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --out.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Time the paper's workloads on a device; write a versioned results JSON."""
    from cosmobench.bench import BenchConfig, run_bench
    from cosmobench.bench.config import WORKLOAD_NAMES
    from cosmobench.bench.table import print_results
    from cosmobench.outputs import check_output

    check_output(out, "file", need_bytes=1 << 20, example="results.json")
    if out.is_file() and not force:
        from cosmobench.bench.results import load_results

        try:
            load_results(out)
        except CosmobenchError as e:
            raise CosmobenchError(
                f"{e}; --out must be a new file or an unfinished run to resume: choose "
                "another --out, or --force to overwrite it"
            ) from None
    if data is not None:
        from cosmobench.store import open_dataset

        open_dataset(data)  # missing, corrupt, incomplete: one line before any measurement
    names = list(WORKLOAD_NAMES) if [w.lower() for w in workloads] == ["all"] else workloads
    cfg = BenchConfig(
        workloads=tuple(names), device=device, modes=tuple(m for m in modes.split(",") if m),
        batch_sizes=parse_ints("--batch-sizes", batch_sizes), n=parse_ints("--n", n),
        protocol=protocol, repeats=repeats, epochs=epochs, untimed_epochs=untimed_epochs,
        n_train=n_train, data=str(data) if data is not None else None, max_batch=max_batch,
        max_batch_limit=max_batch_limit, sim_galaxies=sim_galaxies, threads=threads,
        seed=seed, budget_s=budget, min_block_s=min_block, warmup_max_s=warmup_max,
    )
    results = run_bench(cfg, out, progress=progress, command=_command_line(cfg, out),
                        overwrite=force)
    print_results(results, console)
    console.print(f"results: {out}")


@app.command("compare")
def compare_cmd(
    results: Annotated[list[Path], typer.Argument(help="Results files from cosmobench bench.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for figures and report.md.")],
    reference: Annotated[str, typer.Option(
        help="Published timings to overlay: arcelin2021, none, or a JSON file.")] = "arcelin2021",
) -> None:
    """The paper's figures and a Markdown report from any number of results files."""
    from cosmobench.bench import compare
    from cosmobench.outputs import check_output

    check_output(out, "dir", need_bytes=8 << 20)
    report = compare(results, out, reference=None if reference == "none" else reference)
    console.print(f"report: {report}")
