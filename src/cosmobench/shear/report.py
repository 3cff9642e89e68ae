"""``shear.json``, ``shear.md`` and ``shear.png``: the shear biases, for people and scripts.

The figure draws m (both components together) in SNR bins for each estimator, raw and
metacalibrated, with the LSST DESC Science Requirements band on |m| (2–3 × 10⁻³ for the
10-year analysis; The LSST DESC SRD, Mandelbaum et al. 2018, arXiv:1809.01669).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["write_shear_report", "shear_markdown", "plot_shear", "REQUIREMENT"]

#: |m| requirement band of LSST DESC's Science Requirements Document (Y1..Y10).
REQUIREMENT = (2e-3, 3e-3)


def _clean(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, str):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _fmt(v: Any, err: Any, scale: float = 1e3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    e = "" if err is None or not math.isfinite(err) else f" ± {err * scale:.2f}"
    return f"{v * scale:+.2f}{e}"


def _rows(name: str, d: dict[str, Any]) -> list[str]:
    cells = [_fmt(d.get(k), d.get(f"{k}_err")) for k in ("m1", "m2", "m", "c1", "c2")]
    fail = d.get("failure_fraction")
    fail_s = "—" if fail is None else f"{100 * fail:.1f} %"
    resp = ""
    if "R1" in d:
        resp = f"{d['R1']:.3f}, {d['R2']:.3f}"
    return [f"| {name} | {' | '.join(cells)} | {d['n_used']:,} | {fail_s} | {resp} |"]


def shear_markdown(
    result: dict[str, Any], command: str | None = None, notes: list[str] | None = None
) -> str:
    """The Markdown report of a :func:`cosmobench.shear.measure_shear` result."""
    lines = [
        "# Shear bias",
        "",
        f"Store `{result['store']}`: {result['n_galaxies']:,} galaxies × 4 images, "
        f"shear ±{result['g']} (Pujol et al. 2019 paired design). "
        "Biases ×10⁻³, errors from a "
        f"{result['config']['errors']} over galaxies; m is relative to the true response "
        "of the same galaxies (see `cosmobench.shear.bias`).",
    ]
    if command:
        lines += ["", f"Command: `{command}`"]
    lines += [
        "",
        "| estimator | m1 | m2 | m | c1 | c2 | galaxies used | failed | ⟨R11⟩, ⟨R22⟩ |",
        "|---|---|---|---|---|---|---:|---:|---|",
    ]
    for name, d in result["estimators"].items():
        lines += _rows(name, d)
        if d.get("metacal"):
            lines += _rows(f"{name} + metacal", d["metacal"])
    for var, label in (("snr_bins", "r-band SNR"), ("size_bins", "half-light radius (″)")):
        lines += ["", f"## m by {label} bin (×10⁻³)", ""]
        first = next(iter(result["estimators"].values()))
        bins = first[var]["bins"]
        head = [f"{b['min']:.3g}–{b['max']:.3g}" for b in bins]
        lines += [f"| estimator | {' | '.join(head)} |", "|---|" + "---|" * len(head)]
        for name, d in result["estimators"].items():
            for label2, dd in ((name, d), (f"{name} + metacal", d.get("metacal"))):
                if dd:
                    cells = [_fmt(b["m"], b["m_err"]) for b in dd[var]["bins"]]
                    lines.append(f"| {label2} | {' | '.join(cells)} |")
    lines += [
        "",
        f"Requirement (LSST DESC SRD): |m| < {REQUIREMENT[0]:g}–{REQUIREMENT[1]:g}.",
        "",
        *(notes or []),
        "",
    ]
    return "\n".join(lines)


def plot_shear(result: dict[str, Any], path: Path) -> Path:
    """m by SNR bin per estimator, raw (left) and with metacalibration (right, when any
    estimator was metacalibrated), the requirement shaded. Each panel's m range is set by the
    points measured to better than ±0.25, so that one estimator's enormous error bar (KSB on
    faint galaxies) does not flatten the others; longer error bars run off the panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if any(d.get("metacal") for d in result["estimators"].values()) else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.6), sharex=True, squeeze=False)
    axes = axes[0]
    lo, hi = REQUIREMENT
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ranges: list[list[float]] = [[], []]
    for i, (name, d) in enumerate(result["estimators"].items()):
        for j, dd in enumerate((d, d.get("metacal"))):
            if not dd:
                continue
            bins = dd["snr_bins"]["bins"]
            x = [math.sqrt(max(b["min"], 1e-3) * b["max"]) * (1 + 0.02 * i) for b in bins]
            y = [math.nan if b["m"] is None else b["m"] for b in bins]
            e = [math.nan if b["m_err"] is None else b["m_err"] for b in bins]
            axes[j].errorbar(x, y, yerr=e, marker="o", ms=3, capsize=2, label=name,
                             color=colours[i % len(colours)])  # fmt: skip
            ranges[j] += [v for m, er in zip(y, e, strict=True) if er < 0.25
                          for v in (m - er, m + er)]  # fmt: skip
    n_mc = result.get("metacal_galaxies") or result["n_galaxies"]
    titles = (f"raw: {result['n_galaxies']:,} galaxies", f"metacalibrated: {n_mc:,} galaxies")
    for ax, r, title in zip(axes, ranges[:panels], titles[:panels], strict=True):
        ax.axhspan(-hi, hi, color="0.9", label=f"|m| < {hi:g}")
        ax.axhspan(-lo, lo, color="0.8", label=f"|m| < {lo:g}")
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("r-band SNR (bin centre)")
        ax.set_ylabel("multiplicative shear bias m")
        ax.set_title(f"{title}, g = ±{result['g']}")
        if r:
            a, b = min(min(r), -0.01), max(max(r), 0.01)
            ax.set_ylim(a - 0.08 * (b - a), b + 0.08 * (b - a))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_shear_report(
    result: dict[str, Any],
    out: str | Path,
    *,
    command: str | None = None,
    stem: str = "shear",
    notes: list[str] | None = None,
) -> list[Path]:
    """Write ``OUT/{stem}.png``, ``{stem}.md`` and (last, atomically) ``{stem}.json``."""
    from cosmobench.files import atomic_write, write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = _clean(result)
    if command:
        result["command"] = command
    paths = [plot_shear(result, out / f"{stem}.png")]
    md = out / f"{stem}.md"
    text = shear_markdown(result, command, notes).encode()
    paths.append(atomic_write(md, lambda f: f.write(text)))
    paths.append(write_json(out / f"{stem}.json", result))
    return paths
