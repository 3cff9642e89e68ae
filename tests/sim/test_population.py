"""The builtin population against its published relations, and the COSMOS path."""

import galsim
import numpy as np
import pytest

from cosmobench.errors import CosmobenchError
from cosmobench.sim import SimConfig, Simulator
from cosmobench.sim.population import (
    SED_TYPES,
    Z_GRID,
    BuiltinPopulation,
    CosmosPopulation,
    colour_table,
)


@pytest.fixture(scope="module")
def draws():
    pop = BuiltinPopulation(25.3)
    rng = np.random.default_rng(11)
    return [pop.draw(rng) for _ in range(3000)]


def test_magnitudes_follow_the_number_counts(draws):
    i = np.array([g.mag[3] for g in draws])
    assert i.min() >= 18.0 and i.max() < 25.3 + 1e-9
    # N(<i) ∝ 10^(0.31 i) (LSST Science Book eq. 3.7): fit the slope of log10 N(<i)
    grid = np.linspace(22.0, 25.2, 9)
    counts = np.array([(i < m).sum() for m in grid])
    slope = np.polyfit(grid, np.log10(counts), 1)[0]
    assert slope == pytest.approx(0.31, abs=0.03)


def test_redshifts_follow_p_of_z_given_i(draws):
    i = np.array([g.mag[3] for g in draws])
    z = np.array([g.redshift for g in draws])
    z0 = 0.0417 * i - 0.744
    # p(z|i) ∝ z² exp(-z/z0) (Science Book eq. 3.8): z/z0 ~ Gamma(3), mean 3, variance 3
    # (standard errors 0.03 and 0.11 for 3000 draws: the bounds are 4 sigma)
    assert np.mean(z / z0) == pytest.approx(3.0, abs=0.13)
    assert np.var(z / z0) == pytest.approx(3.0, abs=0.45)
    assert np.median(z) == pytest.approx(0.75, abs=0.15)  # LSST gold sample: median z ~ 0.8


def test_shapes_sizes_and_types(draws):
    e = np.array([g.e_int for g in draws])
    assert np.all(np.hypot(e[:, 0], e[:, 1]) < 0.9)
    np.testing.assert_allclose(e.std(axis=0), 0.26, atol=0.015)
    hlr = np.array([g.hlr for g in draws])
    assert 0.3 < np.median(hlr) < 0.5  # arcsec; PSF half-light radius ~0.33"
    types = np.bincount([g.sed_type for g in draws], minlength=4) / len(draws)
    np.testing.assert_allclose(types, [0.15, 0.30, 0.35, 0.20], atol=0.03)
    bt = np.array([g.bulge_frac for g in draws])
    assert np.all(bt[np.array([g.sed_type for g in draws]) == 3] == 0.0)  # Im: pure disks
    # the i-band magnitude is the sum of bulge and disk
    for g in draws[:50]:
        f = sum(10 ** (-0.4 * c.mag[3]) for c in g.components)
        assert -2.5 * np.log10(f) == pytest.approx(g.mag[3], abs=1e-9)


def test_colours_come_from_the_cww_templates():
    table = colour_table()
    assert table.shape == (len(SED_TYPES), 6, Z_GRID.size)
    np.testing.assert_allclose(table[:, 3], 0.0)  # colours relative to i
    k = np.searchsorted(Z_GRID, 0.5)
    g_minus_i = table[:, 1, k]
    assert g_minus_i[0] > g_minus_i[1] > g_minus_i[2] > g_minus_i[3]  # E redder than Im
    sed = galsim.SED("CWW_Sbc_ext.sed", wave_type="Ang", flux_type="flambda").atRedshift(0.5)
    bp = [galsim.Bandpass(f"LSST_{b}.dat", wave_type="nm").withZeropoint("AB") for b in "gi"]
    direct = sed.calculateMagnitude(bp[0]) - sed.calculateMagnitude(bp[1])
    assert table[1, 1, k] == pytest.approx(direct, abs=2e-3)


def test_most_builtin_galaxies_are_resolved_by_hsm():
    sim = Simulator(SimConfig(n=48, seed=5, measure=False))
    images, cols = sim.chunk(0, 48)
    psf_img = sim.psf.image(0.65, 0.2)
    res = []
    for img in images["noiseless"][:, 2]:
        r = galsim.hsm.EstimateShear(
            galsim.Image(img.astype(np.float64), scale=0.2), psf_img, strict=False
        )
        res.append(r.resolution_factor if not r.error_message else 0.0)
    assert np.mean(np.array(res) > 1 / 3) > 0.5


def test_cosmos_path_draws_the_example_catalog(cosmos_dir):
    cat = galsim.COSMOSCatalog("real_galaxy_catalog_23.5_example.fits", dir=str(cosmos_dir))
    sim = Simulator(SimConfig(n=12, seed=2, population=f"cosmos:{cosmos_dir}"))
    images, cols = sim.chunk(0, 12)
    idx = cols["cosmos_index"]
    assert np.all((idx >= 0) & (idx < cat.nobjects)) and len(set(idx)) > 6
    zphot = cat.param_cat["zphot"][cat.orig_index[idx]]
    np.testing.assert_allclose(cols["redshift"], zphot, rtol=1e-6)
    assert np.all(cols["sed_type"] == -1)
    # LSST i vs the catalog's F814W magnitude of the same galaxies (similar bands): the
    # SEDs' HST normalisation is converted right
    sersic = np.array([cat.param_cat["use_bulgefit"][cat.orig_index[k]] == 0 for k in idx])
    diff = cols["mag"][sersic, 3] - cat.param_cat["mag_auto"][cat.orig_index[idx[sersic]]]
    assert abs(np.median(diff)) < 0.3
    assert np.all(cols["mag"][:, 3] < 25.3)
    # big COSMOS galaxies lose some light outside the 12.8" stamp, never gain any
    ratio = images["noiseless"].sum(axis=(2, 3)) / cols["flux"]
    assert np.all(ratio < 1.01) and np.median(ratio) > 0.95


def test_cosmos_errors(tmp_path):
    with pytest.raises(CosmobenchError, match="galsim_download_cosmos"):
        CosmosPopulation(tmp_path, 25.3)
    (tmp_path / "real_galaxy_catalog_1.fits").write_text("not fits")
    with pytest.raises(CosmobenchError, match="cannot read the COSMOS catalog"):
        CosmosPopulation(tmp_path, 25.3)
