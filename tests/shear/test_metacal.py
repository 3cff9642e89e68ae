"""Metacalibration images: GalSim's deconvolve → shear → dilated reconvolve, and R ≈ 1."""

import galsim
import numpy as np
import pytest

from cosmobench.shear import Metacal, responses
from cosmobench.shear.metacal import VARIANTS
from cosmobench.sim.measure import regauss

SCALE, S = 0.2, 64


def galaxy(e1=0.2, e2=-0.1):
    return galsim.Exponential(half_light_radius=0.6, flux=5e4).shear(g1=e1, g2=e2)


def drawn(gal, fwhm=0.65):
    psf = galsim.Kolmogorov(fwhm=fwhm)
    return galsim.Convolve(gal, psf).drawImage(nx=S, ny=S, scale=SCALE).array


def noiseless_metacal(fwhm=0.65):
    mc = Metacal({"psf": "kolmogorov", "psf_fwhm": fwhm}, bands=(2,))
    mc.sky = np.zeros(6)  # no correcting noise: compare images exactly
    stamp = np.zeros((6, S, S))
    stamp[2] = drawn(galaxy(), fwhm)
    return mc, mc.images(stamp, np.full(6, fwhm), np.random.default_rng(0))


def test_sheared_image_equals_the_sheared_galaxy_through_the_dilated_psf():
    mc, out = noiseless_metacal()
    eff = galsim.Convolve(galsim.Kolmogorov(fwhm=0.65), galsim.Pixel(SCALE)).dilate(1.02)
    want = (
        galsim.Convolve(galaxy().shear(g1=0.01), eff)
        .drawImage(nx=S, ny=S, scale=SCALE, method="no_pixel")
        .array
    )
    got = out["1p"][2]
    assert np.abs(got - want).max() < 2e-3 * want.max()
    assert not out["1p"][0].any()  # bands not asked for stay empty


def test_response_of_regauss_on_a_bright_galaxy_is_near_one():
    mc, out = noiseless_metacal()
    psf = mc.psf_image(0.65)
    est = {k: np.array([regauss(out[k][2], psf, SCALE, 1.0)]) for k in VARIANTS}
    r = responses(est)
    assert r.shape == (1, 2)
    assert r[0] == pytest.approx([1.0, 1.0], abs=0.15)


def test_correcting_noise_has_the_sky_variance():
    mc = Metacal({"psf": "kolmogorov", "psf_fwhm": 0.65}, bands=(2,))
    out = mc.images(np.zeros((6, S, S)), np.full(6, 0.65), np.random.default_rng(1))
    # a pure-noise input: what is left is the correcting noise, sky variance after the
    # (band-limited) reconvolution, so a little less than the sky
    var = out["noshear"][2].var()
    assert 0.2 * mc.sky[2] < var < 1.2 * mc.sky[2]
