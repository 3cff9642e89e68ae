"""Where the time of one training step goes on this CPU (torch.profiler), eager vs compiled.

Profiles the trainer's own step (``make_train_step``) of the paper's CNN / BNN at the given
batch sizes and precisions, groups the self time of aten operators into families (convolution
forward / backward, PReLU elementwise, padding copies, BatchNorm, Adam, ...), and writes a
Markdown table and JSON to ``benchmarks/results/``, with the machine, threads, load and the
command. Usage::

    .venv/bin/python benchmarks/cpu_profile.py --batch-sizes 2,14 --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from cosmobench.bench.env import cpu_model, load_average
from cosmobench.bench.modes import mode_step
from cosmobench.models import ShapeConfig, ShapeNet
from cosmobench.train.step import make_optimizer, make_train_step

RESULTS = Path(__file__).parent / "results"

# aten operator -> family (self CPU time is summed per family)
FAMILIES = {
    "conv forward": ("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution",
                     "aten::conv2d", "aten::_slow_conv2d_forward"),
    "conv backward": ("aten::convolution_backward", "aten::mkldnn_convolution_backward",
                      "aten::_slow_conv2d_backward"),
    "PReLU (where/mul/gt, fwd+bwd)": ("aten::where", "aten::gt", "aten::mul", "aten::le",
                                      "aten::masked_fill", "aten::fill_", "aten::zeros_like"),
    "padding copies (F.pad, fwd+bwd)": ("aten::constant_pad_nd", "aten::copy_", "aten::pad",
                                        "aten::slice_backward", "aten::narrow"),
    "BatchNorm": ("aten::native_batch_norm", "aten::native_batch_norm_backward",
                  "aten::_batch_norm_impl_index", "aten::batch_norm"),
    "dense (mm/addmm)": ("aten::mm", "aten::addmm", "aten::linear"),
    "Adam (foreach)": ("aten::_foreach_", "aten::lerp_", "aten::addcmul_", "aten::addcdiv_",
                       "aten::sqrt", "aten::mul_", "aten::add_", "aten::div_"),
    "reductions (sum)": ("aten::sum",),
    "allocation": ("aten::empty", "aten::empty_strided", "aten::resize_"),
}


def family(name: str) -> str:
    for fam, prefixes in FAMILIES.items():
        if any(name == p or (p.endswith("_") and name.startswith(p)) for p in prefixes):
            return fam
    return "other"


def profile_step(bayesian: bool, batch: int, precision: str, steps: int, compiled: bool):
    """Wall ms of one step, then, profiled: self CPU ms per operator family and of the top
    operators, and the aten operator calls per step (nested calls counted: ``aten::conv2d``
    and the ``aten::mkldnn_convolution`` it calls are two)."""
    torch.manual_seed(0)
    model = ShapeNet(ShapeConfig(bayesian=bayesian)).train()
    opt = make_optimizer(model)
    step = make_train_step(model, opt, n_train=8000, precision=precision)
    if compiled:
        step = mode_step(step, "compile")  # with the step's inductor options
    x, y = torch.randn(batch, 6, 64, 64), torch.rand(batch, 3)
    for _ in range(5):
        step(x, y)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    wall = (time.perf_counter() - t0) / steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step(x, y)
    fam: dict[str, float] = defaultdict(float)
    ops: dict[str, float] = defaultdict(float)
    calls = 0
    for evt in prof.key_averages():
        if evt.key.startswith("aten::"):
            fam[family(evt.key)] += evt.self_cpu_time_total / 1e3 / steps  # ms per step
            ops[evt.key] += evt.self_cpu_time_total / 1e3 / steps
            calls += evt.count
    top = dict(sorted(ops.items(), key=lambda kv: -kv[1])[:12])
    return wall * 1e3, dict(fam), top, calls / steps


def per_image_floor(rows: list[dict]) -> list[str]:
    """Per image, the smallest batch's convolutions alone against the largest batch's whole
    step: above the target ratio, no saving outside the convolutions can meet it."""
    out = []
    keys = {(r["net"], r["precision"], r["compiled"]) for r in rows}
    for net, precision, compiled in sorted(keys):
        group = sorted((r for r in rows if (r["net"], r["precision"], r["compiled"]) ==
                        (net, precision, compiled)), key=lambda r: r["batch"])
        small, large = group[0], group[-1]
        if small["batch"] == large["batch"]:
            continue
        conv = sum(small["families_ms"].get(f, 0.0) for f in ("conv forward", "conv backward"))
        a, b = conv / small["batch"], large["ms_per_step"] / large["batch"]
        out.append(f"- {net} {precision}{' compiled' if compiled else ''}: batch "
                   f"{small['batch']}'s convolutions alone take {a:.2f} ms per image, batch "
                   f"{large['batch']}'s whole step {b:.2f} ms per image (**{a / b:.2f}×**); the "
                   f"whole batch-{small['batch']} step {small['ms_per_step'] / small['batch']:.2f}"
                   f" ms per image ({small['ms_per_step'] / small['batch'] / b:.2f}×)")
    if out:
        out = ["", "Per image: the smallest batch's convolutions (forward and backward, oneDNN) "
               "against the largest batch's whole step:", "", *out]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="2,14")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--compile", action="store_true", help="also profile torch.compile")
    ap.add_argument("--out", default=str(RESULTS / "bench_cpu_profile"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for bayesian in (False, True):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            for precision in ("fp32", "bf16"):
                for compiled in (False, True) if args.compile else (False,):
                    wall, fam, ops, calls = profile_step(bayesian, batch, precision,
                                                         args.steps, compiled)
                    rows.append({"net": "bnn" if bayesian else "cnn", "batch": batch,
                                 "precision": precision, "compiled": compiled,
                                 "ms_per_step": wall, "families_ms": fam, "top_ops_ms": ops,
                                 "aten_calls_per_step": calls})
                    print(f"{rows[-1]['net']} b={batch} {precision} compiled={compiled}: "
                          f"{wall:.1f} ms/step", flush=True)
    record = {"machine": {"cpu_model": cpu_model(), "threads": args.threads,
                          "torch": torch.__version__, "load_average": load_average()},
              "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    fams = list(FAMILIES) + ["other"]
    plural = "" if args.threads == 1 else "s"
    lines = [f"# Training step profile on {cpu_model()} ({args.threads} thread{plural})", "",
             f"`{record['command']}`; torch {torch.__version__}; load average "
             f"{record['machine']['load_average']} (shared machine: read the shares, not the "
             "absolute times).", "",
             "Self CPU time per step (ms) by operator family (torch.profiler):", "",
             "| net | batch | precision | compiled | ms/step (wall) | aten calls/step | "
             + " | ".join(fams) + " |",
             "|" + "---|" * (6 + len(fams))]
    for r in rows:
        cells = [f"{r['families_ms'].get(f, 0.0):.1f}" for f in fams]
        lines.append(f"| {r['net']} | {r['batch']} | {r['precision']} | {r['compiled']} | "
                     f"{r['ms_per_step']:.1f} | {r['aten_calls_per_step']:,.0f} | "
                     + " | ".join(cells) + " |")
    lines += per_image_floor(rows)
    lines += ["", "Top operators (ms per step):", ""]
    for r in rows:
        top = ", ".join(f"{k} {v:.1f}" for k, v in list(r["top_ops_ms"].items())[:8])
        lines.append(f"- {r['net']} b={r['batch']} {r['precision']}"
                     f"{' compiled' if r['compiled'] else ''}: {top}")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')} (pid {os.getpid()})")


if __name__ == "__main__":
    main()
