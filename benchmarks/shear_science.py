"""Shear bias of the paper's CNN and BNN, KSB and REGAUSS, raw and metacalibrated.

On galaxies never seen in training, at the paper's depth and PSF (``arcelin2021`` preset:
Kolmogorov 0.65", 10-year depth with the paper's zero points and sky; builtin population):

1. simulate a training set and a shear-test set from another seed
   (``cosmobench simulate --shear-test``: each galaxy at ±g with the same noise, as 90°
   ring pairs; Pujol et al. 2019, A&A 621, A2);
2. train the CNN (cosine-annealed Adam, dihedral augmentation, best-validation weights)
   and the BNN from the CNN's weights (``--init-from``), or take trained runs
   (``--cnn-run``, ``--bnn-run``);
3. measure m1, m2, c1, c2 of every estimator from the paired differences, with bootstrap
   errors over galaxies, and again with metacalibration (Huff & Mandelbaum 2017; Sheldon &
   Huff 2017) on the first ``--metacal-galaxies`` galaxies (``cosmobench.shear``);
4. write ``benchmarks/results/shear_science.{json,md,png}`` with the checks: σ(m) ≤ 3e-3
   for the raw m of KSB, REGAUSS, CNN and BNN, and for the CNN with metacalibration
   |m| within 2σ of zero at σ(m) ≤ 3e-3.

HSM is cheap per image but noisy on faint galaxies (KSB fails on about a fifth of them), so
its σ(m) target may need more galaxies than the networks: ``--n-shear-hsm N`` measures
``truth``, ``ksb`` and ``regauss`` again on a shear-test store of N galaxies from the same
seed (its first ``--n-shear`` galaxies are the same galaxies), written to
``shear_science_hsm.{json,md,png}``; the KSB and REGAUSS checks then use it.

Every stage resumes (rerun the same command). On a shared machine:

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/shear_science.py

Data and runs go to ``--work`` (default ``data/shear_science``, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from cosmobench.bench.env import capture_env
from cosmobench.files import write_json
from cosmobench.shear import ShearConfig, measure_shear, write_shear_report
from cosmobench.shear.estimators import BUILTIN
from cosmobench.sim import SimConfig, simulate
from cosmobench.train import TrainConfig, fit, make_task

RESULTS = Path(__file__).parent / "results"
NAME = "shear_science"
SIGMA_TARGET = 3e-3


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("data/shear_science"))
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--n-train", type=int, default=5_000, help="training galaxies")
    p.add_argument("--n-shear", type=int, default=2_500, help="shear-test galaxies (x4 images)")
    p.add_argument("--shear", type=float, default=0.02, help="|g| of the shear test")
    p.add_argument(
        "--n-shear-hsm",
        type=int,
        default=0,
        help="also measure truth, ksb and regauss on a store of this many shear-test galaxies "
        "(same seed; 0: none)",
    )
    p.add_argument(
        "--hsm-workers", type=int, default=0, help="processes for --n-shear-hsm (0: --workers)"
    )
    p.add_argument("--metacal-galaxies", type=int, default=400)
    p.add_argument("--epochs", type=int, nargs=2, default=(5, 2), metavar=("CNN", "BNN"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--samples", type=int, default=3, help="BNN weight samples per prediction")
    p.add_argument("--cnn-run", type=Path, help="take this trained CNN instead of training")
    p.add_argument("--bnn-run", type=Path, help="take this trained BNN instead of training")
    p.add_argument("--workers", type=int, default=2, help="simulation / measurement processes")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the Markdown and PNG "
        "from the results JSON of an earlier run (nothing is measured)",
    )
    return p.parse_args(argv)


def train(
    kind: str, data: Path, args: argparse.Namespace, epochs: int, init_from: Path | None = None
) -> Path:
    """Train (or resume, or reuse) one network; returns its run folder."""
    run = args.work / "runs" / kind
    if (run / "model.pt").exists():
        return run
    cfg = TrainConfig(
        epochs=epochs, batch_size=args.batch_size, seed=args.seed, lr_schedule="cosine"
    )
    options = {"augment": True, "init_from": str(init_from or "")}
    resume = (run / "checkpoint.pt").exists()
    fit(make_task(kind, None, options), data, cfg, run, resume=resume, progress=True)
    return run


def checks(
    result: dict[str, Any], names: dict[str, str], hsm: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The acceptance checks, each with its measured value and the galaxies it rests on;
    KSB and REGAUSS from ``hsm`` (the larger HSM-only measurement) when given."""
    out = []
    for label, name in names.items():
        source = hsm if hsm is not None and name in hsm["estimators"] else result
        d = source["estimators"][name]
        out.append(
            {
                "check": f"{label}: raw σ(m) ≤ {SIGMA_TARGET:g} (and |m| < 0.5: it responds)",
                "m": d["m"],
                "m_err": d["m_err"],
                "n_galaxies": source["n_galaxies"],
                "pass": bool(_num(d["m_err"]) <= SIGMA_TARGET and abs(_num(d["m"])) < 0.5),
            }
        )
    mc = result["estimators"][names["CNN"]].get("metacal") or {}
    if mc:
        ok = _num(mc["m_err"]) <= SIGMA_TARGET and abs(_num(mc["m"])) <= 2 * _num(mc["m_err"])
        out.append(
            {
                "check": f"CNN + metacal: |m| within 2σ of 0 at σ(m) ≤ {SIGMA_TARGET:g}",
                "m": mc["m"],
                "m_err": mc["m_err"],
                "n_galaxies": result["metacal_galaxies"],
                "pass": bool(ok),
            }
        )
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.report_only:
        result = json.loads((args.results / f"{NAME}.json").read_text())
        hsm_json = args.results / f"{NAME}_hsm.json"
        hsm = json.loads(hsm_json.read_text()) if hsm_json.exists() else None
        nets = [n for n, d in result["estimators"].items() if d["kind"] == "network"]
        if len(nets) == 2:
            names = {"KSB": "ksb", "REGAUSS": "regauss", "CNN": nets[0], "BNN": nets[1]}
            result["checks"] = checks(result, names, hsm)
        write_shear_report(
            result,
            args.results,
            command=result.get("command"),
            stem=NAME,
            notes=_notes(result, args),
        )
        return
    torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    args.work.mkdir(parents=True, exist_ok=True)
    stages = StageTimes(args.work / "stage_times.json")
    base = SimConfig.from_preset("arcelin2021", measure=False, chunk_size=256)
    train_store = simulate(
        base.replace(n=args.n_train, seed=3000 + args.seed),
        args.work / "train.zarr",
        workers=args.workers,
    )
    shear_store = simulate(
        base.replace(n=args.n_shear, seed=4000 + args.seed, shear_test=args.shear),
        args.work / "shear_test.zarr",
        workers=args.workers,
    )
    stages.record("simulate", time.monotonic() - t0)
    t1 = time.monotonic()
    cnn = args.cnn_run or train("cnn", train_store, args, args.epochs[0])
    bnn = args.bnn_run or train("bnn", train_store, args, args.epochs[1], init_from=cnn)
    stages.record("train", time.monotonic() - t1)
    t1 = time.monotonic()
    cfg = ShearConfig(
        estimators=("truth", "ksb", "regauss", str(cnn), str(bnn)),
        metacal=True,
        metacal_galaxies=args.metacal_galaxies,
        samples=args.samples,
        workers=args.workers,
        seed=args.seed,
    )
    cache = args.work / "measured.json"  # a rerun of the same command reuses the measurement
    cached = json.loads(cache.read_text()) if cache.exists() else {}
    if cached.get("config") == cfg.to_dict() and cached.get("store") == str(shear_store):
        result = cached
    else:
        result = measure_shear(shear_store, cfg, resume_dir=args.work / "shear_estimates")
        write_json(cache, json.loads(json.dumps(result, default=float)))
    stages.record("measure", time.monotonic() - t1)
    names = {
        "KSB": "ksb",
        "REGAUSS": "regauss",
        "CNN": cnn.resolve().name,
        "BNN": bnn.resolve().name,
    }
    hsm = measure_hsm(base, args) if args.n_shear_hsm else None
    result["checks"] = checks(result, names, hsm)
    result["timings_s"] = stages.times
    earlier = args.results / f"{NAME}.json"  # remarks written by hand survive a rerun
    if earlier.exists():
        result["remarks"] = json.loads(earlier.read_text()).get("remarks", [])
    result["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result["env"] = capture_env(torch.device("cpu"), command=sys.argv)
    paths = write_shear_report(
        result, args.results, command=_command(), stem=NAME, notes=_notes(result, args)
    )
    print("wrote", ", ".join(str(p) for p in paths))


class StageTimes:
    """Wall seconds of each stage as it last did real work, kept in ``path`` across reruns:
    a rerun that reuses a finished stage (a few seconds, or under a quarter of the time it
    took: reading back cached estimates) keeps the time it took (``None``: made by a run
    that kept no time)."""

    REUSED_S = 10.0
    REUSED_FRACTION = 0.25

    def __init__(self, path: Path) -> None:
        self.path = path
        self.times: dict[str, float | None] = json.loads(path.read_text()) if path.exists() else {}

    def record(self, stage: str, seconds: float) -> float | None:
        before = self.times.get(stage)
        reused = seconds <= max(self.REUSED_S, self.REUSED_FRACTION * (before or 0.0))
        if stage not in self.times or not reused:
            self.times[stage] = round(seconds, 1)
            write_json(self.path, self.times)
        return self.times[stage]


def measure_hsm(base: SimConfig, args: argparse.Namespace) -> dict[str, Any]:
    """truth, KSB and REGAUSS on ``--n-shear-hsm`` shear-test galaxies (the shear-test seed:
    the first ``--n-shear`` of them are the main store's galaxies); writes
    ``shear_science_hsm.{json,md,png}`` and returns the result."""
    stages = StageTimes(args.work / "stage_times_hsm.json")
    workers = args.hsm_workers or args.workers
    t0 = time.monotonic()
    store = simulate(
        base.replace(n=args.n_shear_hsm, seed=4000 + args.seed, shear_test=args.shear),
        args.work / "shear_test_hsm.zarr",
        workers=workers,
    )
    t_sim = stages.record("simulate", time.monotonic() - t0)
    t0 = time.monotonic()
    cfg = ShearConfig(estimators=BUILTIN, workers=workers, seed=args.seed)
    result = measure_shear(store, cfg, resume_dir=args.work / "shear_estimates_hsm")
    stages.record("measure", time.monotonic() - t0)
    result["timings_s"] = stages.times
    result["env"] = capture_env(torch.device("cpu"), command=sys.argv)
    write_shear_report(
        result,
        args.results,
        command=_command(),
        stem=f"{NAME}_hsm",
        notes=[
            f"HSM estimators only, on {args.n_shear_hsm:,} shear-test galaxies from the seed of "
            f"`{NAME}.md`'s store (its {args.n_shear:,} galaxies are the first of these). "
            f"Wall time: simulate {_took(t_sim)}, measure "
            f"{_took(result['timings_s']['measure'])} ({workers} processes)."
        ],
    )
    return result


def _took(seconds: float | None) -> str:
    """A stage's wall time, or that an earlier, untimed run made it."""
    if seconds is None:
        return "made earlier"
    return f"{seconds:.0f} s"


def _command() -> str:
    return "OMP_NUM_THREADS=1 nice -n 10 python " + " ".join(
        shlex.quote(a) for a in ["benchmarks/shear_science.py", *sys.argv[1:]]
    )


def _num(x: float | None) -> float:
    """A JSON number (``None`` is NaN written by ``write_json``)."""
    return math.nan if x is None else float(x)


def _galaxies_needed(result: dict[str, Any], check: dict[str, Any]) -> float | None:
    """N × (σ(m) / 3e-3)²: the galaxies that would bring σ(m) to the target."""
    n = check.get("n_galaxies") or (
        result["metacal_galaxies"] if "metacal" in check["check"] else result["n_galaxies"]
    )
    err = _num(check.get("m_err"))
    if not err or not math.isfinite(err):
        return None
    return n * (err / SIGMA_TARGET) ** 2


def _notes(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    args = argparse.Namespace(**{**vars(args), **result.get("args", {})})
    lines = ["## Checks", ""]
    for c in result["checks"]:
        c = {**c, "m": _num(c["m"]), "m_err": _num(c["m_err"])}
        verdict = "PASS" if c["pass"] else "MISSED"
        on = f" ({c['n_galaxies']:,} galaxies)" if c.get("n_galaxies") else ""
        lines.append(
            f"- {verdict} — {c['check']}: m = {c['m'] * 1e3:+.2f} ± {c['m_err'] * 1e3:.2f} "
            f"×10⁻³{on}"
        )
    lines += [
        "",
        "σ(m) falls as 1/√N with the number of galaxies N (`tests/shear/test_bias.py`); the "
        "galaxies each estimator would need for σ(m) = 3 × 10⁻³ at this depth:",
        "",
    ]
    for c in result["checks"]:
        need = _galaxies_needed(result, c)
        if need is not None:
            lines.append(f"- {c['check'].split(':')[0]}: ≈ {need:,.0f} galaxies")
    if result.get("remarks"):
        lines += ["", "## Remarks", "", *(f"- {r}" for r in result["remarks"])]
    t = result["timings_s"]
    lines += [
        "",
        f"Data: {args.n_train:,} training galaxies (another seed), {args.n_shear:,} shear-test "
        f"galaxies (x4 images), `arcelin2021` preset, builtin population. CNN {args.epochs[0]} "
        f"epochs and BNN {args.epochs[1]} epochs (from the CNN), cosine schedule, augmentation; "
        f"BNN with {args.samples} weight samples (the same for a galaxy's four images). "
        f"Metacalibration on the first {result['metacal_galaxies']:,} galaxies. KSB and "
        "REGAUSS are measured on the noisy r band. Wall time: simulate "
        f"{_took(t.get('simulate'))}, train {_took(t.get('train'))}, measure "
        f"{_took(t.get('measure'))} (shared machine).",
    ]
    return lines


if __name__ == "__main__":
    main()
