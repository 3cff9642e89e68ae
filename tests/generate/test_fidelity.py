"""Fidelity: exact 1-D Wasserstein distances, HSM moments, and the distance-vs-floor report."""

from __future__ import annotations

import json

import galsim
import numpy as np
import pytest

from cosmobench.cli import main
from cosmobench.generate.fidelity import adaptive_moments, evaluate_generation, wasserstein_1d
from cosmobench.store import create_or_resume

RNG = np.random.default_rng(0)


def test_wasserstein_known_values():
    assert wasserstein_1d(np.array([0.0, 1.0]), np.array([0.0, 2.0])) == pytest.approx(0.5)
    assert wasserstein_1d(np.array([0.0]), np.array([0.0, 1.0])) == pytest.approx(0.5)
    a, b = RNG.normal(size=500), RNG.normal(size=500)
    # equal sizes: the mean distance between sorted samples (quantile coupling)
    assert wasserstein_1d(a, b) == pytest.approx(np.abs(np.sort(a) - np.sort(b)).mean())
    assert wasserstein_1d(a, a + 0.7) == pytest.approx(0.7)
    assert wasserstein_1d(a, b) == pytest.approx(wasserstein_1d(b, a))
    c = RNG.normal(size=333)  # unequal sizes: against the quantile-function integral
    u = (np.arange(200_000) + 0.5) / 200_000
    brute = np.abs(np.quantile(a, u, method="inverted_cdf")
                   - np.quantile(c, u, method="inverted_cdf")).mean()
    assert wasserstein_1d(a, c) == pytest.approx(brute, rel=1e-3)
    assert wasserstein_1d(np.array([np.nan, 1.0]), np.array([1.0])) == 0.0
    assert np.isnan(wasserstein_1d(np.array([np.nan]), np.array([1.0])))


def _galaxies(n: int, size_scale: float = 1.0, seed: int = 0) -> np.ndarray:
    """Noiseless elliptical Gaussians in 6 bands with known flux, size and shape."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, 6, 64, 64), np.float32)
    for i in range(n):
        sigma = rng.uniform(0.3, 0.6) * size_scale
        g1, g2 = rng.normal(0, 0.15, 2).clip(-0.5, 0.5)
        for b in range(6):
            prof = galsim.Gaussian(sigma=sigma, flux=10 ** rng.uniform(3, 4)).shear(g1=g1, g2=g2)
            out[i, b] = prof.drawImage(nx=64, ny=64, scale=0.2, method="no_pixel").array
    return out


def _store(path, images, kind):
    w = create_or_resume(path, len(images), 16, kind, {"test": kind}, {"index": "int64"},
                         ("noiseless",))
    for k in range(w.n_chunks):
        s, e = w.chunk_range(k)
        w.write_chunk(k, {"noiseless": images[s:e]}, {"index": np.arange(s, e)})
    return w.finalize()


def test_adaptive_moments_recover_a_gaussian():
    prof = galsim.Gaussian(sigma=0.5, flux=2000.0).shear(g1=0.2, g2=-0.1)
    img = prof.drawImage(nx=64, ny=64, scale=0.2, method="no_pixel").array
    m = adaptive_moments(np.stack([img] * 6)[None], 0.2)
    assert m["log10_flux"][0, 0] == pytest.approx(np.log10(2000.0), abs=1e-3)
    assert m["size"][0, 3] == pytest.approx(0.5, rel=1e-3)  # GalSim shears keep the area
    assert m["e1"][0, 5] == pytest.approx(0.2, abs=1e-3)
    assert m["e2"][0, 5] == pytest.approx(-0.1, abs=1e-3)
    blank = adaptive_moments(np.zeros((1, 6, 64, 64)), 0.2)
    assert np.isnan(blank["size"]).all()  # failures are NaN, not crashes


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    ref = _store(root / "ref.zarr", _galaxies(80, seed=1), "simulation")
    good = _store(root / "good.zarr", _galaxies(40, seed=2), "generation")
    big = _store(root / "big.zarr", _galaxies(40, size_scale=1.5, seed=3), "generation")
    return ref, good, big


def test_distance_against_floor(stores, tmp_path):
    ref, good, big = stores
    res_good = evaluate_generation(good, ref, tmp_path / "good", progress=False)
    res_big = evaluate_generation(big, ref, tmp_path / "big", progress=False)
    assert res_good["n"] == 40
    size_good = np.array(res_good["quantities"]["size"]["ratio"])
    size_big = np.array(res_big["quantities"]["size"]["ratio"])
    assert (size_good < 3).all()  # same distribution: distance of the order of the floor
    assert (size_big > 5).all() and (size_big > 2 * size_good).all()
    # flux and shapes were drawn alike in both: the bigger galaxies are no worse there
    e1_big = np.array(res_big["quantities"]["e1"]["ratio"])
    assert (e1_big < 4).all()
    saved = json.loads((tmp_path / "big" / "fidelity.json").read_text())
    assert saved["quantities"]["size"]["distance"] == pytest.approx(
        res_big["quantities"]["size"]["distance"])
    for name in ("hist_log10_flux.png", "hist_size.png", "hist_e1.png", "hist_e2.png",
                 "grid.png"):
        assert (tmp_path / "big" / name).stat().st_size > 1000


def test_cli_and_bad_input(stores, tmp_path, capsys):
    ref, good, _ = stores
    main(["evaluate-generation", str(good), "--reference", str(ref), "--out",
          str(tmp_path / "cli"), "--n", "10", "--no-progress"])
    assert json.loads((tmp_path / "cli" / "fidelity.json").read_text())["n"] == 10
    for argv, msg in (
        (["--n", "41"], "n must be between 1 and 40"),
        (["--reference", str(tmp_path / "missing.zarr")], "does not exist"),
    ):
        args = ["evaluate-generation", str(good), "--reference", str(ref), "--out",
                str(tmp_path / "x"), "--no-progress", *argv]
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and msg in err and "\n" not in err
