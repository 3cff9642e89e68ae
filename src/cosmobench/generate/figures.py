"""Figures of galaxy images: colour grids of generated (and simulated) galaxies.

Each stamp is a colour composite of the i, r and g bands (red, green, blue) with the
arcsinh stretch of Lupton et al. (2004, PASP 116, 133), which keeps the colours of bright
cores and shows faint outskirts: every channel is multiplied by ``asinh(Q I / m) / (Q I / m)``
with ``I`` the mean of the three bands and ``m`` a high percentile of ``I`` over the panel,
so all stamps of a panel share one stretch and their brightness can be compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["colour_stamps", "save_grid"]

# Band indices of the composite (u g r i z y): red = i, green = r, blue = g.
RGB_BANDS = (3, 2, 1)
_Q = 8.0  # softening of the arcsinh stretch (Lupton et al. 2004)


def colour_stamps(images: np.ndarray, *, percentile: float = 99.5) -> np.ndarray:
    """(n, 6, H, W) electrons -> (n, H, W, 3) RGB in [0, 1] with one shared stretch."""
    rgb = np.clip(np.asarray(images, dtype=np.float64)[:, list(RGB_BANDS)], 0.0, None)
    rgb = np.moveaxis(rgb, 1, -1)  # (n, H, W, 3)
    intensity = rgb.mean(-1, keepdims=True)
    m = np.percentile(intensity, percentile)
    m = m if m > 0 else 1.0
    x = _Q * intensity / m
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(x > 0, np.arcsinh(x) / np.where(x > 0, x, 1.0), 1.0)
    out = rgb * factor * (_Q / m) / np.arcsinh(_Q)
    return np.clip(out, 0.0, 1.0)


def save_grid(
    panels: Mapping[str, np.ndarray], path: str | Path, *, title: str = "", columns: int = 6
) -> Path:
    """Write a PNG with one grid of colour stamps per panel (e.g. generated, simulated).

    Arguments:
        panels: name -> (n, 6, H, W) images in electrons.
        path: the PNG to write (atomically).
        title: figure title.
        columns: stamps per row of each panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cosmobench.files import atomic_write

    names = list(panels)
    n = max(len(v) for v in panels.values())
    rows = -(-n // columns)
    fig, axes = plt.subplots(
        rows, columns * len(names), figsize=(1.3 * columns * len(names), 1.3 * rows + 0.6),
        squeeze=False,
    )
    for p, name in enumerate(names):
        stamps = colour_stamps(panels[name])
        for i in range(rows * columns):
            ax = axes[i // columns, p * columns + i % columns]
            ax.set_axis_off()
            if i < len(stamps):
                ax.imshow(stamps[i], origin="lower", interpolation="nearest")
        axes[0, p * columns].set_title(f"{name} (gri)", loc="left", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=80))
    plt.close(fig)
    return path
