r"""Fidelity of generated galaxies: HSM moments compared with simulated ones.

The check is described in ``docs/models.md`` (science checks).

For every noiseless galaxy and band, GalSim's adaptive moments (``galsim.hsm.FindAdaptiveMom``:
Bernstein & Jarvis 2002, AJ 123, 583; Hirata & Seljak 2003, MNRAS 343, 459) give the best-fit
elliptical Gaussian: its amplitude (**flux**, electrons; compared as :math:`\log_{10}`, i.e. in
units of 2.5 mag), its width :math:`\sigma` (**size**, arcsec, PSF included) and its shape
(**e1**, **e2**, the shear convention :math:`|e| = (1-q)/(1+q)` of the training labels).

Each quantity's generated distribution is compared with the simulated one by the 1-D
Wasserstein-1 distance

.. math:: W_1(P, Q) = \int_{-\infty}^{\infty} |F_P(x) - F_Q(x)|\, dx
                    = \int_0^1 |F_P^{-1}(u) - F_Q^{-1}(u)|\, du

(Villani 2009, *Optimal transport*, remark 2.19), computed exactly from the two empirical
CDFs with numpy (:func:`wasserstein_1d`). A distance means little alone: the **floor** is
the distance between two independent simulated sets of the same size (the reference split
in two halves), i.e. what sampling noise alone gives. A generator as good as the simulator
has ``distance / floor`` near 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cosmobench.errors import CosmobenchError

__all__ = ["QUANTITIES", "adaptive_moments", "wasserstein_1d", "evaluate_generation",
           "fidelity_table"]

#: Quantity -> (label, unit) of what is compared.
QUANTITIES: dict[str, tuple[str, str]] = {
    "log10_flux": ("log10 flux (HSM amplitude)", "log10 electrons"),
    "size": ("size (HSM sigma)", "arcsec"),
    "e1": ("e1 (HSM observed shape)", ""),
    "e2": ("e2 (HSM observed shape)", ""),
}
_BLOCK = 256  # galaxies read and measured at a time


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """Exact W1 distance between the empirical distributions of ``a`` and ``b`` (NaNs dropped).

    Example:
        >>> wasserstein_1d(np.array([0.0, 1.0]), np.array([0.0, 2.0]))
        0.5
    """
    a = np.sort(np.asarray(a, dtype=np.float64)[np.isfinite(a)])
    b = np.sort(np.asarray(b, dtype=np.float64)[np.isfinite(b)])
    if a.size == 0 or b.size == 0:
        return float("nan")
    knots = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(a, knots[:-1], side="right") / a.size
    cdf_b = np.searchsorted(b, knots[:-1], side="right") / b.size
    return float(np.sum(np.abs(cdf_a - cdf_b) * np.diff(knots)))


def adaptive_moments(images: np.ndarray, pixel_scale: float) -> dict[str, np.ndarray]:
    """HSM adaptive moments of every galaxy and band: quantity -> (n, bands); NaN on failure."""
    import galsim

    n, bands = images.shape[:2]
    out = {q: np.full((n, bands), np.nan) for q in QUANTITIES}
    for i in range(n):
        for b in range(bands):
            img = galsim.Image(np.ascontiguousarray(images[i, b], dtype=np.float64),
                               scale=pixel_scale)
            try:
                res = galsim.hsm.FindAdaptiveMom(img, strict=False)
            except (galsim.GalSimError, RuntimeError, ValueError):
                continue
            if res.moments_status != 0 or not res.moments_amp > 0:
                continue
            out["log10_flux"][i, b] = np.log10(res.moments_amp)
            out["size"][i, b] = res.moments_sigma * pixel_scale
            out["e1"][i, b] = res.observed_shape.g1
            out["e2"][i, b] = res.observed_shape.g2
    return out


def _measure(ds: Any, rows: range, progress: Any, task: Any) -> dict[str, np.ndarray]:
    parts = []
    for s in range(rows.start, rows.stop, _BLOCK):
        e = min(rows.stop, s + _BLOCK)
        parts.append(adaptive_moments(ds.images("noiseless", slice(s, e)), ds.pixel_scale))
        progress.advance(task, e - s)
    return {q: np.concatenate([p[q] for p in parts]) for q in QUANTITIES}


def evaluate_generation(
    gen: str | Path,
    reference: str | Path,
    out: str | Path,
    *,
    n: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Compare generated with simulated noiseless galaxies; write ``fidelity.json`` and PNGs.

    Arguments:
        gen: a store with ``noiseless`` images (made by ``generate``).
        reference: a simulated store with ``noiseless`` images, at least ``2 n`` galaxies.
        out: folder for ``fidelity.json``, ``hist_<quantity>.png`` and ``grid.png``.
        n: galaxies per compared set; default ``min(gen.n, reference.n // 2)``. The first
            ``n`` generated galaxies are compared with reference galaxies ``[0, n)``; the
            floor compares reference ``[n, 2n)`` with the same ``[0, n)``.
        progress: show a progress bar.

    Returns:
        The JSON record: per quantity and band the distance, the floor, their ratio and the
        HSM failure counts.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from cosmobench.files import write_json
    from cosmobench.store import open_dataset

    gds, rds = open_dataset(gen), open_dataset(reference)
    if Path(gen).resolve() == Path(reference).resolve():
        raise CosmobenchError(f"{gen} is given as both the generated set and its reference; "
                              "give a simulated store (cosmobench simulate) as --reference")
    if gds.kind != "generation":
        raise CosmobenchError(f"{gds.path} is a {gds.kind} store, not generated galaxies; give "
                              "a store made by cosmobench generate")
    if rds.kind != "simulation":
        raise CosmobenchError(f"the reference {rds.path} is a {rds.kind} store; give a store "
                              "made by cosmobench simulate")
    for ds in (gds, rds):
        if "noiseless" not in ds.image_names:
            raise CosmobenchError(f"{ds.path} has no noiseless images; fidelity needs them")
    if gds.bands != rds.bands or gds.stamp_size != rds.stamp_size:
        raise CosmobenchError(f"{gds.path} and {rds.path} have other bands or stamp sizes")
    most = min(gds.n, rds.n // 2)
    if most < 1:
        raise CosmobenchError(f"the reference {rds.path} needs at least 2 galaxies (two halves)")
    m = most if n is None else int(n)
    if not 1 <= m <= most:
        raise CosmobenchError(f"n must be between 1 and {most} (generated {gds.n}, reference "
                              f"{rds.n} split in two halves); got {n}")
    columns = (TextColumn("HSM moments"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("moments", total=3 * m)
        g = _measure(gds, range(0, m), bar, task)
        r1 = _measure(rds, range(0, m), bar, task)
        r2 = _measure(rds, range(m, 2 * m), bar, task)
    result: dict[str, Any] = {
        "schema": "cosmobench.fidelity", "schema_version": 1,
        "generated": str(Path(gen).resolve()), "reference": str(Path(reference).resolve()),
        "n": m, "bands": list(gds.bands),
        "method": "1-D Wasserstein-1 distance of HSM adaptive-moment quantities of noiseless "
                  "images (numpy, exact for empirical CDFs); floor: reference [n, 2n) vs "
                  "reference [0, n); generated [0, n) vs reference [0, n)",
        "quantities": {},
    }
    for q, (label, unit) in QUANTITIES.items():
        dist = [wasserstein_1d(g[q][:, b], r1[q][:, b]) for b in range(len(gds.bands))]
        floor = [wasserstein_1d(r2[q][:, b], r1[q][:, b]) for b in range(len(gds.bands))]
        result["quantities"][q] = {
            "label": label, "unit": unit, "distance": dist, "floor": floor,
            "ratio": [d / f if f > 0 else float("nan") for d, f in zip(dist, floor, strict=True)],
            "failures": {"generated": np.isnan(g[q]).sum(0).tolist(),
                         "reference": np.isnan(r1[q]).sum(0).tolist(),
                         "reference_floor": np.isnan(r2[q]).sum(0).tolist()},
        }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "fidelity.json", result)
    _figures(out, gds, rds, g, r1, r2)
    return result


def _figures(out: Path, gds: Any, rds: Any, g: dict, r1: dict, r2: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cosmobench.files import atomic_write
    from cosmobench.generate.figures import save_grid

    for q, (label, unit) in QUANTITIES.items():
        fig, axes = plt.subplots(2, 3, figsize=(10, 5.5))
        for b, ax in enumerate(axes.flat[: len(gds.bands)]):
            sets = [x[:, b][np.isfinite(x[:, b])] for x in (g[q], r1[q], r2[q])]
            both = np.concatenate(sets)
            if both.size == 0:
                continue
            lo, hi = np.percentile(both, [0.5, 99.5])
            bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 40)
            ax.hist(sets[1], bins, histtype="stepfilled", alpha=0.35, label="simulated",
                    density=True)
            ax.hist(sets[2], bins, histtype="step", ls="--", color="grey",
                    label="simulated (2nd half)", density=True)
            ax.hist(sets[0], bins, histtype="step", lw=1.5, label="generated", density=True)
            ax.set_title(f"{gds.bands[b]} band", fontsize=9)
            ax.set_xlabel(f"{label}{f' [{unit}]' if unit else ''}", fontsize=8)
        axes.flat[0].legend(fontsize=7)
        fig.suptitle(f"{label}: generated vs simulated noiseless galaxies (n = {len(g[q])})")
        fig.tight_layout()
        atomic_write(out / f"hist_{q}.png", lambda f, fig=fig: fig.savefig(f, format="png",
                                                                          dpi=80))
        plt.close(fig)
    k = min(18, len(g["size"]))
    save_grid({"generated": gds.images("noiseless", slice(0, k)),
               "simulated": rds.images("noiseless", slice(0, k))},
              out / "grid.png", title="generated vs simulated (noiseless)")


def fidelity_table(result: dict[str, Any]) -> Any:
    """A rich table: per quantity and band, distance / floor."""
    from rich.table import Table

    table = Table(title=f"generation fidelity: W1 distance (floor) [ratio], n = {result['n']}")
    table.add_column("quantity")
    for band in result["bands"]:
        table.add_column(band, justify="right")
    for q, rec in result["quantities"].items():
        cells = [f"{d:.3g} ({f:.2g}) [{r:.1f}]"
                 for d, f, r in zip(rec["distance"], rec["floor"], rec["ratio"], strict=True)]
        table.add_row(q, *cells)
    return table
