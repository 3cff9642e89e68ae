"""The paper's figures from merged series, with the paper's V100 and IPU overlaid.

Arcelin (2021) Figures 2-3: training time for 100 epochs against batch size (left) and the
speed ratio ``R = t_GPU / t_IPU`` against batch size with the line ``R = 1`` (right); Figure 4:
generation time against n and the same ratio, log axes. We keep the paper's definition of R,
always against the paper's IPU: the paper's V100 curve is reproduced exactly, and a series
below ``R = 1`` is faster than the IPU. Without a reference, R is taken against the first
series.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cosmobench.bench.series import Series

__all__ = ["REFERENCE_SECTIONS", "draw_all", "draw_mfu", "draw_workload"]

#: workload -> (reference section, x key, y summary key, title, x label, y label)
REFERENCE_SECTIONS: dict[str, tuple[str, str, str, str, str, str]] = {
    "train-cnn": ("train_shape_cnn", "batch_size", "s_per_100_epochs",
                  "Shape CNN (1.5M parameters): training", "batch size",
                  "time for 100 epochs of 8,000 images (s)"),
    "train-bnn": ("train_shape_bnn", "batch_size", "s_per_100_epochs",
                  "Shape BNN (2.7M parameters): training", "batch size",
                  "time for 100 epochs of 8,000 images (s)"),
    "generate": ("generate", "n", "median_s", "Galaxy generation (MAF + VAE decoder)",
                 "number of galaxies n", "time to generate n galaxies (s)"),
}
_MARKERS = "os^vD<>ph*"
#: Colours of measured series: not black / blue (the paper's V100 / IPU) nor red (R = 1).
_COLOURS = ("tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
            "tab:cyan", "tab:gray")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _y(series: Series, size: int, key: str) -> float | None:
    if key == "median_s":
        ms = series.value(size, "median_ms")
        return ms / 1e3 if ms is not None else None
    return series.value(size, key)


def draw_workload(workload: str, series: list[Series], reference: dict[str, Any] | None,
                  path: Path) -> Path | None:
    """Time and ratio panels for one workload; ``None`` when nothing to draw."""
    section, xkey, ykey, title, xlabel, ylabel = REFERENCE_SECTIONS[workload]
    mine = [s for s in series if s.workload == workload and s.ok()]
    ref = (reference or {}).get(section)
    if not mine and not ref:
        return None
    plt = _plt()
    fig, (ax_t, ax_r) = plt.subplots(1, 2, figsize=(12, 4.6))
    log_x = workload == "generate"
    baseline: dict[int, float] = {}
    if ref:
        xs = ref[xkey]
        ax_t.plot(xs, ref["gpu_s"], "k--s", label="paper: V100 (TF 2.1)")
        ax_t.plot(xs, ref["ipu_s"], "--o", color="tab:blue", label="paper: IPU GC2")
        baseline = dict(zip(xs, ref["ipu_s"], strict=True))
        ax_r.plot(xs, [g / i for g, i in zip(ref["gpu_s"], ref["ipu_s"], strict=True)],
                  "k--s", label="paper: V100")
    elif mine:
        first = mine[0]
        baseline = {s: _y(first, s, ykey) for s, _ in first.ok() if _y(first, s, ykey)}
    for k, s in enumerate(mine):
        pts = [(size, _y(s, size, ykey)) for size, _ in s.ok()]
        pts = [(x, y) for x, y in pts if y is not None]
        if not pts:
            continue
        derived = ykey == "s_per_100_epochs" and any(
            s.value(x, "s_per_100_epochs_derived") for x, _ in pts
        )
        label = s.label + (" (derived)" if derived else "")
        style = {"marker": _MARKERS[k % len(_MARKERS)], "color": _COLOURS[k % len(_COLOURS)]}
        ax_t.plot([x for x, _ in pts], [y for _, y in pts], "-", label=label, **style)
        ratio = [(x, y / baseline[x]) for x, y in pts if baseline.get(x)]
        if ratio:
            ax_r.plot([x for x, _ in ratio], [r for _, r in ratio], "-", label=s.label, **style)
    ax_r.axhline(1.0, color="red", lw=1.5, label="R = 1" + (" (paper: IPU)" if ref else ""))
    base_name = "the paper's IPU" if ref else f"{mine[0].label}"
    for ax in (ax_t, ax_r):
        ax.set_xlabel(xlabel)
        ax.set_yscale("log")
        if log_x:
            ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
    ax_t.set_ylabel(ylabel)
    ax_t.set_title(title)
    ax_r.set_ylabel(f"R = t / t({base_name})")
    ax_r.set_title("speed ratio (R > 1: slower than " + base_name + ")")
    ax_t.legend(fontsize=7)
    ax_r.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_mfu(series: list[Series], path: Path) -> Path | None:
    """Model FLOPs utilisation against batch size for the training and inference series."""
    mine = [s for s in series if s.workload in ("train-cnn", "train-bnn", "infer-cnn")]
    mine = [s for s in mine if any(s.value(x, "mfu") for x, _ in s.ok())]
    if not mine:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.4))
    for k, s in enumerate(mine):
        pts = [(x, s.value(x, "mfu")) for x, _ in s.ok()]
        pts = [(x, 100 * y) for x, y in pts if y]
        ax.plot([x for x, _ in pts], [y for _, y in pts], "-", marker=_MARKERS[k % len(_MARKERS)],
                color=_COLOURS[k % len(_COLOURS)], label=f"{s.workload}: {s.label}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("MFU (% of the peak measured in the same run)")
    ax.set_title("Model FLOPs utilisation")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_all(series: list[Series], reference: dict[str, Any] | None, out: Path) -> list[Path]:
    """Every figure that has data: ``train_cnn.png``, ``train_bnn.png``, ``generate.png``,
    ``mfu.png``."""
    paths = []
    for workload in REFERENCE_SECTIONS:
        p = draw_workload(workload, series, reference, out / f"{workload.replace('-', '_')}.png")
        if p is not None:
            paths.append(p)
    p = draw_mfu(series, out / "mfu.png")
    if p is not None:
        paths.append(p)
    return paths
