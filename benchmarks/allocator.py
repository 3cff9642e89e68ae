"""Page faults of the CPU training step, with glibc's default malloc and with freed memory kept.

``cosmobench.allocator.retain_freed_memory`` (called by every CPU training step) asks glibc to
keep freed blocks instead of returning them to the kernel. Its setting is process-wide, so each
variant runs in its own child process (``COSMOBENCH_KEEP_MALLOC=0`` for glibc's default), in
alternating pairs: ``--pairs`` child processes of each, one after the other, per point. Each
child builds the trainer's step (``make_train_step``) for the paper's CNN or BNN, warms up,
and reports the median step time and, per step, the minor page faults and the system and
user CPU time (``getrusage``). Writes ``benchmarks/results/allocator.{md,json}``. Usage (idle
machine, ~3 min)::

    .venv/bin/python benchmarks/allocator.py [--points cnn:2,cnn:14,bnn:2,bnn:14]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from cosmobench.allocator import retain_freed_memory
from cosmobench.bench.env import load_average, script_meta, write_script_json
from cosmobench.models import ShapeConfig, ShapeNet
from cosmobench.train.step import make_optimizer, make_train_step

RESULTS = Path(__file__).parent / "results"
VARIANTS = {"glibc default": "0", "kept (default)": "1"}


def child(net: str, batch: int, steps: int, threads: int) -> dict:
    """One process's measurement (run with ``--child``)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ShapeNet(ShapeConfig(bayesian=net == "bnn")).train()
    step = make_train_step(model, make_optimizer(model), n_train=10_000)
    x, y = torch.randn(batch, 6, 64, 64), 0.1 * torch.randn(batch, 3)
    for _ in range(3):
        step(x, y)
    r0, times = resource.getrusage(resource.RUSAGE_SELF), []
    for _ in range(steps):
        t = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - t)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"kept": retain_freed_memory(), "median_s": statistics.median(times),
            "faults_per_step": (r1.ru_minflt - r0.ru_minflt) / steps,
            "sys_s_per_step": (r1.ru_stime - r0.ru_stime) / steps,
            "user_s_per_step": (r1.ru_utime - r0.ru_utime) / steps}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", default="cnn:2,cnn:14,bnn:2,bnn:14")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS / "allocator"))
    args = ap.parse_args()
    if args.child:
        net, batch = args.child.split(":")
        print(json.dumps(child(net, int(batch), args.steps, args.threads)))
        return
    start, t0, rows = load_average(), time.time(), []
    for point in args.points.split(","):
        runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        for _ in range(args.pairs):
            for name, keep in VARIANTS.items():
                out = subprocess.run(
                    [sys.executable, __file__, "--child", point, "--steps", str(args.steps),
                     "--threads", str(args.threads)],
                    env={**os.environ, "COSMOBENCH_KEEP_MALLOC": keep}, capture_output=True,
                    text=True, check=True,
                ).stdout  # fmt: skip
                runs[name].append(json.loads(out.strip().splitlines()[-1]))
        summary = {name: {k: statistics.median(r[k] for r in rs)
                          for k in ("median_s", "faults_per_step", "sys_s_per_step",
                                    "user_s_per_step")}
                   for name, rs in runs.items()}  # fmt: skip
        base, kept = (summary[v]["median_s"] for v in VARIANTS)
        rows.append({"point": point, "runs": runs, "summary": summary, "speedup": base / kept})
        print(f"{point}: " + ", ".join(
            f"{v} {s['median_s'] * 1e3:.1f} ms ({s['faults_per_step']:.0f} faults, "
            f"{s['sys_s_per_step'] * 1e3:.1f} ms sys)" for v, s in summary.items()
        ) + f"; {base / kept:.2f}x", flush=True)  # fmt: skip
    meta = script_meta("benchmarks/allocator.py", start, t0, threads=args.threads,
                       pairs=args.pairs, steps=args.steps)
    out = Path(args.out)
    write_script_json(out, meta, rows)
    lines = [
        "# CPU training step: glibc's default malloc against freed memory kept", "",
        f"`{meta['command']}`", "",
        f"{meta['cpu']} ({meta['capability']}), {args.threads} threads, torch {meta['torch']}, "
        f"fp32 eager, the default step; per point {args.pairs} child processes of each variant "
        f"in alternation, each the median of {args.steps} steps after 3 warm-up (medians over "
        f"processes below); load average {start} before, {meta['load_average'][1]} after; "
        f"{meta['seconds']:.0f} s.", "",
        "| network | batch | step, glibc default | step, memory kept | speed-up | "
        "page faults / step | system CPU / step | user CPU / step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        net, batch = r["point"].split(":")
        a, b = (r["summary"][v] for v in VARIANTS)
        lines.append(
            f"| {net.upper()} | {batch} | {a['median_s'] * 1e3:.1f} ms | "
            f"{b['median_s'] * 1e3:.1f} ms | **{r['speedup']:.2f}×** | "
            f"{a['faults_per_step']:,.0f} → {b['faults_per_step']:,.0f} | "
            f"{a['sys_s_per_step'] * 1e3:.1f} → {b['sys_s_per_step'] * 1e3:.1f} ms | "
            f"{a['user_s_per_step'] * 1e3:.1f} → {b['user_s_per_step'] * 1e3:.1f} ms |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')} and .json")


if __name__ == "__main__":
    main()
