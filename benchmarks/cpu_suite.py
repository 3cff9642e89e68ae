"""The CPU results: every workload at the paper's sizes, MFU, fp32 vs bf16, figures.

Runs ``cosmobench bench`` (the library: :func:`cosmobench.bench.run_bench`; protocols in
``docs/benchmarking.md``) on this machine's CPU for train-cnn and train-bnn (the paper's
batch sizes; eager, bf16, channels-last, and channels-last+bf16, and torch.compile (fp32,
bf16) at batch 2 and 14), infer-cnn, generate (n = 1 ... 5000) and simulate; draws the
paper's figures with ``compare``; checks that bf16 training leaves the validation loss
unchanged (the trainer, fp32 vs bf16, against the seed-to-seed spread of fp32); and writes
the CPU targets with what was reached to ``benchmarks/results/bench_cpu_targets.md``.

The machine is shared: every file records the load average; compare ratios measured in the
same run. Usage (about 15-25 minutes on 2 cores)::

    .venv/bin/python benchmarks/cpu_suite.py [--parts train,compile,infer,generate,simulate,
                                              bf16-loss,compare,targets]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from cosmobench.bench import BenchConfig, compare, load_results, run_bench
from cosmobench.bench.env import cpu_model, load_average

RESULTS = Path(__file__).parent / "results"
CLI = [sys.executable, "-m", "cosmobench"]
PARTS = ("train", "compile", "infer", "generate", "simulate", "bf16-loss", "compare", "targets")


def bench(name: str, cfg: BenchConfig) -> Path:
    """Run one part with the modes this CPU runs natively (no emulated bf16)."""
    from cosmobench.bench.modes import supported_modes

    cfg = cfg.replace(modes=supported_modes(cfg.modes, torch.device("cpu")))
    out = RESULTS / f"bench_cpu_{name}.json"
    print(f"== {name}: {cfg.workloads} {cfg.mode_list}", flush=True)
    cmd = ["benchmarks/cpu_suite.py", "--parts", name, "--threads", str(cfg.threads)]
    run_bench(cfg, out, progress=True, command=cmd, overwrite=True)
    return out


def bf16_validation_loss(epochs: int = 4, n: int = 1200, threads: int = 1) -> dict:
    """Train the CNN with the trainer, fp32 (two seeds) and bf16; compare validation losses."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # torch's threads in the trainer
    with tempfile.TemporaryDirectory(prefix="cosmobench-bf16-") as tmp:
        data = Path(tmp) / "data.zarr"
        subprocess.run([*CLI, "simulate", "--n", str(n), "--out", str(data), "--seed", "7",
                        "--no-progress"], check=True, env=env)
        out = {}
        for name, extra in (("fp32_seed0", ["--precision", "fp32", "--seed", "0"]),
                            ("fp32_seed1", ["--precision", "fp32", "--seed", "1"]),
                            ("bf16_seed0", ["--precision", "bf16", "--seed", "0"])):
            run = Path(tmp) / name
            subprocess.run([*CLI, "train", "cnn", "--data", str(data), "--out", str(run),
                            "--epochs", str(epochs), "--batch-size", "14", "--no-progress",
                            *extra], check=True, env=env)
            rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
                    if line.strip()]
            out[name] = {"val_loss": [r.get("val_loss") for r in rows],
                         "seconds": [r.get("seconds") for r in rows]}
    final = {k: v["val_loss"][-1] for k, v in out.items()}
    spread = abs(final["fp32_seed0"] - final["fp32_seed1"])
    diff = abs(final["bf16_seed0"] - final["fp32_seed0"])
    result = {"epochs": epochs, "n_galaxies": n, "batch_size": 14, "runs": out,
              "final_val_loss": final, "fp32_seed_spread": spread, "bf16_minus_fp32": diff,
              "unchanged": diff <= max(spread, 0.05 * abs(final["fp32_seed0"])),
              "threads": threads, "load_average": load_average()}
    (RESULTS / "bench_cpu_bf16_loss.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def targets() -> str:
    """The issue's CPU targets against what the results files show (median and min)."""
    train = load_results(RESULTS / "bench_cpu_train.json")
    runs = [train]
    if (RESULTS / "bench_cpu_compile.json").exists():
        runs.append(load_results(RESULTS / "bench_cpu_compile.json"))
    threads = train.env["threads"]
    plural = "" if threads == 1 else "s"
    lines = [f"# CPU targets of the benchmark on {cpu_model()} ({threads} thread{plural})", "",
             f"From `benchmarks/results/bench_cpu_train.json` and `bench_cpu_compile.json` "
             f"(torch {train.env['torch']}; load average at start "
             f"{train.env.get('load_average_start')}, at end "
             f"{train.env.get('load_average_end')}; a shared machine: compare within a run). "
             "Peaks measured in the same runs, same thread count: "
             + "; ".join(", ".join(
                 f"{k} {p['flops_per_s'] / 1e9:.0f} GFLOP/s (theoretical "
                 f"{(p.get('theoretical') or {}).get('flops_per_s') or 0:.3g})"
                 for k, p in sorted(r.peaks.items()) if p.get("flops_per_s")) for r in runs)
             + ". Each number is given from the median step time and, in brackets, from the "
             "fastest block (min), the estimate least disturbed by other processes.", "",
             "| target | mode | reached: median (min) | met (median) |", "|---|---|---|---|"]

    def s(w: str, m: str, b: int, run: int | None = None) -> dict:
        for res in runs if run is None else runs[run:run + 1]:
            r = res.find(w, m, b)
            if r is not None and r.status == "ok":
                out = r.summary(res.peaks)
                peak = res.peaks[r.peak_key]["flops_per_s"]
                out["mfu_min"] = r.flops_per_call / (out["min_ms"] / 1e3) / peak
                out["mfu"] = out.get("mfu") or float("nan")  # none: schema-1 single-mm peak
                return out
        return {}

    for mode in ("eager", "compile"):
        b14 = s("train-cnn", mode, 14, 0 if mode == "eager" else None)
        if b14:
            ok = "yes" if b14["mfu"] >= 0.7 else "no"
            lines.append(f"| CNN fp32 step at batch 14 ≥ 70 % of the measured fp32 peak | {mode}"
                         f" | {100 * b14['mfu']:.0f} % ({100 * b14['mfu_min']:.0f} %); "
                         f"{b14['median_ms']:.1f} ({b14['min_ms']:.1f}) ms/step | {ok} |")
    for mode in ("eager", "compile"):
        b2 = s("train-cnn", mode, 2, 0 if mode == "eager" else None)
        if b2:
            ok = "yes" if b2["median_ms"] <= 13 else "no"
            lines.append(f"| CNN fp32 step at batch 2 ≤ 13 ms | {mode} | {b2['median_ms']:.1f} "
                         f"({b2['min_ms']:.1f}) ms | {ok} |")
    for w in ("train-cnn", "train-bnn"):
        for b in (2, 4, 6, 8, 10, 12, 14):
            f = s(w, "eager", b, 0)
            for mode in ("bf16", "channels-last+bf16"):
                h = s(w, mode, b, 0)
                if f and h:
                    ratio = f["median_ms"] / h["median_ms"]
                    lines.append(f"| {w} bf16 ≥ 3× fp32 (eager) at batch {b} | {mode} | "
                                 f"{ratio:.2f}× ({f['min_ms'] / h['min_ms']:.2f}×) | "
                                 f"{'yes' if ratio >= 3 else 'no'} |")
    loss = RESULTS / "bench_cpu_bf16_loss.json"
    if loss.exists():
        d = json.loads(loss.read_text())
        fl = d["final_val_loss"]
        lines.append(f"| bf16 leaves the validation loss unchanged ({d['epochs']} epochs, "
                     f"{d['n_galaxies']} galaxies, batch 14) | bf16 | fp32 "
                     f"{fl['fp32_seed0']:.4f}, bf16 {fl['bf16_seed0']:.4f}; fp32 seed-to-seed "
                     f"spread {d['fp32_seed_spread']:.4f} | {'yes' if d['unchanged'] else 'no'} |")
    if len(runs) > 1:  # compiled against eager, measured in the same run
        lines += ["", "Compiled against eager, measured in one run (`bench_cpu_compile.json`):",
                  "", "| workload | batch | mode | median ms (min) | × eager fp32 (min) | MFU "
                  "median (min) |", "|---|---|---|---|---|---|"]
        for w in ("train-cnn", "train-bnn"):
            for b in (2, 14):
                base = s(w, "eager", b, 1)
                for mode in ("eager", "bf16", "compile", "compile+bf16"):
                    h = s(w, mode, b, 1)
                    if base and h:
                        lines.append(
                            f"| {w} | {b} | {mode} | {h['median_ms']:.1f} ({h['min_ms']:.1f}) | "
                            f"{base['median_ms'] / h['median_ms']:.2f} "
                            f"({base['min_ms'] / h['min_ms']:.2f}) | {100 * h['mfu']:.0f} % "
                            f"({100 * h['mfu_min']:.0f} %) |")
    lines += ["", "## What holds it back", "",
              "- The per-element PReLU (one slope per C×H×W element) was as costly as the "
              "convolutions in eager mode when written as `torch.where` (profile at 1 thread, "
              "`bench_cpu_profile.md`: 83 ms of PReLU against 131 ms of convolution forward + "
              "backward per CNN step at batch 14). It is now `relu(x) - w * relu(-x)`, the same "
              "function and gradient (tested), 4-5× faster, with the slope cast to the "
              "activation's dtype so bf16 activations stay bf16; torch.compile fuses it further "
              "(the `compile` rows).",
              "- bf16 stays far from 3×: this CPU (AMD EPYC, family 26, AVX512-BF16, no AMX) "
              "runs bf16 matrix products 4-5× faster than torch's fp32 matmul (peaks above) "
              "but bf16 NCHW convolution backward only ~2×, and at small batch the step is "
              "bound by per-operator overheads that bf16 does not shrink; channels-last "
              "speeds the early convolutions in isolation, yet not the whole eager step.",
              "- TensorFlow 'SAME' padding of the stride-2 convolutions is an `F.pad` copy of "
              "the input (and a slice in backward): ~8 % of the step.",
              "- BNN at small batch: sampling the weights and the KL (softplus, log, normal) "
              "is a fixed cost per step that dominates at batch 2, and compiling it is slower "
              "than eager there.",
              "- MFU is against the roofline measured in the same run: the best of matrix "
              "products at several sizes and a 3×3 convolution like the network's (a single "
              "2048² matmul, the peak of older files, was beaten by oneDNN's convolutions and "
              "gave MFU above 100 %); the theoretical peak (cores × clock × FLOPs per cycle "
              "of the detected ISA) is shown next to it.",
              f"- Measurements: {threads} thread{plural}; MFU and speed ratios against a "
              "roofline taken with the same thread count in the same run, once per run."]
    text = "\n".join(lines) + "\n"
    (RESULTS / "bench_cpu_targets.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="torch threads; 1 is robust on a busy shared machine")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    parts = args.parts.split(",")
    RESULTS.mkdir(parents=True, exist_ok=True)
    common = {"threads": args.threads, "repeats": args.repeats, "min_block_s": 0.1}
    if "train" in parts:
        bench("train", BenchConfig(workloads=("train-cnn", "train-bnn"),
                                   modes=("eager", "bf16", "channels-last+bf16"), **common))
    if "compile" in parts:
        # eager points again, in the same run: compiled vs eager as ratios of one run
        bench("compile", BenchConfig(workloads=("train-cnn", "train-bnn"), batch_sizes=(2, 14),
                                     modes=("eager", "bf16", "compile", "compile+bf16"),
                                     warmup_max_s=240, **common))
    if "infer" in parts:
        bench("infer", BenchConfig(workloads=("infer-cnn",),
                                   modes=("eager", "channels-last+bf16"), **common))
    if "generate" in parts:
        bench("generate", BenchConfig(workloads=("generate",), modes=("eager", "bf16"),
                                      threads=args.threads, repeats=3, min_block_s=0.1))
    if "simulate" in parts:
        bench("simulate", BenchConfig(workloads=("simulate",), sim_galaxies=32,
                                      threads=args.threads, repeats=3, min_block_s=0.0))
    if "bf16-loss" in parts:
        print(json.dumps(bf16_validation_loss(threads=args.threads)["final_val_loss"]))
    if "compare" in parts:
        names = ("train", "compile", "infer", "generate", "simulate")
        files = [RESULTS / f"bench_cpu_{n}.json" for n in names]
        print(compare([f for f in files if f.exists()], RESULTS / "compare_cpu"))
    if "targets" in parts:
        print(targets())


if __name__ == "__main__":
    main()
