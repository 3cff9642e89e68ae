r"""Shape science checks: how accurate and how calibrated the shape posteriors are.

The checks are described in ``docs/models.md`` (science checks).

On a test set never seen in training, for the predictive normal
:math:`\mathcal N(\mu, \Sigma)` of a shape network (for the BNN a mixture over S weight
samples, moment-matched: :meth:`cosmobench.models.ShapeNet.predict`):

* **accuracy**: RMSE and mean residual of each target;
* **shear-style bias**: :math:`m, c` from the least-squares line
  :math:`e_\mathrm{pred} = (1 + m)\, e_\mathrm{true} + c` per ellipticity component, with
  their standard errors (the multiplicative/additive bias of weak-lensing calibration,
  Heymans et al. 2006, MNRAS 368, 1323);
* **pulls** :math:`(\mu - y)/\sigma`: mean 0 and spread 1 when calibrated;
* **coverage** of the 68.27 % and 95.45 % credible regions: the fraction of galaxies whose
  Mahalanobis distance :math:`d^2 = (y-\mu)^\top\Sigma^{-1}(y-\mu)` lies below the
  :math:`\chi^2_T` quantile (jointly over the T targets, over (e1, e2), and per component);
  the calibration curve is the same at every nominal level;
* all of it overall and in quantile bins of the r-band SNR, next to the same accuracy and
  bias figures for the classical KSB and REGAUSS measurements of the same galaxies (their
  failures, NaN in the store, are counted and left out);
* for the BNN, the mean epistemic and aleatoric spreads.

:func:`evaluate_shape` computes a :class:`ShapeMetrics`; :func:`write_shape_report` writes
``metrics.json`` and the PNG figures (:mod:`cosmobench.evaluate_figures`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cosmobench.errors import CosmobenchError, check_positive
from cosmobench.models.registry import SHAPE_KINDS
from cosmobench.models.shape import TARGET_COLUMNS
from cosmobench.shape_stats import (
    CURVE_LEVELS,
    LEVELS,
    calibration_curve,
    chi2_cdf,
    chi2_quantile,
    estimator_stats,
    fit_bias,
    mahalanobis2,
    shape_stats,
)

__all__ = [
    "BASELINES",
    "LEVELS",
    "ShapeMetrics",
    "chi2_cdf",
    "chi2_quantile",
    "estimator_stats",
    "evaluate_shape",
    "fit_bias",
    "shape_stats",
    "write_shape_report",
]

#: Classical estimators stored by the simulator, as (e1 column, e2 column).
BASELINES = {"ksb": ("ksb_e1", "ksb_e2"), "regauss": ("regauss_e1", "regauss_e2")}
#: Weight samples of a BNN prediction unless told otherwise.
DEFAULT_BNN_SAMPLES = 30


@dataclass
class ShapeMetrics:
    """Shape metrics of one network on one test set (:func:`evaluate_shape`).

    Attributes:
        kind: ``cnn`` or ``bnn``.
        targets: the predicted quantities, in order.
        samples: weight samples per prediction (1 for the CNN).
        overall: :func:`shape_stats` over all evaluated galaxies.
        by_snr: ``{"column", "edges", "bins": [{"snr_min", "snr_max", **shape_stats}]}``.
        baselines: per classical estimator, ``{"overall": ..., "by_snr": [...]}``.
        calibration: ``{"levels": [...], "joint": [...], "<target>": [...]}``.
        n_excluded: galaxies left out for non-finite pixels or labels.
        meta: where the model and data came from (free-form, JSON-friendly).
        truth, mean, cov, aleatoric, epistemic, snr: per-galaxy arrays (for figures; not
            written to JSON).
    """

    kind: str
    targets: tuple[str, ...]
    samples: int
    overall: dict[str, Any]
    by_snr: dict[str, Any]
    baselines: dict[str, Any]
    calibration: dict[str, Any]
    n_excluded: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    truth: np.ndarray = field(default=None, repr=False)
    mean: np.ndarray = field(default=None, repr=False)
    cov: np.ndarray = field(default=None, repr=False)
    aleatoric: np.ndarray = field(default=None, repr=False)
    epistemic: np.ndarray = field(default=None, repr=False)
    snr: np.ndarray | None = field(default=None, repr=False)
    baseline_values: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n, t = len(self.truth), len(self.targets)
        if self.mean.shape != (n, t) or self.truth.shape != (n, t):
            raise ValueError(f"truth and mean must be ({n}, {t})")
        for name in ("cov", "aleatoric", "epistemic"):
            if getattr(self, name).shape != (n, t, t):
                raise ValueError(f"{name} must be ({n}, {t}, {t})")

    @property
    def n(self) -> int:
        """Number of galaxies evaluated."""
        return len(self.truth)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (NaN → ``None``), the content of ``metrics.json``."""
        out = {
            "schema": "cosmobench.shape_metrics",
            "schema_version": 1,
            "kind": self.kind,
            "targets": list(self.targets),
            "n": self.n,
            "n_excluded": self.n_excluded,
            "samples": self.samples,
            "levels": LEVELS,
            "overall": self.overall,
            "by_snr": self.by_snr,
            "baselines": self.baselines,
            "calibration": self.calibration,
            "meta": self.meta,
        }
        return _clean(out)


def _clean(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# ------------------------------------------------------------------------------ evaluation


def _predict_all(
    model: nn.Module, ds: Any, samples: int, batch_size: int, device: torch.device, progress: bool
) -> tuple[np.ndarray, ...]:
    """Predictions for every galaxy of ``ds`` (chunk by chunk), and a finite-pixel mask."""
    from rich.progress import Progress

    outs: dict[str, list[np.ndarray]] = {k: [] for k in ("mean", "cov", "aleatoric", "epistemic")}
    finite: list[np.ndarray] = []
    n_batches = sum(
        -(-min(ds.chunk_size, ds.n - s) // batch_size) for s in range(0, ds.n, ds.chunk_size)
    )
    ctx = Progress(transient=True) if progress else contextlib.nullcontext()
    with ctx as bar:
        task = (
            bar.add_task(f"predicting ({samples} sample(s))", total=n_batches) if progress else None
        )
        from cosmobench.train.stream import read_chunks  # the next chunk decodes meanwhile

        for _, chunk in read_chunks(ds, "noisy"):
            chunk = np.asarray(chunk, dtype=np.float32)
            ok = np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)
            finite.append(ok)
            chunk = np.where(np.isfinite(chunk), chunk, 0.0).astype(np.float32)
            for s in range(0, len(chunk), batch_size):
                x = torch.from_numpy(chunk[s : s + batch_size]).to(device)
                pred = model.predict(x, samples=samples)
                for k in outs:
                    outs[k].append(getattr(pred, k).detach().to("cpu", torch.float64).numpy())
                if progress:
                    bar.advance(task)
    return (*(np.concatenate(outs[k]) for k in outs), np.concatenate(finite))


def _snr_bins(snr: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantile edges ``(k+1,)`` and the bin of each galaxy ``(N,)``."""
    edges = np.quantile(snr, np.linspace(0.0, 1.0, k + 1))
    return edges, np.clip(np.searchsorted(edges[1:-1], snr, side="right"), 0, k - 1)


def evaluate_shape(
    model: nn.Module,
    dataset: Any,
    *,
    samples: int | None = None,
    batch_size: int = 256,
    snr_bins: int = 4,
    seed: int = 0,
    progress: bool = False,
    exclude_nonfinite: bool = False,
) -> ShapeMetrics:
    """Evaluate a trained shape network on a simulated test set.

    Arguments:
        model: a shape network whose ``predict(x, samples)`` takes images as stored (counts):
            the model :func:`cosmobench.train.load_run` returns, or a bare ``ShapeNet``.
        dataset: an opened store (``cosmobench.store.open_dataset``) or its path; it needs
            ``noisy`` images and the target columns (``e1``, ``e2``, ``redshift`` for z).
        samples: weight samples per BNN prediction (default 30; always 1 for the CNN).
        batch_size: images per forward pass.
        snr_bins: number of quantile bins of the r-band ``snr`` column.
        seed: seeds the BNN weight noise (the global RNG state is restored afterwards).
        progress: show a progress bar.
        exclude_nonfinite: leave out (and count in ``n_excluded``) the galaxies with a
            NaN/inf pixel, label or SNR, or a non-finite prediction; by default they are an
            error, so that no metric silently covers fewer galaxies than the data set has.

    Returns:
        The :class:`ShapeMetrics`.

    Raises:
        CosmobenchError: non-finite galaxies without ``exclude_nonfinite``.
    """
    check_positive("batch_size", batch_size)
    check_positive("snr_bins", snr_bins)
    from cosmobench.store import open_dataset, require

    if isinstance(dataset, str | Path):
        dataset = open_dataset(dataset)
    ds = dataset
    cfg = model.config
    targets = tuple(cfg.targets)
    bayesian = bool(getattr(cfg, "bayesian", False))
    s = (DEFAULT_BNN_SAMPLES if samples is None else int(samples)) if bayesian else 1
    check_positive("samples", s)
    columns = [TARGET_COLUMNS[t] for t in targets]
    require(ds, columns={c: f"target {t}" for t, c in zip(targets, columns, strict=True)},
            images=("noisy",), hint="evaluate a shape network on a simulated store")
    truth = np.stack([np.asarray(ds.column(c), dtype=np.float64) for c in columns], axis=1)

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rng_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices), torch.no_grad():
            torch.manual_seed(seed)
            mean, cov, alea, epi, finite_px = _predict_all(
                model, ds, s, batch_size, device, progress
            )
    finally:
        model.train(was_training)

    keep = finite_px & np.isfinite(truth).all(axis=1) & np.isfinite(mean).all(axis=1)
    snr = None
    if "snr" in ds.columns:
        snr = np.asarray(ds.column("snr"), dtype=np.float64)
        if snr.ndim == 2:
            bands = tuple(getattr(ds, "bands", ()))
            snr = snr[:, bands.index("r") if "r" in bands else 0]
        keep &= np.isfinite(snr)
    n_bad = int((~keep).sum())
    if n_bad and not exclude_nonfinite:
        raise CosmobenchError(
            f"{n_bad} of {ds.n} galaxies of {ds.path} have NaN/inf pixels, labels or SNR (or a "
            "non-finite prediction); pass --exclude-nonfinite to evaluate without them (the "
            "count is printed first and stored as n_excluded)"
        )
    if not keep.any():
        raise CosmobenchError(f"data set {ds.path} has no galaxy with finite pixels and labels")
    sel = {k: v[keep] for k, v in dict(truth=truth, mean=mean, cov=cov, alea=alea, epi=epi).items()}
    extra = {"aleatoric": sel["alea"], "epistemic": sel["epi"]} if bayesian else {}
    overall = shape_stats(sel["truth"], sel["mean"], sel["cov"], targets, **extra)

    baseline_values: dict[str, np.ndarray] = {}
    truth_e = None
    if all(c in ds.columns for c in ("e1", "e2")):
        truth_e = np.stack([np.asarray(ds.column(c), np.float64) for c in ("e1", "e2")], 1)[keep]
        for name, (c1, c2) in BASELINES.items():
            if c1 in ds.columns and c2 in ds.columns:
                est = np.stack([np.asarray(ds.column(c), np.float64) for c in (c1, c2)], 1)
                baseline_values[name] = est[keep]
    baselines = {
        name: {"overall": estimator_stats(truth_e, v)} for name, v in baseline_values.items()
    }

    by_snr: dict[str, Any] = {"column": None, "edges": [], "bins": []}
    if snr is not None:
        snr = snr[keep]
        k = max(1, min(int(snr_bins), len(snr)))
        edges, idx = _snr_bins(snr, k)
        by_snr = {"column": "snr (r band)", "edges": edges.tolist(), "bins": []}
        for name in baselines:
            baselines[name]["by_snr"] = []
        for b in range(k):
            m = idx == b
            sub = {kk: v[m] for kk, v in sel.items()}
            ex = {"aleatoric": sub["alea"], "epistemic": sub["epi"]} if bayesian else {}
            stats = shape_stats(sub["truth"], sub["mean"], sub["cov"], targets, **ex)
            by_snr["bins"].append(
                {"snr_min": float(edges[b]), "snr_max": float(edges[b + 1]), **stats}
            )
            for name, v in baseline_values.items():
                baselines[name]["by_snr"].append(estimator_stats(truth_e[m], v[m]))

    resid = sel["mean"] - sel["truth"]
    std = np.sqrt(np.diagonal(sel["cov"], axis1=-2, axis2=-1))
    calibration = {
        "levels": list(CURVE_LEVELS),
        "joint": calibration_curve(mahalanobis2(resid, sel["cov"]), len(targets)),
        **{t: calibration_curve((resid[:, i] / std[:, i]) ** 2, 1) for i, t in enumerate(targets)},
    }
    return ShapeMetrics(
        kind=SHAPE_KINDS[bayesian],
        targets=targets,
        samples=s,
        overall=overall,
        by_snr=by_snr,
        baselines=baselines,
        calibration=calibration,
        n_excluded=int((~keep).sum()),
        meta={"data": str(ds.path)},
        truth=sel["truth"],
        mean=sel["mean"],
        cov=sel["cov"],
        aleatoric=sel["alea"],
        epistemic=sel["epi"],
        snr=snr,
        baseline_values=baseline_values,
    )


def write_shape_report(
    metrics: ShapeMetrics, out: str | Path, *, figures: bool = True
) -> list[Path]:
    """Write the PNG figures, then ``metrics.json`` (last, atomically: its presence means the
    report is complete). Returns the paths written."""
    from cosmobench.files import write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    if figures:
        from cosmobench.evaluate_figures import write_shape_figures

        paths += write_shape_figures(metrics, out)
    paths.append(write_json(out / "metrics.json", metrics.to_dict()))
    return paths
