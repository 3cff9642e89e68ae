"""Galaxy i depends on (config, i) only: seeds, chunks, ring pairs and shear."""

import numpy as np
import pytest

from cosmobench.sim import SimConfig, Simulator
from cosmobench.sim.render import lensed_ellipticity
from cosmobench.sim.run import galaxy_seed


def test_galaxy_seed_is_the_ith_child_of_the_master_seed():
    children = np.random.SeedSequence(42).spawn(10)
    for i in (0, 3, 9):
        np.testing.assert_array_equal(
            galaxy_seed(42, i).generate_state(4), children[i].generate_state(4)
        )


def test_a_galaxy_is_the_same_in_any_chunk_and_any_simulator():
    cfg = SimConfig(n=20, seed=9)
    a_img, a_col = Simulator(cfg).chunk(4, 9)
    b = Simulator(cfg.replace(chunk_size=3))  # layout changes nothing
    for k, i in enumerate(range(4, 9)):
        img, col = b.galaxy(i)
        np.testing.assert_array_equal(img["noisy"], a_img["noisy"][k])
        assert col["seed"] == a_col["seed"][k] and col["index"] == i
    c_img, _ = Simulator(cfg.replace(seed=10)).chunk(4, 9)
    assert not np.array_equal(c_img["noiseless"], a_img["noiseless"])


def test_ring_pairs_are_rotated_by_90_degrees_with_independent_noise():
    sim = Simulator(SimConfig(n=6, seed=3, ring=True, shear=(0.02, -0.01), measure=False))
    images, cols = sim.chunk(0, 6)
    for k in (0, 2, 4):
        assert not cols["rot90"][k] and cols["rot90"][k + 1]
        np.testing.assert_allclose(cols["e1_int"][k + 1], -cols["e1_int"][k], atol=1e-7)
        np.testing.assert_allclose(cols["e2_int"][k + 1], -cols["e2_int"][k], atol=1e-7)
        for name in ("mag", "redshift", "hlr", "psf_fwhm", "g1", "g2"):
            np.testing.assert_array_equal(cols[name][k + 1], cols[name][k])
        noise_a = images["noisy"][k] - images["noiseless"][k]
        noise_b = images["noisy"][k + 1] - images["noiseless"][k + 1]
        assert abs(np.corrcoef(noise_a.ravel(), noise_b.ravel())[0, 1]) < 0.05
    # without lensing shear the partner image is the parent's turned by 90° on the pixel grid
    sim0 = Simulator(SimConfig(n=2, seed=3, ring=True, measure=False))
    img0, _ = sim0.chunk(0, 2)
    a, b = img0["noiseless"][0], img0["noiseless"][1]
    np.testing.assert_allclose(np.rot90(a, 1, axes=(1, 2)), b, atol=1e-4 * a.max())


def test_shear_is_stored_and_applied():
    sim = Simulator(SimConfig(n=4, seed=1, shear=(0.03, 0.01), measure=False))
    _, cols = sim.chunk(0, 4)
    np.testing.assert_allclose(cols["g1"], 0.03)
    np.testing.assert_allclose(cols["g2"], 0.01)
    for k in range(4):
        e = lensed_ellipticity((cols["e1_int"][k], cols["e2_int"][k]), (0.03, 0.01))
        assert cols["e1"][k] == pytest.approx(e[0], abs=1e-6)
        assert cols["e2"][k] == pytest.approx(e[1], abs=1e-6)
        # to first order the shear adds to the shape
        assert cols["e1"][k] - cols["e1_int"][k] == pytest.approx(0.03, abs=0.02)
    rnd = Simulator(SimConfig(n=200, seed=1, shear_sigma=0.05, ring=True, measure=False))
    g = np.array([rnd.shear(i - i % 2) for i in range(200)])
    assert g[::2].std() == pytest.approx(0.05, rel=0.2)
    np.testing.assert_array_equal(g[::2], g[1::2])  # ring partners share their shear


def test_seeing_psf_varies_per_galaxy_and_lsst_per_band():
    _, cols = Simulator(SimConfig(n=8, seed=1, psf="seeing", measure=False)).chunk(0, 8)
    fwhm = cols["psf_fwhm"]
    assert np.unique(fwhm[:, 0]).size == 8 and np.all(fwhm == fwhm[:, :1])
    assert np.median(fwhm) == pytest.approx(0.65, rel=0.3)
    _, cols = Simulator(SimConfig(n=2, seed=1, psf="lsst", measure=False)).chunk(0, 2)
    np.testing.assert_allclose(cols["psf_fwhm"][0], [0.9, 0.86, 0.81, 0.79, 0.77, 0.76])
    img, cols = Simulator(SimConfig(n=2, seed=1, psf="moffat", measure=False)).chunk(0, 2)
    assert np.isfinite(img["noisy"]).all() and np.all(np.isnan(cols["ksb_e1"]))  # measure off
