"""The CPU training step in all-NCHW against the default mixed per-layer layout, interleaved.

Builds the trainer's own step (``make_train_step``) for the paper's CNN and BNN twice per batch
size: ``plain``, every tensor NCHW (``mixed_layout=False``), and ``mixed``, the CPU default
(:func:`cosmobench.models.layout.mixed_channels_last`: channels-last up to 128×128×3×3
kernels, NCHW above), and times them in rounds, one step of each in turn, so that a drift of
a shared machine hits both alike. Then runs one step of each under oneDNN's verbose log (in a
child process, which prints from C) and sums the logged time of convolutions and of layout
reorders. Writes ``benchmarks/results/step_variants.{md,json}``. Usage (idle machine, ~2 min)::

    .venv/bin/python benchmarks/step_variants.py [--batch-sizes 2,4,8,14] [--precision fp32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from cosmobench.bench.env import load_average, script_meta, write_script_json
from cosmobench.models import ShapeConfig, ShapeNet
from cosmobench.train.step import make_optimizer, make_train_step

RESULTS = Path(__file__).parent / "results"
#: variant -> make_train_step's mixed_layout
VARIANTS = {"plain": False, "mixed": True}


def build(net: str, batch: int, variant: str, precision: str):
    torch.manual_seed(0)
    model = ShapeNet(ShapeConfig(bayesian=net == "bnn")).train()
    step = make_train_step(model, make_optimizer(model), n_train=10_000,
                           precision=precision, mixed_layout=VARIANTS[variant])  # fmt: skip
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch, 6, 64, 64, generator=g), 0.1 * torch.randn(batch, 3, generator=g)
    return lambda: step(x, y)


def onednn_times(net: str, batch: int, variant: str, precision: str) -> dict[str, float]:
    """Milliseconds oneDNN logged for one step, by primitive kind (child process)."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "PYTHONUNBUFFERED": "1"}
    here, threads = str(Path(__file__).parent), torch.get_num_threads()
    code = (
        f"import sys; sys.path.insert(0, {here!r}); import step_variants as S, torch;"
        f"torch.set_num_threads({threads}); f = S.build({net!r}, {batch}, {variant!r}, "
        f"{precision!r}); [f() for _ in range(3)]; print('--- step', flush=True); f()"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    totals: dict[str, float] = defaultdict(float)
    for line in out.split("--- step", 1)[-1].splitlines():
        f = line.split(",")
        if len(f) > 5 and f[0] == "onednn_verbose" and "exec" in f:
            i = f.index("exec")
            kind = f[i + 2]  # primitive kind: convolution, reorder, matmul, ...
            totals[kind] += float(f[-1])
    return dict(totals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="2,4,8,14")
    ap.add_argument("--nets", default="cnn,bnn")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "step_variants"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start, t0 = load_average(), time.time()
    points = [(n, int(b)) for n in args.nets.split(",") for b in args.batch_sizes.split(",")]
    rows = []
    for net, batch in points:
        steps = {name: build(net, batch, name, args.precision) for name in VARIANTS}
        for f in steps.values():  # warm-up
            f(), f()
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.rounds):  # interleaved: one step of each variant per round
            for name, f in steps.items():
                t = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - t)
        med = {name: statistics.median(v) for name, v in times.items()}
        dnn = {name: onednn_times(net, batch, name, args.precision) for name in VARIANTS}
        rows.append({"net": net, "batch": batch, "median_s": med, "onednn_ms": dnn,
                     "speedup": {v: med["plain"] / med[v] for v in VARIANTS}})  # fmt: skip
        print(f"{net} batch {batch:2d}: " + ", ".join(
            f"{v} {med[v] * 1e3:.1f} ms ({rows[-1]['speedup'][v]:.2f}x)" for v in VARIANTS),
            flush=True)  # fmt: skip
    meta = script_meta("benchmarks/step_variants.py", start, t0, threads=args.threads,
                       precision=args.precision, rounds=args.rounds)
    out = Path(args.out)
    write_script_json(out, meta, rows)
    lines = [
        "# CPU training step: all NCHW against the mixed per-layer layout (the default)", "",
        f"`{meta['command']}`", "",
        f"{meta['cpu']} ({meta['capability']}), {args.threads} threads, torch {meta['torch']}, "
        f"{args.precision} eager; median of {args.rounds} interleaved rounds; load average "
        f"{start} before, {meta['load_average'][1]} after; {meta['seconds']:.0f} s.", "",
        "oneDNN columns: milliseconds its verbose log gives one step, plain → mixed (a separate "
        "run, with logging on: read them as shares).", "",
        "| network | batch | plain (NCHW) | mixed (default) | speed-up | oneDNN convolutions | "
        "oneDNN reorders |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, b, m = r["onednn_ms"]["plain"], r["onednn_ms"]["mixed"], r["median_s"]
        lines.append(
            f"| {r['net'].upper()} | {r['batch']} | {m['plain'] * 1e3:.1f} ms | "
            f"{m['mixed'] * 1e3:.1f} ms | **{r['speedup']['mixed']:.2f}×** | "
            f"{a.get('convolution', 0):.1f} → {b.get('convolution', 0):.1f} ms | "
            f"{a.get('reorder', 0):.1f} → {b.get('reorder', 0):.1f} ms |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')} and .json")


if __name__ == "__main__":
    main()
