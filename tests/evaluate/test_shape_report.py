"""The shape-science summary, checks, Markdown and calibration figure on synthetic metrics:
predictive normals whose calibration is known by construction (no network, no training)."""

from __future__ import annotations

import numpy as np
import pytest

from cosmobench.evaluate import ShapeMetrics, calibration_curves
from cosmobench.shape_report import (
    coverage_checks,
    shape_checks,
    shape_markdown,
    summarise,
    summarise_all,
)
from cosmobench.shape_stats import shape_stats

TARGETS = ("e1", "e2", "z")
SIGMA = np.array([0.05, 0.05, 0.2])


def fake_metrics(
    kind: str, n: int = 2000, seed: int = 0, scale: float = 1.0, epistemic: float = 0.3
) -> ShapeMetrics:
    """Means = truth + σ ε; reported covariance (scale σ)² (``scale`` 1: calibrated). A BNN
    splits it into aleatoric and ``epistemic`` parts. REGAUSS: truth + 0.1 ε, 10 % failed."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0, 0.3, (n, 3))
    mean = truth + SIGMA * rng.normal(size=(n, 3))
    cov = np.broadcast_to(np.diag((scale * SIGMA) ** 2), (n, 3, 3)).copy()
    epi = epistemic * cov if kind == "bnn" else np.zeros_like(cov)
    alea = cov - epi
    extra = {"aleatoric": alea, "epistemic": epi} if kind == "bnn" else {}
    regauss = truth[:, :2] + 0.1 * rng.normal(size=(n, 2))
    regauss[: n // 10] = np.nan
    sel = {"truth": truth, "mean": mean, "cov": cov}
    return ShapeMetrics(
        kind=kind,
        targets=TARGETS,
        samples=20 if kind == "bnn" else 1,
        overall=shape_stats(truth, mean, cov, TARGETS, **extra),
        by_snr={"column": None, "edges": [], "bins": []},
        baselines={},
        calibration=calibration_curves(sel, TARGETS),
        truth=truth,
        mean=mean,
        cov=cov,
        aleatoric=alea,
        epistemic=epi,
        baseline_values={"regauss": regauss},
    )


def test_summarise_rmse_regauss_and_spreads():
    m = fake_metrics("bnn")
    s = summarise(m)
    resid = m.mean[:, :2] - m.truth[:, :2]
    assert s["n"] == 2000
    assert s["rmse_e"] == pytest.approx(np.sqrt(np.mean(resid**2)))
    assert s["rmse"]["e1"] == pytest.approx(np.sqrt(np.mean(resid[:, 0] ** 2)))
    assert s["rmse_e"] == pytest.approx(0.05, rel=0.05)
    r = s["regauss"]
    assert r["n_used"] == 1800 and r["failure_fraction"] == pytest.approx(0.1)
    assert r["rmse_e"] == pytest.approx(0.1, rel=0.05)
    assert r["network_rmse_e_same_galaxies"] == pytest.approx(np.sqrt(np.mean(resid[200:] ** 2)))
    assert set(s["coverage"]) == {"joint", "e1,e2", "e1", "e2", "z"}
    assert s["coverage"]["joint"]["68"] == pytest.approx(0.6827, abs=0.035)
    # σ_epistemic is the mean epistemic spread: sqrt(0.3) of the total here
    assert s["sigma_epistemic"]["e1"] == pytest.approx(np.sqrt(0.3) * 0.05, rel=1e-6)
    assert "sigma_epistemic" not in summarise(fake_metrics("cnn"))


def test_coverage_checks_pass_when_calibrated_and_fail_when_overconfident():
    good = coverage_checks(summarise(fake_metrics("cnn")))
    assert set(good) == {
        f"{r}@{lv}" for r in ("joint", "e1,e2", "e1", "e2", "z") for lv in ("68", "95")
    }
    assert all(c["ok"] for c in good.values())
    lo, hi = good["joint@68"]["interval"]
    assert lo < 0.6827 < hi and hi - lo < 0.07  # the binomial 3σ band for n = 2000
    bad = coverage_checks(summarise(fake_metrics("cnn", scale=0.5)))  # σ reported half
    assert not any(c["ok"] for c in bad.values())


def test_shape_checks_split_headline_and_finer():
    evals = {
        "cnn": fake_metrics("cnn", seed=1),
        "bnn": fake_metrics("bnn", seed=2),
        "bnn_wide_psf": fake_metrics("bnn", seed=3, epistemic=0.6),
        "cnn_wide_psf": fake_metrics("cnn", seed=4),
    }
    summary = summarise_all(evals)
    assert summary["epistemic_ratio"]["e1"] == pytest.approx(np.sqrt(2), rel=1e-6)
    checks, more = shape_checks(summary)
    assert len(checks) == 1 + 2 * 2  # REGAUSS + joint@68/95 of both networks
    assert all(c["ok"] for c in checks.values()), checks
    assert any(k.startswith("CNN coverage joint@68 in [") for k in checks)
    ratio = more["BNN epistemic spread larger through the wider PSF (e1, e2)"]
    assert ratio["ok"] and "×1.41" in ratio["detail"]
    summary["epistemic_ratio"]["e2"] = 0.9
    assert not shape_checks(summary)[1][
        "BNN epistemic spread larger through the wider PSF (e1, e2)"
    ]["ok"]


def fake_record() -> dict:
    evals = {
        "cnn": fake_metrics("cnn", seed=1),
        "bnn": fake_metrics("bnn", seed=2),
        "bnn_wide_psf": fake_metrics("bnn", seed=3, epistemic=0.6),
    }
    summary = summarise_all(evals)
    checks, more = shape_checks(summary)
    return {
        "env": {"cpu_model": "Fake CPU", "load_average_start": [1.0], "command": ["x.py"]},
        "load_average_end": [2.0],
        "threads": {"threads": 1, "how": "--threads"},
        "args": {"bnn_from_scratch": False},
        "data": {"n_train": 100, "n_val": 10, "n_test": 2000, "psf_fwhm": 0.65, "wide_psf": 0.9},
        "train": {
            "batch_size": 32,
            "lr_schedule": "cosine",
            "lr_decay": 1.0,
            "lr_patience": 2,
            "patience": 0,
            "augment": True,
            "compile": False,
        },
        "epochs": {"cnn": {"trained": 3, "kept": 2}, "bnn": {"trained": 2, "kept": 2}},
        "precision": "fp32",
        "precision_check": None,
        "samples": 20,
        "summary": summary,
        "checks": checks,
        "more_checks": more,
        "timings": {
            "train_cnn_s": 60.0,
            "train_cnn_reused": True,
            "evaluate_cnn_s": 30.0,
            "total_s": 120.0,
        },
    }


def test_shape_markdown_tables_and_checks():
    rec = fake_record()
    md = shape_markdown(rec)
    s = rec["summary"]
    assert md.startswith("# Shape science: CNN and BNN on unseen simulated galaxies")
    assert (
        f"| RMSE e1 | {s['cnn']['rmse']['e1']:.4f} | {s['bnn']['rmse']['e1']:.4f} | "
        f"{s['cnn']['regauss']['rmse']['e1']:.4f} |"
    ) in md
    assert "cosine-annealed to zero" in md and "random symmetry of its stamp" in md
    assert "the BNN started from the CNN (MOPED)" in md
    assert "1.5 min for all stages" in md  # 60 + 30 s, total_s not counted
    assert "| train_cnn (reused) | 60.0 |" in md
    assert md.count("- PASS — ") + md.count("- FAIL — ") == len(rec["checks"])
    assert md.count("- pass — ") + md.count("- miss — ") == len(rec["more_checks"])
    assert f"| e1 | {s['bnn']['sigma_epistemic']['e1']:.4g} |" in md


def test_calibration_figure_writes_png(tmp_path):
    from cosmobench.shape_report_figures import calibration_figure

    path = tmp_path / "cal.png"
    calibration_figure({"CNN": fake_metrics("cnn", n=200), "BNN": fake_metrics("bnn", n=200)}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
