"""CLI: ``cosmobench shear STORE --estimators truth,ksb,regauss,RUN --out DIR``.

Measures the weak-lensing shear bias m, c of each estimator on a shear-test store
(``cosmobench simulate --shear-test G``) with :func:`cosmobench.shear.measure_shear`,
optionally with metacalibration, and writes ``DIR/shear.json``, ``shear.md`` and
``shear.png``. The per-block estimates are kept in ``DIR/estimates``: rerun the same
command after a kill and only the missing blocks are measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cosmobench.cli.app import app, console

__all__ = ["shear_command"]

_Opt = typer.Option


@app.command("shear")
def shear_command(
    store: Annotated[Path, typer.Argument(help="A shear-test store (simulate --shear-test G).")],
    estimators: Annotated[
        str,
        _Opt(
            "--estimators", help="Comma-separated: truth, ksb, regauss and/or cnn/bnn run folders."
        ),
    ],
    out: Annotated[Path, _Opt("--out", help="Folder for shear.json, shear.md, shear.png.")],
    metacal: Annotated[
        bool, _Opt("--metacal/--no-metacal", help="Also calibrate with metacalibration.")
    ] = False,
    metacal_galaxies: Annotated[
        int | None, _Opt("--metacal-galaxies", help="Metacalibrate only the first N galaxies.")
    ] = None,
    errors: Annotated[str, _Opt(help="bootstrap or jackknife over galaxies.")] = "bootstrap",
    resamples: Annotated[int, _Opt(help="Bootstrap draws.")] = 500,
    snr_bins: Annotated[int, _Opt("--snr-bins", help="Quantile bins of the r-band SNR.")] = 4,
    size_bins: Annotated[int, _Opt("--size-bins", help="Quantile bins of the size.")] = 4,
    samples: Annotated[int, _Opt(help="Weight samples per BNN prediction.")] = 10,
    workers: Annotated[int, _Opt(help="Worker processes.")] = 1,
    seed: Annotated[int, _Opt(help="Seed of the bootstrap, BNN and metacal noise.")] = 0,
    progress: Annotated[bool, _Opt("--progress/--no-progress", help="Progress bar.")] = True,
) -> None:
    """Shear bias m, c of each estimator (paired ±g differences, Pujol et al. 2019), raw
    and with metacalibration, overall and by SNR and size."""
    import shlex
    import sys

    from cosmobench.outputs import check_output
    from cosmobench.shear import ShearConfig, measure_shear, write_shear_report

    check_output(out, "dir", need_bytes=8 << 20)  # JSON, Markdown and one PNG
    cfg = ShearConfig(
        estimators=tuple(s.strip() for s in estimators.split(",") if s.strip()),
        metacal=metacal,
        metacal_galaxies=metacal_galaxies,
        errors=errors,
        resamples=resamples,
        snr_bins=snr_bins,
        size_bins=size_bins,
        samples=samples,
        workers=workers,
        seed=seed,
    )
    # finished blocks of estimates are kept in DIR/estimates: a killed run resumes
    result = measure_shear(store, cfg, progress=progress, resume_dir=out / "estimates")
    command = "cosmobench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    paths = write_shear_report(result, out, command=command)
    for name, d in result["estimators"].items():
        line = (
            f"{name}: m1 {d['m1']:+.4f} ± {d['m1_err']:.4f}, m2 {d['m2']:+.4f} ± {d['m2_err']:.4f}"
        )
        if d.get("metacal"):
            mc = d["metacal"]
            line += f"; metacal m {mc['m']:+.4f} ± {mc['m_err']:.4f}"
        console.print(line, highlight=False)
    console.print(f"wrote {', '.join(p.name for p in paths)} to {out}")
