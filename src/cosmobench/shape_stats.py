r"""The statistics of the shape science checks (``docs/models.md``, science checks), on arrays.

Pure functions of predictions and truths, shared by :mod:`cosmobench.evaluate` and the
benchmarks: the :math:`\chi^2` distribution of a Mahalanobis distance (coverage of the
credible regions of a predicted normal) and its binomial acceptance interval, the
ellipticity regression slope and offset, pulls, and the calibration curve.

The regression ``e_pred = slope * e_true + offset``, galaxy by galaxy, is **not** the
weak-lensing shear bias m, c: a posterior mean shrinks each noisy galaxy toward the prior,
so even an ideal estimator has a slope below 1 (for Gaussian shapes of spread σ_e and
noise σ_n, σ_e² / (σ_e² + σ_n²)). The shear bias is measured on sheared copies of the same
galaxies by :mod:`cosmobench.shear`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = [
    "LEVELS",
    "CURVE_LEVELS",
    "chi2_cdf",
    "chi2_quantile",
    "fit_regression",
    "shape_stats",
    "estimator_stats",
    "calibration_curve",
    "mahalanobis2",
    "coverage",
    "coverage_interval",
    "robust_std",
    "excess_kurtosis",
    "regression_of",
]

#: Nominal probabilities of the 1σ and 2σ regions of a normal: erf(1/√2), erf(2/√2).
LEVELS = {"68": math.erf(1 / math.sqrt(2)), "95": math.erf(2 / math.sqrt(2))}
#: Nominal levels of the calibration curve.
CURVE_LEVELS = tuple(np.round(np.linspace(0.02, 0.98, 49), 4))


def chi2_cdf(x: np.ndarray, dof: int) -> np.ndarray:
    """CDF of the χ² distribution with ``dof`` degrees of freedom (regularised gamma)."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float64)).clamp_min(0.0)
    return torch.special.gammainc(torch.tensor(dof / 2.0, dtype=torch.float64), t / 2.0).numpy()


def chi2_quantile(p: float | np.ndarray, dof: int) -> np.ndarray:
    """Quantile of χ²_dof at probability ``p`` (bisection on :func:`chi2_cdf`, ~1e-12).

    Example:
        >>> round(float(chi2_quantile(LEVELS["68"], 2)), 4)
        2.2957
    """
    p = np.asarray(p, dtype=np.float64)
    lo, hi = np.zeros_like(p), np.full_like(p, dof + 40.0 * math.sqrt(2 * dof) + 100.0)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        below = chi2_cdf(mid, dof) < p
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def fit_regression(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Least-squares ``pred = slope * true + offset`` with standard errors (NaN if < 3
    points): the ellipticity regression, not the shear bias (see the module docstring)."""
    true, pred = np.asarray(true, np.float64), np.asarray(pred, np.float64)
    n = true.size
    sxx = float(((true - true.mean()) ** 2).sum()) if n else 0.0
    nan = {"slope": math.nan, "slope_err": math.nan, "offset": math.nan, "offset_err": math.nan}
    if n < 3 or sxx == 0.0:
        return nan
    slope = float(((true - true.mean()) * (pred - pred.mean())).sum()) / sxx
    offset = float(pred.mean() - slope * true.mean())
    s2 = float(((pred - slope * true - offset) ** 2).sum()) / (n - 2)
    return {
        "slope": slope,
        "slope_err": math.sqrt(s2 / sxx),
        "offset": offset,
        "offset_err": math.sqrt(s2 * (1.0 / n + true.mean() ** 2 / sxx)),
    }


def regression_of(d: dict[str, Any]) -> dict[str, float | None]:
    """Slope and offset from a stats dict, also from results written before the rename
    (keys ``m`` = slope − 1 and ``c``)."""
    if "slope" in d:
        return {k: d.get(k) for k in ("slope", "slope_err", "offset", "offset_err")}
    m = d.get("m")
    return {
        "slope": None if m is None else 1.0 + m,
        "slope_err": d.get("m_err"),
        "offset": d.get("c"),
        "offset_err": d.get("c_err"),
    }


def coverage_interval(nominal: float, n: int, confidence: float = 0.9973) -> tuple[float, float]:
    """The range of empirical coverages consistent with ``nominal`` for ``n`` galaxies.

    The number of galaxies inside a region of probability p is Binomial(n, p) when the
    posteriors are calibrated: the interval holds its central ``confidence`` (exact
    binomial quantiles; 0.9973 is the two-sided 3σ of a normal), as fractions of n.

    Example:
        >>> lo, hi = coverage_interval(0.6827, 2000)
        >>> round(lo, 3), round(hi, 3)
        (0.651, 0.714)
    """
    if n < 1:
        return (math.nan, math.nan)
    k = torch.arange(n + 1, dtype=torch.float64)
    nn = torch.tensor(float(n), dtype=torch.float64)
    logpmf = (
        torch.lgamma(nn + 1)
        - torch.lgamma(k + 1)
        - torch.lgamma(nn - k + 1)
        + k * math.log(nominal)
        + (nn - k) * math.log1p(-nominal)
    )
    cdf = torch.cumsum(torch.exp(logpmf), 0).numpy()
    a = (1.0 - confidence) / 2
    lo = int(np.searchsorted(cdf, a))
    hi = int(np.searchsorted(cdf, 1.0 - a))
    return lo / n, min(hi, n) / n


def mahalanobis2(resid: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``(N,)`` rᵀ Σ⁻¹ r for residuals ``(N, T)`` and covariances ``(N, T, T)``."""
    if len(resid) == 0:
        return np.zeros(0)
    sol = np.linalg.solve(cov, resid[..., None])[..., 0]
    return (resid * sol).sum(-1)


def coverage(d2: np.ndarray, dof: int) -> dict[str, float]:
    return {
        f"coverage_{k}": float(np.mean(d2 <= chi2_quantile(p, dof))) if d2.size else math.nan
        for k, p in LEVELS.items()
    }


def robust_std(x: np.ndarray) -> float:
    """1.4826 × the median absolute deviation: the standard deviation of a normal, but
    blind to a few outliers (so that a pull's core and its tails can be told apart)."""
    x = np.asarray(x, np.float64)
    if not x.size:
        return math.nan
    return float(1.482602218505602 * np.median(np.abs(x - np.median(x))))


def excess_kurtosis(x: np.ndarray) -> float:
    """Fourth standardised moment minus 3: 0 for a normal, > 0 for heavier tails (a
    Gaussian posterior of such residuals over-covers its 68 % region while matching 95 %)."""
    x = np.asarray(x, np.float64)
    if x.size < 4:
        return math.nan
    d = x - x.mean()
    return float(np.mean(d**4) / np.mean(d**2) ** 2 - 3.0)


def shape_stats(
    truth: np.ndarray,
    mean: np.ndarray,
    cov: np.ndarray,
    targets: tuple[str, ...],
    *,
    aleatoric: np.ndarray | None = None,
    epistemic: np.ndarray | None = None,
) -> dict[str, Any]:
    """Accuracy, bias, pulls and coverage of predictive normals against the truth.

    Arguments:
        truth: ``(N, T)`` true values.
        mean: ``(N, T)`` predictive means.
        cov: ``(N, T, T)`` predictive covariances.
        targets: the T target names (``e1``/``e2`` also get the regression slope and
            offset).
        aleatoric: optional ``(N, T, T)`` aleatoric part (BNN), reported as a mean spread.
        epistemic: optional ``(N, T, T)`` epistemic part (BNN).

    Returns:
        ``{"n", <target>: {...}, "joint": {...}, "joint_e": {...}}`` (``joint_e`` = the (e1, e2)
        marginal, when both are targets and there are more).
    """
    n = len(truth)
    out: dict[str, Any] = {"n": int(n)}
    resid = mean - truth
    var = np.diagonal(cov, axis1=-2, axis2=-1)
    std = np.sqrt(var)
    pull = resid / std
    for i, t in enumerate(targets):
        d: dict[str, Any] = {
            "rmse": float(np.sqrt(np.mean(resid[:, i] ** 2))) if n else math.nan,
            "bias": float(resid[:, i].mean()) if n else math.nan,
            "pull_mean": float(pull[:, i].mean()) if n else math.nan,
            "pull_std": float(pull[:, i].std(ddof=1)) if n > 1 else math.nan,
            "pull_robust_std": robust_std(pull[:, i]),
            "pull_excess_kurtosis": excess_kurtosis(pull[:, i]),
            "sigma_mean": float(std[:, i].mean()) if n else math.nan,
            **coverage(pull[:, i] ** 2, 1),
        }
        if t in ("e1", "e2"):
            d.update(fit_regression(truth[:, i], mean[:, i]))
        for name, part in (("sigma_aleatoric", aleatoric), ("sigma_epistemic", epistemic)):
            if part is not None:
                d[name] = (
                    float(np.sqrt(np.diagonal(part, axis1=-2, axis2=-1)[:, i]).mean())
                    if n
                    else math.nan
                )
        out[t] = d
    out["joint"] = {"dof": len(targets), **coverage(mahalanobis2(resid, cov), len(targets))}
    if "e1" in targets and "e2" in targets and len(targets) > 2:
        k = [targets.index("e1"), targets.index("e2")]
        sub = cov[:, k][:, :, k]
        out["joint_e"] = {"dof": 2, **coverage(mahalanobis2(resid[:, k], sub), 2)}
    return out


def estimator_stats(truth_e: np.ndarray, est_e: np.ndarray) -> dict[str, Any]:
    """RMSE, bias, regression slope and offset of a classical estimator ``(N, 2)``; NaN
    rows count as failures."""
    ok = np.isfinite(est_e).all(axis=1)
    n = len(truth_e)
    out: dict[str, Any] = {
        "n": int(n),
        "n_used": int(ok.sum()),
        "failure_fraction": float(1.0 - ok.mean()) if n else math.nan,
    }
    for i, t in enumerate(("e1", "e2")):
        r = est_e[ok, i] - truth_e[ok, i]
        out[t] = {
            "rmse": float(np.sqrt(np.mean(r**2))) if r.size else math.nan,
            "bias": float(r.mean()) if r.size else math.nan,
            **fit_regression(truth_e[ok, i], est_e[ok, i]),
        }
    return out


def calibration_curve(
    d2: np.ndarray, dof: int, levels: tuple[float, ...] = CURVE_LEVELS
) -> list[float]:
    """Empirical coverage at each nominal level: mean of F_χ²(d²) ≤ level."""
    u = chi2_cdf(d2, dof)
    return [float(np.mean(u <= p)) if u.size else math.nan for p in levels]


# ------------------------------------------------------------------------------- container
