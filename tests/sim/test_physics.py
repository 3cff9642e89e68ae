"""Physics invariants of the rendered images (docs/physics.md; GalSim-style invariant tests)."""

import galsim
import numpy as np
import pytest

from cosmobench.sim import SimConfig, Simulator
from cosmobench.sim.measure import ksb, regauss
from cosmobench.sim.population import BuiltinPopulation, Component, Galaxy
from cosmobench.sim.render import add_poisson_noise, lensed_ellipticity, matched_filter_snr, render

PAPER_SKY = np.array([884, 12_746, 65_329, 93_565, 126_597, 145_354], float)


def _round_galaxy(hlr=0.5, mag=22.0):
    prof = galsim.Exponential(half_light_radius=hlr)
    return Galaxy((Component(prof, np.full(6, mag)),), 0.5, hlr, 0.0, (0.0, 0.0))


def test_source_free_stamp_variance_equals_sky():
    rng = np.random.default_rng(0)
    sky = np.array([884.0, 12_746.0, 65_329.0, 1.0e5, 3.0, 150.0])
    noise = np.stack(
        [add_poisson_noise(np.zeros((6, 64, 64), np.float32), sky, rng) for _ in range(10)]
    )
    n = noise[:, 0].size
    var = noise.var(axis=(0, 2, 3))
    mean = noise.mean(axis=(0, 2, 3))
    # sample variance of ~41k Gaussian-like pixels: relative error sqrt(2/n) = 0.7 %
    np.testing.assert_allclose(var, sky, rtol=5 * np.sqrt(2 / n))
    assert np.all(np.abs(mean) < 5 * np.sqrt(sky / n))


def test_noiseless_image_sums_to_the_flux_of_its_magnitude():
    sim = Simulator(SimConfig(n=64, seed=7, measure=False))
    _, cols = sim.chunk(0, 64)
    compact = np.flatnonzero(cols["hlr"] < 0.3)[:6]
    assert compact.size >= 3
    for i in compact:
        images, c = sim.galaxy(int(i))
        expected = 10 ** (0.4 * (np.array(sim.constants.zeropoint) - c["mag"])) * sim.exposure
        np.testing.assert_allclose(c["flux"], expected, rtol=1e-6)
        np.testing.assert_allclose(images["noiseless"].sum(axis=(1, 2)), expected, rtol=0.01)


def test_true_ellipticity_is_recovered_from_psf_free_moments():
    pop = BuiltinPopulation(25.3)
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(12):
        gal = pop.draw(rng)
        if np.hypot(*gal.e_int) > 0.7:  # HSM does not converge on needle-like galaxies
            continue
        for shear in [(0.0, 0.0), (0.04, -0.03)]:
            flux = np.ones((len(gal.components), 6))
            img = render(gal, flux, [None] * 6, shear, stamp_size=256, pixel_scale=0.05)[2]
            mom = galsim.hsm.FindAdaptiveMom(galsim.Image(img.astype(np.float64), scale=0.05))
            truth = lensed_ellipticity(gal.e_int, shear)
            # adaptive moments of concentric elliptical isophotes measure their ellipticity
            assert mom.observed_shape.g1 == pytest.approx(truth[0], abs=0.01)
            assert mom.observed_shape.g2 == pytest.approx(truth[1], abs=0.01)
            checked += 1
    assert checked >= 20


def test_round_galaxy_without_shear_measures_round():
    psf = galsim.Kolmogorov(fwhm=0.65)
    gal = _round_galaxy()
    img = render(gal, np.full((1, 6), 1e5), [psf] * 6, (0.0, 0.0), stamp_size=64, pixel_scale=0.2)
    psf_img = psf.drawImage(nx=32, ny=32, scale=0.2)
    g1, g2 = ksb(img[2], psf_img, 0.2)
    assert abs(g1) < 1e-3 and abs(g2) < 1e-3
    mom = galsim.hsm.FindAdaptiveMom(galsim.Image(img[2].astype(np.float64), scale=0.2))
    assert abs(mom.observed_shape.g1) < 1e-3 and abs(mom.observed_shape.g2) < 1e-3
    # ... and a sheared one measures its shear (REGAUSS returned in the shear convention)
    img = render(
        gal, np.full((1, 6), 1e5), [psf] * 6, (0.05, -0.02), stamp_size=64, pixel_scale=0.2
    )
    e1, e2 = regauss(img[2], psf_img, 0.2, 0.0)
    assert e1 == pytest.approx(0.05, abs=0.005) and e2 == pytest.approx(-0.02, abs=0.005)


def test_matched_filter_snr_is_the_snr_of_the_optimal_flux_estimate():
    gal = _round_galaxy(hlr=0.4)
    psf = galsim.Kolmogorov(fwhm=0.65)
    sky = np.full(6, 1000.0)
    s = render(gal, np.full((1, 6), 3000.0), [psf] * 6, (0.0, 0.0), stamp_size=32, pixel_scale=0.2)
    snr = matched_filter_snr(s, sky)
    rng = np.random.default_rng(1)
    w = np.clip(s[0], 0, None) / (np.clip(s[0], 0, None) + sky[0])
    est = [(w * add_poisson_noise(s, sky, rng)[0]).sum() / (w * s[0]).sum() for _ in range(2000)]
    assert snr[0] == pytest.approx(1.0 / np.std(est), rel=0.06)
    assert np.allclose(snr, snr[0])


def test_paper_preset_reproduces_psf_pixels_and_sky():
    cfg = SimConfig.from_preset("arcelin2021", n=4)
    assert (cfg.psf, cfg.psf_fwhm, cfg.pixel_scale, cfg.stamp_size) == ("kolmogorov", 0.65, 0.2, 64)
    sim = Simulator(cfg)
    np.testing.assert_allclose(sim.sky, PAPER_SKY, rtol=1e-3)
    images, cols = sim.chunk(0, 4)
    assert images["noisy"].shape == (4, 6, 64, 64)
    np.testing.assert_allclose(cols["psf_fwhm"], 0.65)
    # the drawn PSF really has a 0.65" FWHM (without the pixel)
    im = sim.psf.profiles(cols["psf_fwhm"][0])[0].drawImage(
        nx=128, ny=128, scale=0.02, method="no_pixel"
    )
    assert im.calculateFWHM() == pytest.approx(0.65, rel=0.02)
    # the noisy images carry the paper's sky noise (plus the source's own Poisson noise)
    resid = images["noisy"] - images["noiseless"]
    z = resid / np.sqrt(PAPER_SKY[None, :, None, None] + np.clip(images["noiseless"], 0, None))
    np.testing.assert_allclose(z.var(axis=(0, 2, 3)), 1.0, atol=5 * np.sqrt(2 / z[:, 0].size))
