"""The paired m, c statistics on synthetic shear tests (no images)."""

import numpy as np
import pytest

from cosmobench.shear import binned_bias, group_sums, shear_bias
from cosmobench.sim.render import lensed_ellipticity


def synthetic(n_groups: int, g: float = 0.02, seed: int = 0):
    """True sheared ellipticities (4G, 2) of the shear-test layout, and the components."""
    rng = np.random.default_rng(seed)
    comp = np.arange(n_groups) % 2
    truth = np.empty((4 * n_groups, 2))
    for k in range(n_groups):
        e = rng.normal(0, 0.25, 2)
        e *= min(1.0, 0.8 / np.hypot(*e))
        for j, (sign, rot) in enumerate(((1, 0), (1, 1), (-1, 0), (-1, 1))):
            shear = [0.0, 0.0]
            shear[comp[k]] = sign * g
            ei = -e if rot else e
            truth[4 * k + j] = lensed_ellipticity(tuple(ei), tuple(shear))
    return truth, comp


def test_truth_gives_zero_to_rounding():
    truth, comp = synthetic(200)
    r = shear_bias(group_sums(truth, truth, comp), resamples=50)
    for k in ("m1", "m2", "m", "c1", "c2"):
        assert abs(r[k]) < 1e-12
    assert r["n_used"] == 200 and r["n_failed"] == 0


def test_linear_estimator_recovered_exactly_without_noise():
    truth, comp = synthetic(100)
    est = (1 + 0.013) * truth + np.array([0.002, -0.001])
    r = shear_bias(group_sums(est, truth, comp), resamples=50)
    want = {"m1": 0.013, "m2": 0.013, "c1": 0.002, "c2": -0.001}
    for k, v in want.items():
        assert r[k] == pytest.approx(v, abs=1e-12)


def noisy_estimator(truth, m0, c0, seed, sigma=0.05):
    """(1 + m0) e + c0 + noise shared by the ±g copies (as the pixel noise is) + a little more."""
    rng = np.random.default_rng(seed)
    g = len(truth) // 4
    shared = rng.normal(0, sigma, (g, 2, 2))  # (galaxy, rotation, component)
    noise = shared[:, [0, 1, 0, 1], :].reshape(-1, 2) + rng.normal(0, 0.1 * sigma, truth.shape)
    # a response that varies from galaxy to galaxy (what a noisy nonlinear estimator does)
    resp = 1 + m0 + rng.normal(0, 0.1, g).repeat(4)[:, None]
    return resp * truth + np.asarray(c0) + noise


@pytest.mark.parametrize("errors", ["bootstrap", "jackknife"])
def test_fake_estimator_m0_c0_recovered_within_errors(errors):
    truth, comp = synthetic(3000, seed=1)
    m0, c0 = -0.02, (0.003, -0.002)
    r = shear_bias(group_sums(noisy_estimator(truth, m0, c0, 2), truth, comp), errors=errors)
    for k in ("m1", "m2", "m"):
        assert abs(r[k] - m0) < 3 * r[f"{k}_err"], (k, r[k], r[f"{k}_err"])
        assert 0 < r[f"{k}_err"] < 0.02
    for k, c in zip(("c1", "c2"), c0, strict=True):
        assert abs(r[k] - c) < 3 * r[f"{k}_err"], (k, r[k], r[f"{k}_err"])


def test_bootstrap_error_shrinks_as_one_over_sqrt_n():
    errs = []
    for n in (500, 2000):
        truth, comp = synthetic(n, seed=3)
        r = shear_bias(group_sums(noisy_estimator(truth, 0.0, (0, 0), 4), truth, comp))
        errs.append(r["m_err"])
    assert errs[0] / errs[1] == pytest.approx(2.0, rel=0.2)


def test_failures_drop_the_whole_group_and_are_counted():
    truth, comp = synthetic(50)
    est = truth.copy()
    est[5] = np.nan  # galaxy 1
    est[8, 0] = 3.0  # galaxy 2: |e| > 1 is no shape
    r = shear_bias(group_sums(est, truth, comp), resamples=20)
    assert r["n_failed"] == 2 and r["n_used"] == 48
    assert abs(r["m"]) < 1e-12


def test_metacal_response_divides_out():
    truth, comp = synthetic(200)
    est = 0.9 * truth
    r = shear_bias(group_sums(est, truth, comp, np.full_like(truth, 0.9)), resamples=20)
    assert abs(r["m"]) < 1e-12 and r["R1"] == pytest.approx(0.9)


def test_bins_partition_the_galaxies():
    truth, comp = synthetic(400)
    sums = group_sums(noisy_estimator(truth, 0.01, (0, 0), 5), truth, comp)
    out = binned_bias(sums, np.arange(400.0), 4, resamples=20)
    assert len(out["bins"]) == 4 and sum(b["n_used"] for b in out["bins"]) == 400


def test_metacal_response_of_the_same_galaxies_cancels_their_spread():
    # each galaxy responds to shear with its own R_k (a CNN's spread at LSST depth); a
    # metacal response that tracks it exactly calibrates m to rounding, per component
    truth, comp = synthetic(300)
    r_k = np.random.default_rng(7).uniform(0.3, 1.5, 300)
    r_img = np.repeat(r_k, 4)[:, None] * np.ones((1, 2))
    r = shear_bias(group_sums(r_img * truth, truth, comp, r_img), resamples=50)
    assert abs(r["m1"]) < 1e-12 and abs(r["m2"]) < 1e-12 and abs(r["m"]) < 1e-12
    assert r["m_err"] < 1e-12
