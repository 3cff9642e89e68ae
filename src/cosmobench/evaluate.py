r"""Shape science checks: how accurate and how calibrated the shape posteriors are.

The checks are described in ``docs/models.md`` (science checks).

On a test set never seen in training, for the predictive normal
:math:`\mathcal N(\mu, \Sigma)` of a shape network (for the BNN a mixture over S weight
samples, moment-matched: :meth:`cosmobench.models.ShapeNet.predict`):

* **accuracy**: RMSE and mean residual of each target;
* **ellipticity regression**: slope and offset of the least-squares line
  :math:`e_\mathrm{pred} = \mathrm{slope}\, e_\mathrm{true} + \mathrm{offset}` per
  ellipticity component, with their standard errors. This is *not* the weak-lensing shear
  bias m, c: a posterior mean pulls noisy galaxies toward the prior, so the slope is below
  1 even for an ideal estimator. The shear bias is :mod:`cosmobench.shear`'s;
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
    coverage_interval,
    estimator_stats,
    fit_regression,
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
    "coverage_interval",
    "fit_regression",
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


def _load_truth(ds: Any, targets: tuple[str, ...]) -> np.ndarray:
    """The true targets ``(N, T)`` of ``ds``; one-line errors for a store that lacks them."""
    from cosmobench.store import require

    columns = [TARGET_COLUMNS[t] for t in targets]
    require(ds, columns={c: f"target {t}" for t, c in zip(targets, columns, strict=True)},
            images=("noisy",), hint="evaluate a shape network on a simulated store")
    return np.stack([np.asarray(ds.column(c), dtype=np.float64) for c in columns], axis=1)


def predict_shapes(
    model: nn.Module, ds: Any, samples: int, batch_size: int, seed: int, progress: bool
) -> dict[str, np.ndarray]:
    """Predictions for every galaxy: ``mean`` (N, T), ``cov``, ``alea``, ``epi`` (N, T, T)
    and ``finite`` (N,) (all pixels finite), with the BNN's weight noise seeded by ``seed``
    (the global RNG state is restored afterwards)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rng_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices), torch.no_grad():
            torch.manual_seed(seed)
            mean, cov, alea, epi, finite = _predict_all(
                model, ds, samples, batch_size, device, progress
            )
    finally:
        model.train(was_training)
    return {"mean": mean, "cov": cov, "alea": alea, "epi": epi, "finite": finite}


def _r_band_snr(ds: Any) -> np.ndarray | None:
    if "snr" not in ds.columns:
        return None
    snr = np.asarray(ds.column("snr"), dtype=np.float64)
    if snr.ndim == 2:
        bands = tuple(getattr(ds, "bands", ()))
        snr = snr[:, bands.index("r") if "r" in bands else 0]
    return snr


def select_galaxies(
    truth: np.ndarray, pred: dict[str, np.ndarray], snr: np.ndarray | None
) -> np.ndarray:
    """The galaxies evaluated ``(N,)``: finite pixels, labels, predictions and SNR."""
    keep = pred["finite"] & np.isfinite(truth).all(axis=1) & np.isfinite(pred["mean"]).all(axis=1)
    if snr is not None:
        keep &= np.isfinite(snr)
    return keep


def _stats(sel: dict[str, np.ndarray], targets: tuple[str, ...], bayesian: bool) -> dict:
    extra = {"aleatoric": sel["alea"], "epistemic": sel["epi"]} if bayesian else {}
    return shape_stats(sel["truth"], sel["mean"], sel["cov"], targets, **extra)


def baseline_estimates(ds: Any, keep: np.ndarray) -> tuple[np.ndarray | None, dict]:
    """The true (e1, e2) ``(n, 2)`` of the kept galaxies and each stored classical
    estimator's ``(n, 2)`` values (:data:`BASELINES`)."""
    if not all(c in ds.columns for c in ("e1", "e2")):
        return None, {}
    truth_e = np.stack([np.asarray(ds.column(c), np.float64) for c in ("e1", "e2")], 1)[keep]
    values = {}
    for name, (c1, c2) in BASELINES.items():
        if c1 in ds.columns and c2 in ds.columns:
            est = np.stack([np.asarray(ds.column(c), np.float64) for c in (c1, c2)], 1)
            values[name] = est[keep]
    return truth_e, values


def snr_binned(
    sel: dict[str, np.ndarray],
    snr: np.ndarray,
    bins: int,
    targets: tuple[str, ...],
    bayesian: bool,
    truth_e: np.ndarray | None,
    baseline_values: dict[str, np.ndarray],
) -> tuple[dict[str, Any], dict[str, list]]:
    """:func:`shape_stats` in quantile bins of the r-band SNR, and the baselines' stats in
    the same bins."""
    k = max(1, min(int(bins), len(snr)))
    edges, idx = _snr_bins(snr, k)
    by_snr: dict[str, Any] = {"column": "snr (r band)", "edges": edges.tolist(), "bins": []}
    base: dict[str, list] = {name: [] for name in baseline_values}
    for b in range(k):
        m = idx == b
        stats = _stats({kk: v[m] for kk, v in sel.items()}, targets, bayesian)
        by_snr["bins"].append({"snr_min": float(edges[b]), "snr_max": float(edges[b + 1]), **stats})
        for name, v in baseline_values.items():
            base[name].append(estimator_stats(truth_e[m], v[m]))
    return by_snr, base


def calibration_curves(sel: dict[str, np.ndarray], targets: tuple[str, ...]) -> dict[str, Any]:
    """Empirical coverage at every nominal level, jointly and per target."""
    resid = sel["mean"] - sel["truth"]
    std = np.sqrt(np.diagonal(sel["cov"], axis1=-2, axis2=-1))
    return {
        "levels": list(CURVE_LEVELS),
        "joint": calibration_curve(mahalanobis2(resid, sel["cov"]), len(targets)),
        **{t: calibration_curve((resid[:, i] / std[:, i]) ** 2, 1) for i, t in enumerate(targets)},
    }


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

    predict (:func:`predict_shapes`) → select (:func:`select_galaxies`) → statistics
    (:func:`shape_stats`, :func:`baseline_estimates`) → SNR bins (:func:`snr_binned`) →
    calibration curves (:func:`calibration_curves`).

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
    from cosmobench.store import open_dataset

    if isinstance(dataset, str | Path):
        dataset = open_dataset(dataset)
    ds = dataset
    targets = tuple(model.config.targets)
    bayesian = bool(getattr(model.config, "bayesian", False))
    s = (DEFAULT_BNN_SAMPLES if samples is None else int(samples)) if bayesian else 1
    check_positive("samples", s)
    truth = _load_truth(ds, targets)
    pred = predict_shapes(model, ds, s, batch_size, seed, progress)
    snr = _r_band_snr(ds)
    keep = select_galaxies(truth, pred, snr)
    n_bad = int((~keep).sum())
    if n_bad and not exclude_nonfinite:
        raise CosmobenchError(
            f"{n_bad} of {ds.n} galaxies of {ds.path} have NaN/inf pixels, labels or SNR (or a "
            "non-finite prediction); pass --exclude-nonfinite to evaluate without them (the "
            "count is printed first and stored as n_excluded)"
        )
    if not keep.any():
        raise CosmobenchError(f"data set {ds.path} has no galaxy with finite pixels and labels")
    sel = {"truth": truth[keep], **{k: pred[k][keep] for k in ("mean", "cov", "alea", "epi")}}
    truth_e, baseline_values = baseline_estimates(ds, keep)
    baselines = {
        name: {"overall": estimator_stats(truth_e, v)} for name, v in baseline_values.items()
    }
    by_snr: dict[str, Any] = {"column": None, "edges": [], "bins": []}
    if snr is not None:
        snr = snr[keep]
        by_snr, base_bins = snr_binned(
            sel, snr, snr_bins, targets, bayesian, truth_e, baseline_values
        )
        for name, b in base_bins.items():
            baselines[name]["by_snr"] = b
    return ShapeMetrics(
        kind=SHAPE_KINDS[bayesian],
        targets=targets,
        samples=s,
        overall=_stats(sel, targets, bayesian),
        by_snr=by_snr,
        baselines=baselines,
        calibration=calibration_curves(sel, targets),
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
