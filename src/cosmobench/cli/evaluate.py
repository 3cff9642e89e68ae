"""CLI: ``cosmobench evaluate RUN --data TEST --out DIR`` — the shape checks of ``docs/models.md``.

Loads a trained shape network (``cnn`` or ``bnn`` run folder), evaluates it on a test store
with :func:`cosmobench.evaluate.evaluate_shape`, writes ``DIR/metrics.json`` and PNG
figures, and prints a summary table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cosmobench.cli.app import app, console, err_console
from cosmobench.errors import CosmobenchError

__all__ = ["evaluate"]


def _summary(metrics: Any) -> None:
    from rich.table import Table

    d = metrics.to_dict()
    table = Table(title=f"{d['kind'].upper()} on {d['n']} galaxies ({d['samples']} sample(s))")
    cols = ("est.", "target", "RMSE", "slope", "offset", "pull μ", "pull σ", "68%", "95%")
    for col in (*cols, "failed"):
        table.add_column(col, justify="right", no_wrap=True)

    def f(v: Any) -> str:
        return "—" if v is None else f"{v:.3f}"

    for t in d["targets"]:
        s = d["overall"][t]
        cells = [s["rmse"], s.get("slope"), s.get("offset"), s["pull_mean"], s["pull_std"]]
        cells += [s["coverage_68"], s["coverage_95"]]
        table.add_row(d["kind"], t, *map(f, cells), "")
    j = d["overall"]["joint"]
    table.add_row(d["kind"], "joint", *[""] * 5, f(j["coverage_68"]), f(j["coverage_95"]), "")
    for name, b in d["baselines"].items():
        o = b["overall"]
        failed = f"{100 * (o['failure_fraction'] or 0):.1f}%"
        for t in ("e1", "e2"):
            cells = [o[t]["rmse"], o[t]["slope"], o[t]["offset"]]
            table.add_row(name, t, *map(f, cells), *[""] * 4, failed)
    console.print(table)


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder of a trained cnn or bnn (its model.pt).")],
    data: Annotated[Path, typer.Option("--data", help="Test store (never seen in training).")],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for metrics.json and the PNG figures.")
    ],
    samples: Annotated[
        int | None, typer.Option(help="Weight samples per BNN prediction (default: 30; CNN: 1).")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 256,
    snr_bins: Annotated[
        int, typer.Option("--snr-bins", help="Quantile bins of the r-band SNR.")
    ] = 4,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N, ...")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed of the BNN weight noise.")] = 0,
    figures: Annotated[
        bool, typer.Option("--figures/--no-figures", help="Write PNG figures.")
    ] = True,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Progress bar.")
    ] = True,
    exclude_nonfinite: Annotated[
        bool, typer.Option("--exclude-nonfinite", help="Leave out galaxies with NaN/inf pixels, "
                           "labels or SNR (counted, printed first); without it they are an error.")
    ] = False,
) -> None:
    """Shape metrics of a trained CNN/BNN on a test set: RMSE, ellipticity regression slope
    and offset, pulls, coverage of the
    68.27 % and 95.45 % regions, by SNR bin, next to KSB and REGAUSS."""
    from cosmobench.devices import resolve_device
    from cosmobench.evaluate import evaluate_shape, write_shape_report
    from cosmobench.models.registry import SHAPE_KINDS
    from cosmobench.outputs import check_output
    from cosmobench.store import open_dataset
    from cosmobench.train import load_run

    check_output(out, "dir", need_bytes=8 << 20)
    resolve_device(device)
    model, info = load_run(run, expect_kind=SHAPE_KINDS, device=device)
    ds = open_dataset(data)
    if snr_bins > ds.n:
        raise CosmobenchError(
            f"--snr-bins {snr_bins} is more than the {ds.n} galaxies of {data}; use at most "
            f"{max(1, ds.n // 10)} (about 10 galaxies per bin or more)"
        )
    metrics = evaluate_shape(
        model,
        ds,
        samples=samples,
        batch_size=batch_size,
        snr_bins=snr_bins,
        seed=seed,
        progress=progress,
        exclude_nonfinite=exclude_nonfinite,
    )
    if metrics.n_excluded:
        err_console.print(
            f"[yellow]warning:[/] {metrics.n_excluded} of {ds.n} galaxies with NaN/inf pixels, "
            "labels or SNR left out (--exclude-nonfinite); every metric below is over the "
            f"other {ds.n - metrics.n_excluded}"
        )
    train_data = (info.get("train_config") or {}).get("data")
    same = bool(train_data) and Path(train_data).resolve() == Path(data).resolve()
    metrics.meta.update(
        run=str(run), train_data=train_data, epoch=info.get("epoch"), test_is_training_data=same
    )
    if same:
        err_console.print(
            f"[yellow]warning:[/] {data} is the training data of {run}: the metrics are not "
            "those of galaxies never seen in training"
        )
    paths = write_shape_report(metrics, out, figures=figures)
    _summary(metrics)
    console.print(f"wrote {', '.join(p.name for p in paths)} to {out}")
