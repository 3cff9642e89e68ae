"""The shape-science report: CNN and BNN compared on unseen galaxies, in and out of
distribution (what ``benchmarks/shape_science.py`` writes).

From the :class:`~cosmobench.evaluate.ShapeMetrics` of each network on each test set
(:func:`cosmobench.evaluate.evaluate_shape`):

* :func:`summarise` -- the headline numbers of one evaluation: RMSE of each target and of
  the ellipticity (e1, e2 together), the ellipticity regression slope and offset, pulls and
  their tails, coverage of the 68.27 % and 95.45 % credible regions (joint, (e1, e2), per
  target), the BNN's epistemic and aleatoric spreads, and REGAUSS (Hirata & Seljak 2003;
  Mandelbaum et al. 2005) on the galaxies where it succeeded, next to the network on the
  same galaxies;
* :func:`summarise_all` -- those for every evaluation, and the ratio of the BNN's epistemic
  spread through a wider PSF to its spread in distribution (the out-of-distribution
  response of a Bayesian network: Arcelin 2021, arXiv:2106.02465, Sect. 3.2; Charnock,
  Perreault-Levasseur & Lanusse 2020, arXiv:2006.01490);
* :func:`coverage_checks` / :func:`shape_checks` -- pass/fail: a coverage passes when it
  lies in the binomial interval a calibrated posterior allows for the test-set size
  (:func:`cosmobench.shape_stats.coverage_interval` at ``CONFIDENCE``, the two-sided 3σ);
* :func:`training_record` -- what the training runs recorded (epochs, kept epoch, history);
* :func:`shape_markdown` -- the Markdown report of a full record.

The figures are :mod:`cosmobench.shape_report_figures`'.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cosmobench.shape_stats import LEVELS, coverage_interval

__all__ = [
    "CONFIDENCE",
    "run_history",
    "coverage_checks",
    "shape_checks",
    "shape_markdown",
    "summarise",
    "summarise_all",
    "training_record",
]

#: Coverage "pass": inside the binomial 3σ interval for the test-set size.
CONFIDENCE = 0.9973


def rmse(a: np.ndarray) -> float:
    """Root mean square of all entries of ``a`` (residuals)."""
    return float(np.sqrt(np.mean(a**2)))


def summarise(m: Any) -> dict[str, Any]:
    """The headline numbers of one evaluation (a :class:`~cosmobench.evaluate.ShapeMetrics`).

    JSON-friendly: ``n``, ``rmse`` per target, ``rmse_e`` (e1 and e2 together), ``slope`` and
    ``offset`` of the ellipticity regression as (value, error), ``pull`` (mean, std),
    ``pull_tails`` (robust std, excess kurtosis), ``coverage`` per region and level; for the
    BNN ``sigma_epistemic`` and ``sigma_aleatoric``; if the store holds REGAUSS, ``regauss``:
    its RMSE on the galaxies it measured and the network's on the same galaxies.
    """
    o = m.overall
    t = list(m.targets)
    ie = [t.index("e1"), t.index("e2")]
    resid = m.mean[:, ie] - m.truth[:, ie]
    out: dict[str, Any] = {
        "n": m.n,
        "rmse": {k: o[k]["rmse"] for k in t},
        "rmse_e": rmse(resid),  # both components together
        # ellipticity regression e_pred = slope e_true + offset (not the shear bias m, c)
        "slope": {k: (o[k]["slope"], o[k]["slope_err"]) for k in ("e1", "e2")},
        "offset": {k: (o[k]["offset"], o[k]["offset_err"]) for k in ("e1", "e2")},
        "pull": {k: (o[k]["pull_mean"], o[k]["pull_std"]) for k in t},
        "pull_tails": {k: (o[k]["pull_robust_std"], o[k]["pull_excess_kurtosis"]) for k in t},
        "coverage": {
            "joint": {lv: o["joint"][f"coverage_{lv}"] for lv in LEVELS},
            **(
                {"e1,e2": {lv: o["joint_e"][f"coverage_{lv}"] for lv in LEVELS}}
                if "joint_e" in o
                else {}
            ),
            **{k: {lv: o[k][f"coverage_{lv}"] for lv in LEVELS} for k in t},
        },
    }
    if m.kind == "bnn":
        out["sigma_epistemic"] = {k: o[k]["sigma_epistemic"] for k in t}
        out["sigma_aleatoric"] = {k: o[k]["sigma_aleatoric"] for k in t}
    reg = m.baseline_values.get("regauss")
    if reg is not None:
        ok = np.isfinite(reg).all(axis=1)
        truth_e = m.truth[:, ie]
        out["regauss"] = {
            "n_used": int(ok.sum()),
            "failure_fraction": float(1 - ok.mean()),
            "rmse": {k: rmse(reg[ok, i] - truth_e[ok, i]) for i, k in enumerate(("e1", "e2"))},
            "rmse_e": rmse(reg[ok] - truth_e[ok]),
            "network_rmse_e_same_galaxies": rmse(resid[ok]),
        }
    return out


def coverage_checks(s: dict[str, Any]) -> dict[str, Any]:
    """Coverage at 68.27 % and 95.45 % inside the binomial interval (``CONFIDENCE``) that a
    calibrated posterior allows for the ``n`` test galaxies, for every region."""
    checks = {}
    for region, cov in s["coverage"].items():
        for lv, nominal in LEVELS.items():
            lo, hi = coverage_interval(nominal, s["n"], CONFIDENCE)
            checks[f"{region}@{lv}"] = {
                "coverage": cov[lv],
                "nominal": nominal,
                "interval": (lo, hi),
                "ok": lo <= cov[lv] <= hi,
            }
    return checks


def summarise_all(evals: dict[str, Any]) -> dict[str, Any]:
    """:func:`summarise` of each evaluation (``cnn``, ``bnn``, ``bnn_wide_psf``, ...), and
    ``epistemic_ratio``: per target, the BNN's mean epistemic σ on the wide-PSF galaxies
    over its mean epistemic σ on the in-distribution ones."""
    summary = {k: summarise(m) for k, m in evals.items()}
    summary["epistemic_ratio"] = {
        t: summary["bnn_wide_psf"]["sigma_epistemic"][t] / summary["bnn"]["sigma_epistemic"][t]
        for t in summary["bnn"]["sigma_epistemic"]
    }
    return summary


def shape_checks(summary: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checks of a :func:`summarise_all` summary, as ``{name: {"ok", "detail"}}``.

    Returns ``(checks, more)``: the headline targets (CNN ellipticity RMSE below REGAUSS's on
    the same galaxies; joint coverage of both networks at 68.27 % and 95.45 %), and the
    finer ones reported alongside (each target alone, the (e1, e2) marginal, a larger
    epistemic spread through the wider PSF).
    """
    checks: dict[str, dict[str, Any]] = {}
    more: dict[str, dict[str, Any]] = {}
    c = summary["cnn"]["regauss"]
    checks["CNN ellipticity RMSE below REGAUSS's (same galaxies)"] = {
        "ok": c["network_rmse_e_same_galaxies"] < c["rmse_e"],
        "detail": f"{c['network_rmse_e_same_galaxies']:.4f} vs {c['rmse_e']:.4f} on "
        f"{c['n_used']} galaxies",
    }
    for net in ("cnn", "bnn"):
        for region, r in coverage_checks(summary[net]).items():
            where = checks if region.startswith("joint@") else more
            lo, hi = r["interval"]
            where[f"{net.upper()} coverage {region} in [{100 * lo:.2f}, {100 * hi:.2f}] %"] = {
                "ok": r["ok"],
                "detail": f"{100 * r['coverage']:.2f} % vs {100 * r['nominal']:.2f} %",
            }
    ratio = summary["epistemic_ratio"]
    more["BNN epistemic spread larger through the wider PSF (e1, e2)"] = {
        "ok": ratio["e1"] > 1 and ratio["e2"] > 1,
        "detail": ", ".join(f"{t}: ×{v:.2f}" for t, v in ratio.items()),
    }
    return checks, more


# ------------------------------------------------------------------------------ Markdown


def _dev(v: tuple[float, float]) -> tuple[float, float]:
    """(slope, err) -> (slope - 1, err)."""
    return (v[0] - 1.0, v[1])


def fmt_pm(v: tuple[float, float], scale: float = 1.0) -> str:
    """``value ± error``, both times ``scale``."""
    return f"{v[0] * scale:+.2f} ± {v[1] * scale:.2f}"


def _stages_min(timings: dict[str, Any]) -> float:
    return (
        sum(
            v
            for k, v in timings.items()
            if k.endswith("_s") and k != "total_s" and isinstance(v, int | float)
        )
        / 60
    )


def _schedule(t: dict[str, Any]) -> str:
    if t.get("lr_schedule") == "cosine":
        what = "cosine-annealed to zero over the planned epochs"
    elif t["lr_decay"] < 1:
        what = f"×{t['lr_decay']} after {t['lr_patience']} epochs without a better validation loss"
    else:
        what = "constant"
    return what + (f", early stopping (patience {t['patience']})" if t["patience"] else "")


def _augment(t: dict[str, Any]) -> str:
    return (
        "each galaxy under a random symmetry of its stamp (transpose, flips; e1, e2 "
        "transformed to match)"
        if t.get("augment")
        else "no augmentation"
    )


def shape_markdown(rec: dict[str, Any]) -> str:
    """The Markdown report of a shape-science record (the content of
    ``shape_science.json``: ``env``, ``threads``, ``timings``, ``data``, ``train``,
    ``epochs``, ``args``, ``precision``, ``precision_check``, ``samples``, ``summary``
    (:func:`summarise_all`), ``checks`` and ``more_checks`` (:func:`shape_checks`))."""
    env, s = rec["env"], rec["summary"]
    cnn, bnn, wide = s["cnn"], s["bnn"], s["bnn_wide_psf"]
    lines = [
        "# Shape science: CNN and BNN on unseen simulated galaxies",
        "",
        f"Machine: {env['cpu_model']}, {rec['threads']['threads']} torch thread(s) "
        f"({rec['threads']['how']}); load average {env['load_average_start']} at the start, "
        f"{rec['load_average_end']} at the end (shared machine). Command: "
        f"`{' '.join(env['command'])}`. Wall time: {rec['timings']['total_s'] / 60:.1f} min "
        f"for this invocation; {_stages_min(rec['timings']):.1f} min for all stages (a stage "
        "marked reused below ran in an earlier invocation of the same command, with the "
        "time it took then).",
        "",
        f"Data: {rec['data']['n_train']:,} training + {rec['data']['n_val']:,} validation "
        f'galaxies (builtin population, Kolmogorov {rec["data"]["psf_fwhm"]}" PSF, 10-year '
        f"depth); {rec['data']['n_test']:,} test galaxies from another seed; the same test "
        f'galaxies through a {rec["data"]["wide_psf"]}" PSF.',
        f"Training: Adam from lr 1e-3, {_schedule(rec['train'])}, batch "
        f"{rec['train']['batch_size']}, {rec['precision']} "
        f"({'compiled step' if rec['train']['compile'] else 'eager'}), "
        f"{_augment(rec['train'])}, best-validation weights kept; input: "
        f"per-band asinh(x / σ_noise). Epochs trained (kept): CNN "
        f"{rec['epochs']['cnn']['trained']} ({rec['epochs']['cnn']['kept']}), BNN "
        f"{rec['epochs']['bnn']['trained']} ({rec['epochs']['bnn']['kept']})"
        f"{'' if rec['args']['bnn_from_scratch'] else ', the BNN started from the CNN (MOPED)'}.",
        "",
        "| | CNN | BNN | REGAUSS |",
        "|---|---|---|---|",
        f"| RMSE e1 | {cnn['rmse']['e1']:.4f} | {bnn['rmse']['e1']:.4f} | "
        f"{cnn['regauss']['rmse']['e1']:.4f} |",
        f"| RMSE e2 | {cnn['rmse']['e2']:.4f} | {bnn['rmse']['e2']:.4f} | "
        f"{cnn['regauss']['rmse']['e2']:.4f} |",
        f"| RMSE e (on REGAUSS's {cnn['regauss']['n_used']} successes) | "
        f"{cnn['regauss']['network_rmse_e_same_galaxies']:.4f} | "
        f"{bnn['regauss']['network_rmse_e_same_galaxies']:.4f} | "
        f"{cnn['regauss']['rmse_e']:.4f} |",
        f"| RMSE z | {cnn['rmse']['z']:.4f} | {bnn['rmse']['z']:.4f} | |",
        f"| regression slope − 1, e1 (×10⁻²) | {fmt_pm(_dev(cnn['slope']['e1']), 100)} | "
        f"{fmt_pm(_dev(bnn['slope']['e1']), 100)} | |",
        f"| regression slope − 1, e2 (×10⁻²) | {fmt_pm(_dev(cnn['slope']['e2']), 100)} | "
        f"{fmt_pm(_dev(bnn['slope']['e2']), 100)} | |",
        f"| regression offset e1 (×10⁻³) | {fmt_pm(cnn['offset']['e1'], 1e3)} | "
        f"{fmt_pm(bnn['offset']['e1'], 1e3)} | |",
        f"| regression offset e2 (×10⁻³) | {fmt_pm(cnn['offset']['e2'], 1e3)} | "
        f"{fmt_pm(bnn['offset']['e2'], 1e3)} | |",
    ]
    for k in cnn["pull"]:
        lines.append(
            f"| pull {k}: mean, std | {cnn['pull'][k][0]:+.3f}, {cnn['pull'][k][1]:.3f} "
            f"| {bnn['pull'][k][0]:+.3f}, {bnn['pull'][k][1]:.3f} | |"
        )
        lines.append(
            f"| pull {k}: robust std, excess kurtosis | "
            f"{cnn['pull_tails'][k][0]:.3f}, {cnn['pull_tails'][k][1]:+.2f} | "
            f"{bnn['pull_tails'][k][0]:.3f}, {bnn['pull_tails'][k][1]:+.2f} | |"
        )
    for region in cnn["coverage"]:
        for lv, nominal in LEVELS.items():
            lines.append(
                f"| coverage {region} {100 * nominal:.2f} % | "
                f"{100 * cnn['coverage'][region][lv]:.2f} % | "
                f"{100 * bnn['coverage'][region][lv]:.2f} % | |"
            )
    lines += [
        "",
        f"BNN epistemic spread (mean σ over the test galaxies, {rec['samples']} weight samples):",
        "",
        f'| target | 0.65" PSF (trained) | {rec["data"]["wide_psf"]}" PSF | ratio |',
        "|---|---|---|---|",
    ]
    for t, v in s["epistemic_ratio"].items():
        lines.append(
            f"| {t} | {bnn['sigma_epistemic'][t]:.4g} | "
            f"{wide['sigma_epistemic'][t]:.4g} | {v:.2f} |"
        )
    lines += [
        "",
        f"Out of distribution the BNN's RMSE e is {wide['rmse_e']:.4f} (in distribution "
        f"{bnn['rmse_e']:.4f}); joint coverage {100 * wide['coverage']['joint']['68']:.1f} % "
        f"/ {100 * wide['coverage']['joint']['95']:.1f} %.",
        "",
        "## Checks",
        "",
    ]
    lines.append(
        "The issue's targets (coverage of the joint region of the predicted normal "
        "over all targets):"
    )
    lines.append("")
    for name, c in rec["checks"].items():
        lines.append(f"- {'PASS' if c['ok'] else 'FAIL'} — {name}: {c['detail']}")
    lines += [
        "",
        "Finer checks (each target alone, the (e1, e2) marginal, the epistemic response):",
        "",
    ]
    for name, c in rec["more_checks"].items():
        lines.append(f"- {'pass' if c['ok'] else 'miss'} — {name}: {c['detail']}")
    lines += ["", "## Timings", "", "| stage | seconds |", "|---|---|"]
    t = rec["timings"]
    lines += [
        f"| {k[:-2]}{' (reused)' if t.get(k[:-2] + '_reused') else ''} | {v} |"
        for k, v in t.items()
        if k.endswith("_s")
    ]
    p = rec["precision_check"]
    if p:
        lines += [
            "",
            f"Precision check (CNN, {p['n']} galaxies, {p['steps']} steps): loss at "
            f"init fp32 {p['init_loss']['fp32']:.4f} vs bf16 {p['init_loss']['bf16']:.4f} "
            f"({100 * p['init_rel_diff']:.2f} %); after training "
            f"{p['fp32_trained_loss']:.4f} vs {p['bf16_trained_loss']:.4f} "
            f"({100 * p['trained_rel_diff']:.2f} %); bf16 step {p['speedup']:.2f}× "
            f"faster (eager) → {rec['precision']}.",
        ]
    lines += [
        "",
        "Figures: `shape_science_calibration.png`, `shape_science_loss.png`, "
        "`shape_science_cnn_pred_vs_true.png`, `shape_science_bnn_pred_vs_true.png`, "
        "`shape_science_*_pulls.png`, `shape_science_*_snr_bins.png`.",
        "",
    ]
    return "\n".join(lines)


def run_history(run: Path) -> list[dict[str, Any]]:
    """The rows of a training run's ``metrics.jsonl`` (one per epoch, epoch 0 first)."""
    return [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def training_record(runs: dict[str, Path]) -> dict[str, Any]:
    """What training runs ``{kind: folder}`` recorded: ``epochs`` (per run: epochs trained,
    epoch 0 not counted; the kept best-validation epoch; images/s of each epoch) and
    ``history`` (the rows of ``metrics.jsonl``)."""
    from cosmobench.train import load_run

    return {
        "epochs": {
            k: {
                "trained": len(run_history(r)) - 1,
                "kept": load_run(r)[1]["epoch"],
                "images_per_s": [h.get("images_per_s") for h in run_history(r)[1:]],
            }
            for k, r in runs.items()
        },
        "history": {k: run_history(r) for k, r in runs.items()},
    }
