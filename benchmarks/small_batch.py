"""Small-batch cost of the trainer's step and of generation, 1 vs 2 threads, eager vs compiled.

Times the step ``cosmobench train`` runs (``make_train_step``: forward, loss, backward, fused
Adam) for the paper's CNN and BNN at batch 2, 4, 8, 14 — the paper's own batch sizes, where
per-operator overhead rather than arithmetic decides (Arcelin 2021, §4) — eager and
``torch.compile``d, with 1 and 2 torch threads, and ``GalaxySampler`` for 1, 100 and 1,000
galaxies. Reports the median wall time and process CPU time per call, the cost per image, the
batch-2 / batch-14 per-image ratio, which thread count wins at each point, and one galaxy's
share of the time of 100. Writes ``benchmarks/results/small_batch.{json,md}``. Usage (idle
machine; ~2 min eager; each compiled point adds ~40 s of compilation)::

    PYTHONPATH=src .venv/bin/python benchmarks/small_batch.py
    PYTHONPATH=src .venv/bin/python benchmarks/small_batch.py --modes compile --threads 2 \
        --batch-sizes 2,14 --gen-sizes "" --out benchmarks/results/small_batch_compile
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from cosmobench.bench.env import cpu_model, load_average
from cosmobench.bench.modes import mode_step
from cosmobench.generate.sampler import GalaxySampler
from cosmobench.models import (
    VAE,
    BandNormalizer,
    FlowConfig,
    LatentFlow,
    ShapeConfig,
    ShapeNet,
    VAEConfig,
)
from cosmobench.train.step import make_optimizer, make_train_step

RESULTS = Path(__file__).parent / "results"


def timed(fn, warmup: int, repeats: int) -> tuple[float, float]:
    """Median wall and process CPU seconds of ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def step_point(net: str, batch: int, mode: str, warmup: int, repeats: int) -> tuple:
    torch.manual_seed(0)
    model = ShapeNet(ShapeConfig(bayesian=net == "bnn")).train()
    step = make_train_step(model, make_optimizer(model), n_train=10_000)
    if mode == "compile":
        step = mode_step(step, "compile")  # with the step's inductor options
        warmup += 2
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch, 6, 64, 64, generator=g), 0.1 * torch.randn(batch, 3, generator=g)
    return timed(lambda: step(x, y), warmup, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="2,4,8,14")
    ap.add_argument("--nets", default="cnn,bnn")
    ap.add_argument("--modes", default="eager", help="eager,compile (compile: ~40 s a point)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--gen-sizes", default="1,100,1000")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--out", default=str(RESULTS / "small_batch"))
    args = ap.parse_args()
    batches = [int(b) for b in args.batch_sizes.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    t0 = time.time()

    rows = []
    for net in args.nets.split(","):
        for mode in args.modes.split(","):
            for b in batches:
                for th in threads:
                    torch.set_num_threads(th)
                    wall, cpu = step_point(net, b, mode, args.warmup, args.repeats)
                    rows.append(
                        {
                            "net": net,
                            "mode": mode,
                            "batch": b,
                            "threads": th,
                            "wall_s": wall,
                            "cpu_s": cpu,
                        }
                    )
                    print(
                        f"{net} {mode:7s} batch {b:2d} threads {th}: {wall * 1e3:8.1f} ms "
                        f"wall, {cpu * 1e3:8.1f} ms CPU, {wall * 1e3 / b:6.1f} ms/image",
                        flush=True,
                    )
    gen = []
    for th in threads:
        torch.set_num_threads(th)
        torch.manual_seed(0)
        sampler = GalaxySampler(
            VAE(VAEConfig()), LatentFlow(FlowConfig()), BandNormalizer([1e3] * 6)
        )
        for n in (int(s) for s in args.gen_sizes.split(",") if s):
            seeds = iter(range(10**6))
            reps = 3 if n >= 1000 else args.repeats
            wall, cpu = timed(lambda n=n, s=sampler, it=seeds: s(n, seed=next(it)), 1, reps)
            gen.append({"n": n, "threads": th, "wall_s": wall, "cpu_s": cpu})
            print(
                f"generate {n:5d} threads {th}: {wall * 1e3:9.1f} ms wall, "
                f"{wall * 1e3 / n:7.2f} ms/galaxy",
                flush=True,
            )

    best_threads = {}
    for net in args.nets.split(","):
        for mode in args.modes.split(","):
            for b in batches:
                pts = [r for r in rows if (r["net"], r["mode"], r["batch"]) == (net, mode, b)]
                best_threads[f"{net} {mode} {b}"] = min(pts, key=lambda r: r["wall_s"])["threads"]
    derived = {"best_threads": best_threads}
    for th in threads:
        cnn = {
            r["batch"]: r
            for r in rows
            if (r["net"], r["mode"], r["threads"]) == ("cnn", "eager", th)
        }
        if 2 in cnn and 14 in cnn:
            derived[f"cnn_b2_over_b14_per_image_{th}t"] = (cnn[2]["wall_s"] / 2) / (
                cnn[14]["wall_s"] / 14
            )
        g = {r["n"]: r for r in gen if r["threads"] == th}
        if 1 in g and 100 in g:
            derived[f"one_galaxy_share_of_100_{th}t"] = g[1]["wall_s"] / g[100]["wall_s"]

    meta = {
        "command": " ".join(sys.argv),
        "cpu": cpu_model(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "load_average": load_average(),
        "warmup": args.warmup,
        "repeats": args.repeats,
        "seconds": round(time.time() - t0, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "steps": rows, "generate": gen, "derived": derived}, indent=1)
        + "\n"
    )
    lines = [
        "# Small-batch training steps and generation",
        "",
        f"`{meta['command']}`",
        "",
        f"{meta['cpu']} ({meta['capability']}), torch {meta['torch']}, fp32; median of "
        f"{args.repeats} after {args.warmup} warm-up; load average at the end "
        f"{meta['load_average']}; {meta['seconds']:.0f} s.",
        "",
        "| network | mode | batch | threads | wall / step | CPU / step | wall / image |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['net'].upper()} | {r['mode']} | {r['batch']} | {r['threads']} | "
            f"{r['wall_s'] * 1e3:.1f} ms | {r['cpu_s'] * 1e3:.1f} ms | "
            f"{r['wall_s'] * 1e3 / r['batch']:.1f} ms |"
        )
    lines += ["", "| generate n | threads | wall | per galaxy |", "|---|---|---|---|"]
    for r in gen:
        lines.append(
            f"| {r['n']:,} | {r['threads']} | {r['wall_s'] * 1e3:.1f} ms | "
            f"{r['wall_s'] * 1e3 / r['n']:.2f} ms |"
        )
    lines += [""] + [
        f"- {k.replace('_', ' ')}: {v:.3f}" for k, v in derived.items() if not isinstance(v, dict)
    ]
    lines += ["- fastest thread count: " + ", ".join(f"{k} → {v}" for k, v in best_threads.items())]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')} and .json")


if __name__ == "__main__":
    main()
