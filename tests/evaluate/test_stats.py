"""The statistics of the shape evaluation, against closed forms and simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cosmobench.shape_stats import (
    LEVELS,
    calibration_curve,
    chi2_cdf,
    chi2_quantile,
    estimator_stats,
    excess_kurtosis,
    fit_regression,
    robust_std,
    shape_stats,
)


@pytest.mark.parametrize(
    ("dof", "q68", "q95"),
    [(1, 1.0, 4.0), (2, 2.2958, 6.1801), (3, 3.5267, 8.0249)],  # the Δχ² table (Press et al.)
)
def test_chi2_quantiles(dof, q68, q95):
    assert chi2_quantile(LEVELS["68"], dof) == pytest.approx(q68, abs=1e-4)
    assert chi2_quantile(LEVELS["95"], dof) == pytest.approx(q95, abs=1e-4)


def test_chi2_cdf_closed_forms():
    x = np.array([0.1, 1.0, 3.0, 10.0])
    np.testing.assert_allclose(chi2_cdf(x, 2), 1 - np.exp(-x / 2), rtol=1e-12)
    np.testing.assert_allclose(chi2_cdf(x, 1), [math.erf(math.sqrt(v / 2)) for v in x], rtol=1e-12)


def test_fit_regression_exact_line_and_errors():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.3, 500)
    r = fit_regression(x, 1.07 * x - 0.004)
    assert r["slope"] == pytest.approx(1.07, abs=1e-12)
    assert r["offset"] == pytest.approx(-0.004, abs=1e-12)
    # the quoted standard errors match the scatter of m and c over noise realisations
    fits = [fit_regression(x, x + 0.1 * rng.standard_normal(500)) for _ in range(400)]
    ms, cs = np.array([f["slope"] for f in fits]), np.array([f["offset"] for f in fits])
    assert np.mean([f["slope_err"] for f in fits]) == pytest.approx(ms.std(), rel=0.15)
    assert np.mean([f["offset_err"] for f in fits]) == pytest.approx(cs.std(), rel=0.15)
    assert math.isnan(fit_regression(x[:2], x[:2])["slope"])


def _gaussian_case(n, cov_true, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = len(cov_true)
    truth = rng.normal(0, 0.3, (n, t))
    noise = rng.multivariate_normal(np.zeros(t), cov_true, n)
    cov = np.broadcast_to(np.asarray(cov_true) * scale**2, (n, t, t)).copy()
    return truth, truth + noise, cov


def test_calibrated_correlated_normals_cover_nominal():
    cov_true = np.array([[0.01, 0.008, 0.0], [0.008, 0.01, 0.0], [0.0, 0.0, 0.04]])
    n = 20000
    truth, mean, cov = _gaussian_case(n, cov_true)
    s = shape_stats(truth, mean, cov, ("e1", "e2", "z"))
    tol = {k: 4 * math.sqrt(p * (1 - p) / n) for k, p in LEVELS.items()}
    for key in ("joint", "joint_e", "e1", "e2", "z"):
        for k, p in LEVELS.items():
            assert s[key][f"coverage_{k}"] == pytest.approx(p, abs=tol[k]), key
    assert s["e1"]["pull_mean"] == pytest.approx(0, abs=0.03)
    assert s["e1"]["pull_std"] == pytest.approx(1, abs=0.02)
    assert s["e1"]["rmse"] == pytest.approx(0.1, rel=0.02)
    assert s["e2"]["slope"] == pytest.approx(1, abs=4 * s["e2"]["slope_err"])
    assert s["joint"]["dof"] == 3 and s["joint_e"]["dof"] == 2
    # ignoring the 0.8 correlation would miscount the joint region: diagonal-only is wrong
    diag = np.broadcast_to(np.diag(np.diag(cov_true)), cov.shape)
    wrong = shape_stats(truth, mean, diag, ("e1", "e2", "z"))
    assert abs(wrong["joint_e"]["coverage_95"] - LEVELS["95"]) > 3 * tol["95"]  # 12σ off


def test_overconfident_posteriors_undercover():
    n = 20000
    truth, mean, cov = _gaussian_case(n, np.diag([0.01, 0.01]), scale=0.5)
    s = shape_stats(truth, mean, cov, ("e1", "e2"))
    # reported σ half the true one: |pull| ≤ 1 ⇔ |z| ≤ 0.5
    assert s["e1"]["coverage_68"] == pytest.approx(math.erf(0.5 / math.sqrt(2)), abs=0.015)
    assert s["e1"]["pull_std"] == pytest.approx(2.0, rel=0.03)
    curve = calibration_curve(((mean - truth) ** 2 / np.diagonal(cov, 0, 1, 2)).sum(1), 2)
    assert all(c < p for c, p in zip(curve, np.linspace(0.02, 0.98, 49), strict=True))


def test_bnn_spreads_reported():
    truth, mean, cov = _gaussian_case(100, np.diag([0.04, 0.01]))
    s = shape_stats(truth, mean, cov, ("e1", "e2"), aleatoric=cov * 0.75, epistemic=cov * 0.25)
    assert s["e1"]["sigma_aleatoric"] == pytest.approx(math.sqrt(0.03))
    assert s["e1"]["sigma_epistemic"] == pytest.approx(math.sqrt(0.01))
    assert "sigma_epistemic" not in shape_stats(truth, mean, cov, ("e1", "e2"))["e1"]


def test_estimator_stats_count_failures():
    truth = np.array([[0.1, 0.2], [0.3, -0.1], [0.0, 0.0], [-0.2, 0.1]])
    est = truth + np.array([[0.1, 0.0], [np.nan, 0.0], [-0.1, 0.0], [0.0, 0.0]])
    s = estimator_stats(truth, est)
    assert s["n"] == 4 and s["n_used"] == 3 and s["failure_fraction"] == 0.25
    assert s["e1"]["rmse"] == pytest.approx(math.sqrt(0.02 / 3))
    assert s["e2"]["rmse"] == 0.0 and s["e2"]["slope"] == pytest.approx(1.0, abs=1e-12)


def test_robust_spread_and_kurtosis_tell_core_from_tails():
    rng = np.random.default_rng(5)
    normal = rng.standard_normal(200_000)
    assert robust_std(normal) == pytest.approx(1.0, abs=0.01)
    assert excess_kurtosis(normal) == pytest.approx(0.0, abs=0.05)
    # Student t with 5 degrees of freedom: excess kurtosis 6, core narrower than its std
    t5 = rng.standard_t(5, 400_000)
    assert excess_kurtosis(t5) == pytest.approx(6.0, rel=0.25)
    assert robust_std(t5) < 0.85 * t5.std()
    # 5 % outliers (10 times wider) move the robust spread by ~6 %, the std by > 100 %
    mixed = np.concatenate([normal[:190_000], 10 * normal[190_000:]])
    assert robust_std(mixed) == pytest.approx(1.0, abs=0.1)
    assert mixed.std() > 2
    truth, mean, cov = _gaussian_case(1000, np.diag([0.01, 0.01]))
    s = shape_stats(truth, mean, cov, ("e1", "e2"))
    assert s["e1"]["pull_robust_std"] == pytest.approx(1.0, abs=0.1)
    assert math.isnan(robust_std(np.array([]))) and math.isnan(excess_kurtosis(np.ones(3)))


def test_coverage_interval_is_the_binomial_range_of_a_calibrated_posterior():
    from cosmobench.shape_stats import coverage_interval

    p = LEVELS["68"]
    lo, hi = coverage_interval(p, 2000)
    sd = math.sqrt(p * (1 - p) / 2000)
    assert lo == pytest.approx(p - 3 * sd, abs=0.002) and hi == pytest.approx(p + 3 * sd, abs=0.002)
    lo4, hi4 = coverage_interval(p, 8000)
    assert (hi4 - lo4) == pytest.approx((hi - lo) / 2, rel=0.1)  # shrinks as 1/sqrt(n)
    # a calibrated posterior's coverage lands inside it (nearly) every time
    rng = np.random.default_rng(0)
    inside = [lo <= rng.binomial(2000, p) / 2000 <= hi for _ in range(2000)]
    assert np.mean(inside) > 0.99
