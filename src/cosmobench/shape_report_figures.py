"""Figures of the shape-science report (:mod:`cosmobench.shape_report`).

* :func:`calibration_figure` -- empirical coverage against nominal credible level, side by
  side for several networks, over the binomial band a calibrated posterior stays in for the
  test-set size (:func:`cosmobench.shape_stats.coverage_interval`);
* :func:`loss_figure` -- the validation (and training) loss per epoch of several training
  runs, the kept (best-validation) epoch marked; for the BNN the NLL part of the ELBO, since
  its KL term (Blundell et al. 2015, arXiv:1505.05424) dominates the loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cosmobench.shape_report import CONFIDENCE, run_history
from cosmobench.shape_stats import LEVELS, coverage_interval

__all__ = ["calibration_figure", "loss_figure"]


def calibration_figure(results: dict[str, Any], path: Path) -> None:
    """Calibration curves (joint and per target) of up to two ``{label: ShapeMetrics}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, (label, m) in zip(axes, results.items(), strict=False):
        levels = np.asarray(m.calibration["levels"])
        ax.plot([0, 1], [0, 1], "k:", lw=1, label="ideal")
        grid = np.linspace(0.01, 0.99, 99)
        band = np.array([coverage_interval(p, m.n, CONFIDENCE) for p in grid])
        ax.fill_between(
            grid,
            band[:, 0],
            band[:, 1],
            color="grey",
            alpha=0.15,
            label=f"binomial {100 * CONFIDENCE:.2f} % for n = {m.n}",
        )
        ax.plot(levels, m.calibration["joint"], lw=2, label=f"joint ({', '.join(m.targets)})")
        for t in m.targets:
            ax.plot(levels, m.calibration[t], lw=1, label=t)
        for p in LEVELS.values():
            ax.axvline(p, color="grey", lw=0.5)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("nominal credible level")
        ax.set_ylabel("empirical coverage")
        ax.set_title(label)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Calibration on {next(iter(results.values())).n:,} unseen galaxies")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def loss_figure(runs: dict[str, Path], path: Path) -> None:
    """Loss per epoch of ``{kind: run folder}`` (``cnn``, ``bnn``), one panel each."""
    import matplotlib

    from cosmobench.train import load_run

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.8))
    for ax, (kind, run) in zip(np.atleast_1d(axes), runs.items(), strict=True):
        rows = run_history(run)
        if kind == "bnn":  # the ELBO is dominated by its KL term: show the NLL part
            va = [(r["epoch"], r["val_nll"]) for r in rows if r.get("val_nll") is not None]
            kl = [r["kl_per_example"] for r in rows if "kl_per_example" in r]
            ax.plot(*zip(*va, strict=True), "s-", label="validation NLL")
            ax.set_title(f"BNN (KL / N_train: {kl[0]:.0f} → {kl[-1]:.0f} per galaxy)")
            ax.set_ylabel("NLL per galaxy")
        else:
            tr = [(r["epoch"], r["train_loss"]) for r in rows if r["train_loss"] is not None]
            va = [(r["epoch"], r["val_loss"]) for r in rows if r["val_loss"] is not None]
            ax.plot(*zip(*tr, strict=True), "o-", label="training")
            ax.plot(*zip(*va, strict=True), "s-", label="validation")
            ax.set_title("CNN")
            ax.set_ylabel("NLL per galaxy")
        kept = load_run(run)[1]["epoch"]
        ax.axvline(kept, color="grey", ls=":", label=f"kept: epoch {kept}")
        vals = [v for _, v in va]
        lo, hi = min(vals), max(vals)
        ax.set_ylim(lo - 0.1 * (hi - lo) - 0.05, hi + 0.1 * (hi - lo) + 0.05)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("epoch (0 = before training)")
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
