"""evaluate_shape on fake data with an oracle network (known answers) and on real networks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cosmobench.errors import CosmobenchError
from cosmobench.evaluate import LEVELS, evaluate_shape, write_shape_report
from cosmobench.models import ShapeConfig, ShapeNet


def test_oracle_is_calibrated(fake, fakes):
    m = evaluate_shape(fakes.Oracle(), fake)
    o = m.overall
    assert m.n == 2000 and m.kind == "cnn" and m.samples == 1 and m.n_excluded == 0
    for i, t in enumerate(("e1", "e2", "z")):
        assert o[t]["rmse"] == pytest.approx(fakes.SIGMA[i], rel=0.06)
        assert o[t]["pull_std"] == pytest.approx(1.0, abs=0.05)
    tol = 4 * math.sqrt(0.25 / 2000)
    for k, p in LEVELS.items():
        assert o["joint"][f"coverage_{k}"] == pytest.approx(p, abs=tol)
    assert abs(o["e1"]["slope"] - 1) < 4 * o["e1"]["slope_err"]
    assert abs(o["e1"]["offset"]) < 4 * o["e1"]["offset_err"]


def test_miscalibrated_oracle_is_caught(fake, fakes):
    m = evaluate_shape(fakes.Oracle(scale=2.0), fake)  # σ twice too large: overcovers
    assert m.overall["e1"]["coverage_68"] == pytest.approx(math.erf(2 / math.sqrt(2)), abs=0.02)
    assert m.overall["e1"]["pull_std"] == pytest.approx(0.5, abs=0.03)


def test_snr_bins_and_baselines(fake, fakes):
    m = evaluate_shape(fakes.Oracle(), fake, snr_bins=5)
    bins = m.by_snr["bins"]
    assert len(bins) == 5 and sum(b["n"] for b in bins) == 2000
    snr = fake.column("snr")[:, 2]
    np.testing.assert_allclose(m.by_snr["edges"], np.quantile(snr, np.linspace(0, 1, 6)))
    assert all(abs(b["n"] - 400) <= 1 for b in bins)
    ksb, reg = m.baselines["ksb"], m.baselines["regauss"]
    assert ksb["overall"]["failure_fraction"] == pytest.approx(0.10, abs=0.02)
    assert reg["overall"]["failure_fraction"] == pytest.approx(0.02, abs=0.01)
    assert ksb["overall"]["e1"]["slope"] == pytest.approx(1.05, abs=0.03)
    assert reg["overall"]["e2"]["slope"] == pytest.approx(0.95, abs=0.03)
    assert len(ksb["by_snr"]) == 5 and sum(b["n"] for b in ksb["by_snr"]) == 2000
    # the oracle (σ = 0.05) beats KSB (σ = 0.1) on e1
    assert m.overall["e1"]["rmse"] < ksb["overall"]["e1"]["rmse"]


def test_non_finite_rows_are_excluded_and_counted(fakes):
    ds = fakes.make(n=300)
    ds._columns["e2"][:7] = np.nan
    ds._images[10:13, 3, 2, 2] = np.inf
    with pytest.raises(CosmobenchError, match="10 of 300 galaxies .* --exclude-nonfinite"):
        evaluate_shape(fakes.Oracle(), ds)  # refused by default: no silent exclusion
    m = evaluate_shape(fakes.Oracle(), ds, exclude_nonfinite=True)
    assert m.n == 290 and m.n_excluded == 10
    assert np.isfinite(m.mean).all()


def test_bnn_oracle_reports_spreads(fakes):
    m = evaluate_shape(fakes.Oracle(bayesian=True), fakes.make(n=300), samples=4)
    assert m.kind == "bnn" and m.samples == 4
    e1 = m.overall["e1"]
    assert e1["sigma_epistemic"] == pytest.approx(fakes.SIGMA[0] / math.sqrt(2), rel=1e-6)
    assert e1["sigma_aleatoric"] == pytest.approx(fakes.SIGMA[0] / math.sqrt(2), rel=1e-6)


def test_missing_targets_and_bad_options(fakes):
    ds = fakes.make(n=50)
    del ds._columns["redshift"]
    ds.columns = tuple(ds._columns)
    with pytest.raises(CosmobenchError, match=r"no column 'redshift' \(for target z\)"):
        evaluate_shape(fakes.Oracle(), ds)
    m = evaluate_shape(fakes.Oracle(targets=("e1", "e2")), ds)  # fine without z
    assert m.targets == ("e1", "e2")
    with pytest.raises(CosmobenchError, match="batch_size"):
        evaluate_shape(fakes.Oracle(), fakes.make(n=50), batch_size=0)


def test_real_networks_run_and_bnn_seed_is_reproducible(device, fakes):
    ds = fakes.make(n=40)
    ds._images = np.random.default_rng(0).normal(size=(40, 6, 64, 64)).astype(np.float32)
    cnn = ShapeNet(ShapeConfig(filters=(4, 8, 8, 8))).to(device)
    m = evaluate_shape(cnn, ds, batch_size=16)
    assert m.mean.shape == (40, 3) and (m.epistemic == 0).all()
    bnn = ShapeNet(ShapeConfig(filters=(4, 8, 8, 8), bayesian=True, rho_init=(-3, 0.1))).to(device)
    bnn.train()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = evaluate_shape(bnn, ds, samples=3, seed=7)
    assert torch.rand(1) == before  # the global RNG stream is left untouched
    b = evaluate_shape(bnn, ds, samples=3, seed=7)
    np.testing.assert_array_equal(a.mean, b.mean)
    assert (np.diagonal(a.epistemic, 0, 1, 2) > 0).all() and bnn.training  # mode restored


def test_report_files(fake, fakes, tmp_path):
    m = evaluate_shape(fakes.Oracle(), fake)
    paths = write_shape_report(m, tmp_path / "report")
    names = sorted(p.name for p in paths)
    assert names == [
        "calibration.png",
        "metrics.json",
        "pred_vs_true.png",
        "pulls.png",
        "snr_bins.png",
    ]
    for p in paths:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size < 1_000_000
    text = (tmp_path / "report" / "metrics.json").read_text()
    assert "NaN" not in text
    d = json.loads(text)
    assert d["schema"] == "cosmobench.shape_metrics" and d["n"] == 2000
    assert d["overall"]["joint"]["coverage_68"] == pytest.approx(m.overall["joint"]["coverage_68"])
    assert len(d["calibration"]["joint"]) == len(d["calibration"]["levels"])
    assert set(d["baselines"]) == {"ksb", "regauss"}
