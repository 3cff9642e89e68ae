"""Looking at a data set: a summary (count, bands, magnitudes, SNR, PSF, depth) and a PNG grid.

:func:`summarize` works on any store (``kind`` simulation or generation, complete or not)
and returns plain data; :func:`summary_tables` turns it into rich tables; :func:`plot_grid`
draws galaxies × bands, noiseless and noisy, with an arcsinh stretch (Lupton et al. 2004,
PASP 116, 133) scaled to the noise level of each band, so faint wings and bright cores
both show.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cosmobench.store import Dataset

__all__ = ["summarize", "summary_tables", "plot_grid"]

QUANTILES = (5, 50, 95)


def _sample_rows(ds: Dataset, limit: int) -> np.ndarray:
    """Rows of whole written chunks, spread over the store, about ``limit`` of them (at least
    one chunk): what the summary reads, so its cost follows ``limit``, not the store's size."""
    chunks = ds.done_chunks
    if chunks.size == 0:
        return np.zeros(0, np.int64)
    take = max(1, min(chunks.size, limit // ds.chunk_size))
    pick = np.unique(chunks[np.linspace(0, chunks.size - 1, take).astype(int)])
    return np.concatenate(
        [np.arange(k * ds.chunk_size, min(ds.n, (k + 1) * ds.chunk_size)) for k in pick]
    )


def _rows_done(ds: Dataset, m: int) -> np.ndarray:
    """``m`` written rows spread over the store (for the PNG grid)."""
    rows = _sample_rows(ds, max(m, 1) * ds.chunk_size)
    if rows.size == 0:
        return rows
    return np.unique(rows[np.linspace(0, rows.size - 1, min(m, rows.size)).astype(int)])


def _q(x: np.ndarray) -> list[float] | None:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return None if x.size == 0 else [float(v) for v in np.percentile(x, QUANTILES)]


def _sky(ds: Dataset) -> list[float] | None:
    """Sky per pixel per band from a simulation's config; ``None`` otherwise."""
    cfg = ds.config
    if ds.kind != "simulation" or "constants" not in cfg:
        return None
    from cosmobench.survey import exposure_time, lsst, sky_per_pixel

    const = lsst(cfg["constants"])
    visits = tuple(cfg["visits"]) if cfg.get("visits") else None
    t = exposure_time(const, years=cfg.get("years", 10.0), visits=visits)
    return [float(v) for v in sky_per_pixel(const, t, ds.pixel_scale)]


def summarize(ds: Dataset, sample: int = 256, column_sample: int = 20000) -> dict[str, Any]:
    """Counts, per-band quantiles (5, 50, 95 %) and the settings of a data set, as plain data.

    Only whole written chunks spread over the store are read (about ``column_sample``
    galaxies for the columns, ``sample`` for the images), so the cost follows what is shown,
    not the size the store declares.

    Arguments:
        ds: an opened data set (``open_dataset(path, allow_incomplete=True)`` works too).
        sample: galaxies whose images are read (flux of a generation store, NaN pixels).
        column_sample: galaxies whose columns are read for the quantiles.
    """
    rows = _sample_rows(ds, column_sample)
    img_rows = rows[:sample]
    cfg = ds.config
    out: dict[str, Any] = {
        "path": str(ds.path),
        "kind": ds.kind,
        "n": ds.n,
        "written": ds.rows_written,
        "read": int(rows.size),
        "chunks": f"{ds.done_chunks.size}/{ds.n_chunks}",
        "missing_chunks": list(ds.missing_chunks),
        "nonfinite": {},
        "bands": list(ds.bands),
        "pixel_scale": ds.pixel_scale,
        "stamp_size": ds.stamp_size,
        "images": list(ds.image_names),
        "config": cfg,
        "sky_per_pixel": _sky(ds),
        "bands_stats": {},
        "columns_stats": {},
    }
    cols = set(ds.columns)
    per_band: dict[str, Any] = {}
    for name in ("mag", "snr", "flux", "psf_fwhm"):
        if name in cols:
            v = ds.column(name, rows)
            per_band[name] = [_q(v[:, b]) for b in range(len(ds.bands))]
    for kind in ds.image_names:
        if not img_rows.size:
            break
        x = ds.images(kind, img_rows)
        bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
        out["nonfinite"][kind] = {"galaxies": int(bad.sum()), "of": int(len(x))}
        if kind == "noiseless" and "flux" not in per_band:
            flux = np.where(np.isfinite(x), x, 0.0).sum(axis=(2, 3))[~bad]
            per_band["flux"] = [_q(flux[:, b]) for b in range(len(ds.bands))]
    out["bands_stats"] = per_band
    for name in ("redshift", "hlr", "e1", "e2", "g1", "g2", "ksb_e1", "regauss_e1"):
        if name in cols:
            v = ds.column(name, rows).astype(np.float64)
            out["columns_stats"][name] = {
                "quantiles": _q(v),
                "rms": float(np.sqrt(np.nanmean(v**2))) if np.isfinite(v).any() else None,
                "nan_fraction": float(np.mean(~np.isfinite(v))) if v.size else None,
            }
    return out


def _fmt(q: list[float] | None, digits: int = 2) -> str:
    return "—" if q is None else " / ".join(f"{v:.{digits}f}" for v in q)


def summary_tables(summary: dict[str, Any]) -> list[Any]:
    """Rich tables: the data set, its settings, per band, per column."""
    from rich.table import Table

    s = summary
    head = Table(title=f"{s['path']}", show_header=False)
    head.add_column("key", style="bold")
    head.add_column("value")
    head.add_row("kind", s["kind"])
    state = "complete" if s["written"] == s["n"] else f"[red]incomplete[/] ({s['chunks']} chunks)"
    head.add_row("galaxies", f"{s['written']:,} of {s['n']:,} written, {state}")
    if s.get("missing_chunks"):
        ks = s["missing_chunks"]
        listed = ", ".join(map(str, ks[:5])) + (" ..." if len(ks) > 5 else "")
        head.add_row(
            "[red]missing[/]",
            f"[red]{len(ks)} chunk(s) marked written have no image files[/] ({listed}); rerun "
            "the command that made the data set to write them again",
        )
    if s.get("read") is not None and s["read"] < s["written"]:
        head.add_row("statistics", f"from {s['read']:,} galaxies (whole chunks spread over it)")
    for kind, bad in (s.get("nonfinite") or {}).items():
        flag = "[red]" if bad["galaxies"] else ""
        head.add_row(
            f"NaN/inf pixels ({kind})",
            f"{flag}{bad['galaxies']} of {bad['of']} galaxies read" + ("[/]" if flag else ""),
        )
    head.add_row("bands", "".join(s["bands"]))
    head.add_row(
        "images", ", ".join(s["images"]) + f" ({s['stamp_size']}² px at {s['pixel_scale']}″)"
    )
    cfg = s["config"]
    if s["kind"] == "simulation":
        psf, fwhm = cfg.get("psf", "?"), cfg.get("psf_fwhm")
        psf += {
            "kolmogorov": f" {fwhm}″",
            "moffat": f" {fwhm}″ β={cfg.get('moffat_beta')}",
            "seeing": f" median {fwhm}″ σ_ln={cfg.get('seeing_sigma')}",
            "lsst": " (per band)",
        }.get(psf, "")
        depth = f"visits {cfg['visits']}" if cfg.get("visits") else f"{cfg.get('years')} years"
        head.add_row("population", f"{cfg.get('population')} (i < {cfg.get('mag_limit')})")
        head.add_row("PSF", psf)
        head.add_row("depth", f"{depth}, {cfg.get('constants')} constants")
        shear = (
            f"random σ={cfg['shear_sigma']}" if cfg.get("shear_sigma") else f"{cfg.get('shear')}"
        )
        head.add_row("shear", shear + (", ring pairs" if cfg.get("ring") else ""))
        head.add_row("seed / preset", f"{cfg.get('seed')} / {cfg.get('preset') or '—'}")
    else:
        for key, value in list(cfg.items())[:8]:
            head.add_row(str(key), str(value))
    tables = [head]

    bands = Table(title="per band: 5 / 50 / 95 %")
    bands.add_column("band", style="bold")
    stats = s["bands_stats"]
    names = [k for k in ("mag", "snr", "flux", "psf_fwhm") if k in stats]
    for k in names:
        bands.add_column(
            {"mag": "AB mag", "snr": "SNR", "flux": "flux (e⁻)", "psf_fwhm": "PSF FWHM (″)"}[k]
        )
    if s["sky_per_pixel"]:
        bands.add_column("sky (e⁻/px)")
    for b, band in enumerate(s["bands"]):
        cells = [_fmt(stats[k][b], 0 if k == "flux" else 2) for k in names]
        if s["sky_per_pixel"]:
            cells.append(f"{s['sky_per_pixel'][b]:,.0f}")
        bands.add_row(band, *cells)
    tables.append(bands)

    if s["columns_stats"]:
        cols = Table(title="columns: 5 / 50 / 95 %")
        for h in ("column", "quantiles", "rms", "NaN"):
            cols.add_column(h)
        for name, st in s["columns_stats"].items():
            rms = "—" if st["rms"] is None else f"{st['rms']:.3f}"
            nan = "—" if st["nan_fraction"] is None else f"{100 * st['nan_fraction']:.1f} %"
            cols.add_row(name, _fmt(st["quantiles"], 3), rms, nan)
        tables.append(cols)
    return tables


def plot_grid(ds: Dataset, path: str | Path, n: int = 6) -> Path:
    """PNG of ``n`` galaxies (rows) × bands, noiseless then noisy, arcsinh-stretched.

    Each band is scaled by its noise rms σ_b (√sky for a simulation; the MAD of the noisy
    stamp otherwise): pixel → arcsinh(x / σ_b), shown from −2 to the galaxy's noiseless peak.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pick = _rows_done(ds, n)
    if pick.size == 0:
        from cosmobench.errors import CosmobenchError

        raise CosmobenchError(f"{ds.path} has no galaxy written yet; nothing to plot")
    kinds = [k for k in ("noiseless", "noisy") if k in ds.image_names]
    imgs = {k: ds.images(k, pick) for k in kinds}  # (m, B, S, S)
    sky = _sky(ds)
    nb = len(ds.bands)
    if sky is not None:
        sigma = np.sqrt(np.asarray(sky))[None, :].repeat(pick.size, 0)
    elif "noisy" in imgs:
        x = imgs["noisy"]
        med = np.median(x, axis=(2, 3), keepdims=True)
        sigma = 1.4826 * np.median(np.abs(x - med), axis=(2, 3))
    else:
        sigma = np.maximum(np.percentile(imgs["noiseless"], 99, axis=(2, 3)) / 20, 1e-12)
    sigma = np.maximum(sigma, 1e-12)
    ref = imgs.get("noiseless", imgs.get("noisy"))
    fig, axes = plt.subplots(
        pick.size,
        nb * len(kinds),
        figsize=(1.3 * nb * len(kinds), 1.35 * pick.size + 0.6),
        squeeze=False,
    )
    for r, gi in enumerate(pick):
        for kk, kind in enumerate(kinds):
            for b in range(nb):
                ax = axes[r, kk * nb + b]
                s = sigma[r, b]
                top = max(np.arcsinh(ref[r, b].max() / s), 1.0)
                ax.imshow(
                    np.arcsinh(imgs[kind][r, b] / s), cmap="gray", vmin=-2, vmax=top, origin="lower"
                )
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"{ds.bands[b]} {kind}", fontsize=8)
            if kk == 0:
                axes[r, 0].set_ylabel(f"#{gi}", fontsize=8)
    fig.suptitle(f"{Path(ds.path).name}: {ds.kind}, arcsinh(x/σ_band)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
