"""Figures a training run leaves in its folder: the loss curves, and the VAE's
reconstructions (noisy input, noiseless target, reconstruction) of validation galaxies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from cosmobench.files import atomic_write

__all__ = ["loss_curve", "reconstruction_grid"]


def _save(fig: Any, path: Path) -> Path:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buf.getvalue()))


def loss_curve(history: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Training and validation loss against epoch, the best epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6, 4))
    train = [(h["epoch"], h["train_loss"]) for h in history if h.get("train_loss") is not None]
    if train:
        ax.plot(*zip(*train, strict=True), "o-", label="training")
    val = [(h["epoch"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
    if val:
        ax.plot(*zip(*val, strict=True), "s-", label="validation")
        best = min((v for v in val if v[0] > 0), key=lambda v: v[1], default=val[0])
        ax.axvline(best[0], color="grey", ls=":", label=f"best (epoch {best[0]})")
    ax.set_xlabel("epoch (0 = untrained)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


@torch.inference_mode()
def reconstruction_grid(vae: nn.Module, val: Any, path: Path, n: int = 8, band: int = 2
                        ) -> Path:
    """Noisy inputs, noiseless targets and VAE reconstructions (encoder mean decoded) of
    up to ``n`` validation galaxies, in band ``band`` (2 = r), normalised units."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = min(n, len(val))
    idx = torch.arange(k)
    device = next(vae.parameters()).device
    x, y = val.batch(idx, device)
    was_training = vae.training
    vae.eval()
    mu, _ = vae.encode(x)
    rec = vae.decode(mu).float()
    vae.train(was_training)
    rows = [("noisy input", x), ("noiseless target", y), ("reconstruction", rec)]
    fig, axes = plt.subplots(3, max(k, 1), figsize=(1.6 * max(k, 1), 5.2), squeeze=False)
    for r, (name, imgs) in enumerate(rows):
        for c in range(k):
            ax = axes[r][c]
            ax.imshow(imgs[c, band].float().cpu().numpy(), origin="lower", cmap="magma",
                      vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0:
                ax.set_title(f"#{int(val.index[c])}", fontsize=8)
    fig.suptitle("VAE on validation galaxies (r band, normalised)", fontsize=10)
    return _save(fig, path)
