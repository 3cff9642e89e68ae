"""PNG figures of the shape evaluation (:mod:`cosmobench.evaluate`).

- ``pred_vs_true.png``: predicted mean against truth per target, with the KSB and REGAUSS
  measurements of the same galaxies for e1 and e2;
- ``pulls.png``: histograms of (μ − y)/σ per target against the unit normal;
- ``calibration.png``: empirical coverage against nominal level (joint and per target);
  a calibrated network lies on the diagonal;
- ``snr_bins.png``: RMSE of e1, e2 and 68/95 % coverage per r-band SNR bin, with the
  classical estimators.

Each figure is rendered to memory and written atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from cosmobench.files import atomic_write

__all__ = ["write_shape_figures"]

_LABELS = {"e1": "$e_1$", "e2": "$e_2$", "z": "$z$"}
_COLORS = {"net": "C0", "ksb": "C1", "regauss": "C2"}


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buf.getvalue()))


def _pred_vs_true(m: Any, out: Path) -> Path:
    import matplotlib.pyplot as plt

    rows = [("net", f"{m.kind.upper()} (mean)", m.mean)]
    rows += [(k, k.upper(), v) for k, v in m.baseline_values.items()]
    t = len(m.targets)
    fig, axes = plt.subplots(
        len(rows), t, figsize=(3.3 * t, 3.1 * len(rows)), squeeze=False, layout="constrained"
    )
    for r, (key, label, values) in enumerate(rows):
        for i, target in enumerate(m.targets):
            ax = axes[r, i]
            if key != "net" and target not in ("e1", "e2"):
                ax.axis("off")
                continue
            j = i if key == "net" else ("e1", "e2").index(target)
            x, y = m.truth[:, i], values[:, j]
            ok = np.isfinite(y)
            ax.scatter(x[ok], y[ok], s=3, alpha=0.4, color=_COLORS.get(key, "C3"), rasterized=True)
            lo, hi = np.nanpercentile(np.r_[x, y[ok]], [0.5, 99.5]) if ok.any() else (-1, 1)
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            rmse = math.sqrt(np.mean((y[ok] - x[ok]) ** 2)) if ok.any() else math.nan
            ax.set_title(f"{label}: {_LABELS.get(target, target)}  RMSE {rmse:.3f}", fontsize=9)
            ax.set_xlabel("true")
            ax.set_ylabel("estimated")
    return _save(fig, out / "pred_vs_true.png")


def _pulls(m: Any, out: Path) -> Path:
    import matplotlib.pyplot as plt

    t = len(m.targets)
    fig, axes = plt.subplots(1, t, figsize=(3.3 * t, 3.0), squeeze=False)
    std = np.sqrt(np.diagonal(m.cov, axis1=-2, axis2=-1))
    grid = np.linspace(-5, 5, 201)
    for i, target in enumerate(m.targets):
        ax = axes[0, i]
        pull = (m.mean[:, i] - m.truth[:, i]) / std[:, i]
        ax.hist(np.clip(pull, -5, 5), bins=50, range=(-5, 5), density=True, color="C0", alpha=0.7)
        ax.plot(grid, np.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi), "k-", lw=1, label="N(0, 1)")
        s = m.overall[target]
        ax.set_title(
            f"{_LABELS.get(target, target)}: mean {s['pull_mean']:.2f}, sd {s['pull_std']:.2f}",
            fontsize=9,
        )
        ax.set_xlabel("pull (μ − y) / σ")
        ax.legend(fontsize=7)
    return _save(fig, out / "pulls.png")


def _calibration(m: Any, out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    levels = np.asarray(m.calibration["levels"])
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="calibrated")
    ax.plot(levels, m.calibration["joint"], "k-", lw=1.8, label=f"joint ({len(m.targets)}-d)")
    for i, target in enumerate(m.targets):
        ax.plot(
            levels, m.calibration[target], color=f"C{i}", lw=1, label=_LABELS.get(target, target)
        )
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage")
    ax.set_title(f"{m.kind.upper()} calibration, n = {m.n}", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out / "calibration.png")


def _snr_bins(m: Any, out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    bins = m.by_snr.get("bins") or []
    e_targets = [t for t in ("e1", "e2") if t in m.targets]
    if not bins or not e_targets:
        return None
    mid = np.array([math.sqrt(max(b["snr_min"], 1e-3) * max(b["snr_max"], 1e-3)) for b in bins])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.4, 3.3))
    for t, ls in zip(e_targets, ("-", "--"), strict=False):
        ax1.plot(
            mid,
            [b[t]["rmse"] for b in bins],
            ls,
            marker="o",
            color=_COLORS["net"],
            label=f"{m.kind.upper()} {t}",
        )
        for name, base in m.baselines.items():
            vals = [b[t]["rmse"] for b in base.get("by_snr", [])]
            if vals:
                ax1.plot(
                    mid,
                    vals,
                    ls,
                    marker="s",
                    color=_COLORS.get(name, "C3"),
                    label=f"{name.upper()} {t}",
                )
    ax1.set_xscale("log")
    ax1.set_xlabel("r-band SNR (bin centre)")
    ax1.set_ylabel("RMSE")
    ax1.legend(fontsize=6)
    for key, p, c in (("68", 0.6827, "C0"), ("95", 0.9545, "C3")):
        ax2.plot(
            mid,
            [b["joint"][f"coverage_{key}"] for b in bins],
            marker="o",
            color=c,
            label=f"{key} % region",
        )
        ax2.axhline(p, color=c, ls=":", lw=0.8)
    ax2.set_xscale("log")
    ax2.set_ylim(0, 1.02)
    ax2.set_xlabel("r-band SNR (bin centre)")
    ax2.set_ylabel("empirical coverage (joint)")
    ax2.legend(fontsize=7)
    return _save(fig, out / "snr_bins.png")


def write_shape_figures(metrics: Any, out: str | Path) -> list[Path]:
    """Write the shape-evaluation PNGs of a ``ShapeMetrics`` (cosmobench.evaluate) to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    paths = [_pred_vs_true(metrics, out), _pulls(metrics, out), _calibration(metrics, out)]
    snr = _snr_bins(metrics, out)
    return paths + ([snr] if snr is not None else [])
