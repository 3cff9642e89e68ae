r"""Shear bias from paired differences: :math:`m_i, c_i` with errors over galaxy groups.

Each galaxy *k* of a shear-test store is seen four times (:mod:`cosmobench.shear.design`):
sheared by :math:`\pm g` on one component *i*, each a 90° ring pair. With
:math:`\hat e` an estimator's ellipticity and :math:`e` the true sheared one of each image,

.. math::

    \Delta\hat e_k = \tfrac12\big(\hat e_i^{+,0} + \hat e_i^{+,90} - \hat e_i^{-,0}
    - \hat e_i^{-,90}\big), \qquad
    1 + m_i = \frac{\sum_k \Delta\hat e_k}{\sum_k R_{k,i}\, \Delta e_k},

summed over the galaxies sheared on component *i*, and
:math:`c_i = \langle \hat e_i \rangle / \bar R_i - \langle e_i \rangle` over every image
(Pujol et al. 2019, A&A 621, A2). The +g and −g images share their pixel noise and the
ring pair cancels the intrinsic shape to first order, so most noise cancels in
:math:`\Delta\hat e` (the *paired difference*). The denominator is the true response of
the same galaxies, :math:`\sum_k \Delta e_k`, not :math:`2 g` times their number: the two
agree in expectation (the mean sheared ellipticity of an isotropic population is the
shear, Seitz & Schneider 1997, A&A 318, 687), but the finite sample's residual
:math:`-g\,\mathrm{Re}(e^2)` terms, which a two-member ring does not cancel, cancel here
exactly; so the ``truth`` estimator gives m = c = 0 to rounding. :math:`R_{k,i}` is 1 for
a raw estimator and, for a calibrated one, galaxy *k*'s metacalibration response
:math:`R_{ii}` (:mod:`cosmobench.shear.metacal`, mean of its four images). The denominator
is then the signal the calibration predicts for the very galaxies measured; for a
galaxy-independent response it is :math:`\bar R_i \sum_k \Delta e_k`, metacalibration's
:math:`\langle\hat e\rangle/\langle R\rangle`. Galaxies differ in response far more than a
shear test can resolve (a CNN's R spreads by ~0.5 at LSST depth); weighting each one's
true signal by its own response cancels that spread, so the error of *m* is set by how
well each galaxy's metacal response tracks its response to the applied shear, not by the
population's spread of responses. In
:math:`c_i`, :math:`\bar R_i` is the mean response over every galaxy.

A galaxy is used only if the estimator (and its response) is finite, with |e| < 1, on all
four images; the others count as failures (the cut is the same for the +g and −g
copies). Errors come from a bootstrap over galaxies (or a delete-one-block jackknife),
which keeps each galaxy's four images together.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

__all__ = ["GroupSums", "group_sums", "shear_bias", "binned_bias", "ERROR_METHODS"]

ERROR_METHODS = ("bootstrap", "jackknife")
_COMPS = ("1", "2")


class GroupSums:
    """Per-galaxy sums of one estimator on a shear-test design (the statistics' input).

    Attributes:
        ok: ``(G,)`` galaxies measured on all four images.
        component: ``(G,)`` sheared component (0 or 1).
        d_est, d_true: ``(G,)`` paired differences of the estimate and of the truth on the
            sheared component (0 where not ``ok``).
        s_est, s_true: ``(G, 2)`` means over the four images, per component.
        r: ``(G, 2)`` mean response per component (ones for a raw estimator).
    """

    def __init__(
        self,
        estimate: np.ndarray,
        truth: np.ndarray,
        component: np.ndarray,
        response: np.ndarray | None = None,
    ) -> None:
        g = len(component)
        est = np.asarray(estimate, np.float64).reshape(g, 4, 2)
        tru = np.asarray(truth, np.float64).reshape(g, 4, 2)
        # |e| >= 1 is no shape in the shear convention (KSB can return any value): a failure
        ok = np.isfinite(est).all(axis=(1, 2)) & (np.hypot(est[..., 0], est[..., 1]) < 1).all(1)
        resp = np.ones_like(est) if response is None else np.asarray(response, np.float64)
        resp = resp.reshape(g, 4, 2)
        ok &= np.isfinite(resp).all(axis=(1, 2))
        est, resp = np.where(ok[:, None, None], est, 0.0), np.where(ok[:, None, None], resp, 0.0)
        tru = np.where(ok[:, None, None], tru, 0.0)
        sign = np.array([1.0, 1.0, -1.0, -1.0])[None, :]
        rows = np.arange(g)
        self.ok = ok
        self.component = np.asarray(component, int)
        self.d_est = 0.5 * (sign * est[rows, :, self.component]).sum(1)
        self.d_true = 0.5 * (sign * tru[rows, :, self.component]).sum(1)
        self.s_est, self.s_true, self.r = est.mean(1), tru.mean(1), resp.mean(1)
        self.calibrated = response is not None

    def subset(self, mask: np.ndarray) -> GroupSums:
        """The same sums restricted to the galaxies in ``mask``."""
        out = object.__new__(GroupSums)
        for k in ("ok", "component", "d_est", "d_true", "s_est", "s_true", "r"):
            setattr(out, k, getattr(self, k)[mask])
        out.calibrated = self.calibrated
        return out


def group_sums(
    estimate: np.ndarray,
    truth: np.ndarray,
    component: np.ndarray,
    response: np.ndarray | None = None,
) -> GroupSums:
    """:class:`GroupSums` of estimates ``(4G, 2)`` against the truth ``(4G, 2)``."""
    return GroupSums(estimate, truth, component, response)


def _stats(s: GroupSums, w: np.ndarray) -> dict[str, np.ndarray]:
    """m1, m2, m, c1, c2 (and R1, R2) for each row of weights ``w`` ``(B, G)``."""
    w = w * s.ok[None, :]
    n = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rbar = (w @ s.r) / n[:, None]  # (B, 2)
        out: dict[str, np.ndarray] = {}
        num_all = np.zeros(len(w))
        den_all = np.zeros(len(w))
        for i, name in enumerate(_COMPS):
            sel = s.component == i
            num = w[:, sel] @ s.d_est[sel]
            # the signal the calibration predicts for these very galaxies (each one's own
            # response times its true paired difference): their spread of responses cancels
            den = w[:, sel] @ (s.r[sel, i] * s.d_true[sel])
            out[f"m{name}"] = num / den - 1.0
            num_all += num
            den_all += den
            out[f"c{name}"] = (w @ s.s_est[:, i]) / (n * rbar[:, i]) - (w @ s.s_true[:, i]) / n
            if s.calibrated:
                out[f"R{name}"] = rbar[:, i]
        out["m"] = num_all / den_all - 1.0
    return out


def shear_bias(
    sums: GroupSums,
    *,
    errors: str = "bootstrap",
    resamples: int = 500,
    blocks: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """m1, m2, m (both components), c1, c2 with errors, ``n_used``, ``n_failed``.

    Arguments:
        sums: the :class:`GroupSums` of one estimator.
        errors: ``bootstrap`` (``resamples`` draws of the galaxies with replacement) or
            ``jackknife`` (``blocks`` contiguous blocks of galaxies, each left out once).
        seed: seeds the bootstrap.

    Returns:
        ``{"m1", "m1_err", ..., "n_used", "n_failed", "failure_fraction"}`` (NaN where
        fewer than 2 galaxies of a component were measured); with a response also
        ``R1``, ``R2``.
    """
    g = len(sums.ok)
    n_used = int(sums.ok.sum())
    point = {k: float(v[0]) for k, v in _stats(sums, np.ones((1, g))).items()}
    out: dict[str, Any] = {}
    per_comp = [int((sums.ok & (sums.component == i)).sum()) for i in range(2)]
    if min(per_comp) >= 2:
        reps = _replicates(sums, errors, resamples, blocks, seed)
    else:
        reps = {k: np.full(2, math.nan) for k in point}
    for k, v in point.items():
        if errors == "jackknife":
            kk = len(reps[k])
            err = math.sqrt((kk - 1) / kk * float(((reps[k] - reps[k].mean()) ** 2).sum()))
        else:
            with warnings.catch_warnings():  # NaN: a draw without one component
                warnings.simplefilter("ignore", RuntimeWarning)
                err = float(np.nanstd(reps[k], ddof=1))
        out[k], out[f"{k}_err"] = v, err
    out.update(
        n_used=n_used,
        n_failed=g - n_used,
        failure_fraction=(g - n_used) / g if g else math.nan,
        errors=errors,
    )
    return out


def _replicates(
    sums: GroupSums, errors: str, resamples: int, blocks: int, seed: int
) -> dict[str, np.ndarray]:
    g = len(sums.ok)
    if errors == "jackknife":
        k = max(2, min(blocks, g))
        block = np.arange(g) * k // g
        w = (block[None, :] != np.arange(k)[:, None]).astype(np.float64)
        return _stats(sums, w)
    rng = np.random.default_rng(seed)
    parts: list[dict[str, np.ndarray]] = []
    step = max(1, 2_000_000 // max(g, 1))  # weights in blocks of ~16 MB
    for start in range(0, resamples, step):
        b = min(step, resamples - start)
        w = rng.multinomial(g, np.full(g, 1.0 / g), size=b).astype(np.float64)
        parts.append(_stats(sums, w))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def binned_bias(sums: GroupSums, variable: np.ndarray, bins: int, **kwargs: Any) -> dict[str, Any]:
    """:func:`shear_bias` in ``bins`` quantile bins of a per-galaxy ``variable`` ``(G,)``.

    Returns ``{"edges": [...], "bins": [{"min", "max", **shear_bias}]}``.
    """
    v = np.asarray(variable, np.float64)
    k = max(1, min(int(bins), len(v)))
    edges = np.quantile(v, np.linspace(0.0, 1.0, k + 1))
    idx = np.clip(np.searchsorted(edges[1:-1], v, side="right"), 0, k - 1)
    out = []
    for b in range(k):
        mask = idx == b
        out.append(
            {
                "min": float(edges[b]),
                "max": float(edges[b + 1]),
                **shear_bias(sums.subset(mask), **kwargs),
            }
        )
    return {"edges": edges.tolist(), "bins": out}
