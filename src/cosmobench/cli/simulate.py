"""CLI commands ``simulate`` (make a data set) and ``inspect`` (summarise and plot one).

Options fill a :class:`~cosmobench.sim.SimConfig` (starting from ``--preset`` when given,
explicit options overriding it) and call :func:`cosmobench.sim.simulate`. Bad input is a
one-line error naming what is allowed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from cosmobench.cli.app import app, console
from cosmobench.errors import CosmobenchError

__all__ = ["simulate_command", "inspect_command", "parse_shear", "parse_visits"]


def parse_shear(text: str | None) -> dict[str, object]:
    """``"g1,g2"`` → constant shear; ``"random:SIGMA"`` → per-galaxy shear; ``None`` → nothing."""
    if text is None:
        return {}
    if text.startswith("random:"):
        try:
            return {"shear_sigma": float(text[len("random:") :])}
        except ValueError:
            pass
    else:
        parts = text.split(",")
        try:
            if len(parts) == 2:
                return {"shear": (float(parts[0]), float(parts[1]))}
        except ValueError:
            pass
    raise CosmobenchError(
        f"--shear must be g1,g2 (e.g. 0.02,-0.01) or random:SIGMA (e.g. random:0.03); got {text!r}"
    )


def parse_visits(text: str | None) -> tuple[int, ...] | None:
    """``"56,80,184,184,160,160"`` → six visit counts (u, g, r, i, z, y)."""
    if text is None:
        return None
    try:
        visits = tuple(int(v) for v in text.split(","))
    except ValueError:
        visits = ()
    if len(visits) != 6 or min(visits) <= 0:
        raise CosmobenchError(
            "--visits must be six positive integers u,g,r,i,z,y (e.g. 56,80,184,184,160,160); "
            f"got {text!r}"
        )
    return visits


_Opt = typer.Option


@app.command("simulate")
def simulate_command(
    n: Annotated[int, _Opt("--n", help="Number of galaxies.")],
    out: Annotated[Path, _Opt("--out", help="Output data set (a Zarr folder, e.g. data.zarr).")],
    seed: Annotated[int | None, _Opt(help="Master seed (default: 0).")] = None,
    population: Annotated[
        str | None, _Opt(help="builtin (default) or cosmos:DIR (GalSim COSMOS catalog).")
    ] = None,
    psf: Annotated[str | None, _Opt(help="kolmogorov (default), lsst, seeing or moffat.")] = None,
    psf_fwhm: Annotated[
        float | None, _Opt(help="PSF FWHM (or median seeing) in arcsec (default: 0.65).")
    ] = None,
    years: Annotated[float | None, _Opt(help="Survey depth in years (default: 10).")] = None,
    visits: Annotated[
        str | None, _Opt(help="Visits per band u,g,r,i,z,y (overrides --years).")
    ] = None,
    preset: Annotated[
        str | None, _Opt(help="arcelin2021: the paper's PSF, depth, sky and zero points.")
    ] = None,
    mag_limit: Annotated[
        float | None, _Opt(help="Keep galaxies with i < this (default: 25.3).")
    ] = None,
    shear: Annotated[
        str | None, _Opt(help="Lensing shear: g1,g2 (constant) or random:SIGMA (per galaxy).")
    ] = None,
    ring: Annotated[bool, _Opt("--ring", help="90°-rotated pairs (shape noise cancels).")] = False,
    shear_test: Annotated[
        float | None,
        _Opt(
            "--shear-test",
            help="Shear-test design (Pujol et al. 2019): each of the N galaxies drawn 4 times, "
            "sheared by +G and -G (same noise), each a 90° ring pair: 4N images. For "
            "`cosmobench shear`.",
        ),
    ] = None,
    measure: Annotated[
        bool, _Opt("--measure/--no-measure", help="HSM KSB and REGAUSS columns.")
    ] = True,
    workers: Annotated[int, _Opt(help="Worker processes.")] = 1,
    scheduler: Annotated[
        str | None,
        _Opt(
            help="Dask: 'local', a scheduler address (tcp://host:8786), or slurm:SPEC "
            "(Slurm jobs via dask-jobqueue; SPEC a YAML/JSON/TOML file or "
            "cores=8,memory=16GB,...; see docs/scaling.md)."
        ),
    ] = None,
    chunk_size: Annotated[
        int | None, _Opt(help="Galaxies per stored chunk (default: 256).")
    ] = None,
    progress: Annotated[bool, _Opt("--progress/--no-progress", help="Progress bar.")] = True,
    ignore_free_space: Annotated[
        bool, _Opt("--ignore-free-space", help="Skip the check that the disk can hold --n.")
    ] = False,
) -> None:
    """Simulate LSST-like galaxies (ugrizy, 64×64 at 0.2″) into a data set; rerun to resume."""
    from cosmobench.sim import SimConfig, simulate

    if n < 1:
        raise CosmobenchError(f"--n must be a positive number of galaxies; got {n}")
    if years is not None and visits is not None:
        raise CosmobenchError("give --years or --visits, not both")
    if workers < 1:
        raise CosmobenchError(f"--workers must be >= 1; got {workers}")
    overrides = {
        "n": n,
        "seed": seed,
        "population": population,
        "psf": psf,
        "psf_fwhm": psf_fwhm,
        "years": years,
        "visits": parse_visits(visits),
        "mag_limit": mag_limit,
        "ring": ring or None,
        "shear_test": shear_test,
        "measure": None if measure else False,
        "chunk_size": chunk_size,
        **parse_shear(shear),
    }
    cfg = SimConfig.from_preset(preset, **overrides)
    from cosmobench.outputs import check_store_output

    check_store_output(out, cfg.n, images=2, space_check=not ignore_free_space,
                       override="--ignore-free-space")
    t0 = time.perf_counter()
    path = simulate(cfg, out, workers=workers, scheduler=scheduler, progress=progress)
    dt = time.perf_counter() - t0
    what = f"{cfg.n:,} galaxies" + (
        f" ({cfg.n_images:,} shear-test images)" if cfg.shear_test > 0 else ""
    )
    console.print(f"wrote {what} to [bold]{path}[/] in {dt:.1f} s", highlight=False)


@app.command("inspect")
def inspect_command(
    data: Annotated[Path, typer.Argument(help="A data set made by simulate or generate.")],
    png: Annotated[Path | None, _Opt(help="Write a PNG grid of galaxies × bands here.")] = None,
    galaxies: Annotated[int, _Opt(help="Galaxies (rows) in the PNG grid.")] = 6,
) -> None:
    """Summarise a data set (count, bands, magnitudes, SNR, PSF, depth); --png draws examples."""
    from cosmobench.store import open_dataset
    from cosmobench.summary import plot_grid, summarize, summary_tables

    if galaxies < 1:
        raise CosmobenchError(f"--galaxies must be >= 1; got {galaxies}")
    if png is not None:
        from cosmobench.outputs import check_image_path

        check_image_path(png)
    ds = open_dataset(data, allow_incomplete=True)
    for table in summary_tables(summarize(ds)):
        console.print(table)
    if png is not None:
        try:
            path = plot_grid(ds, png, n=galaxies)
        except OSError as e:
            raise CosmobenchError(f"cannot write {png}: {e.strerror or e}") from None
        console.print(f"wrote {path}")
