"""Where the time of one training step goes on this CPU (torch.profiler), eager vs compiled.

Profiles the trainer's own step (``make_train_step``) of the paper's CNN / BNN at the given
batch sizes and precisions, groups the self time of aten operators into families (convolution
forward / backward, PReLU, copies, BatchNorm, Adam, the BNN's weight noise, ...), and writes a
Markdown table and JSON to ``benchmarks/results/``, with the machine, threads, load and the
command. Usage::

    .venv/bin/python benchmarks/cpu_profile.py --batch-sizes 2,14 --steps 5

bf16 is profiled only where the CPU runs it natively (AVX-512 BF16 or AMX): elsewhere oneDNN
emulates it in fp32, tens of times slower, and its rows would describe no step anyone runs
(``--precisions fp32,bf16`` asks for them anyway).
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
from cosmobench.bench.hardware import cpu_info
from cosmobench.bench.modes import mode_step
from cosmobench.models import ShapeConfig, ShapeNet
from cosmobench.train.step import make_optimizer, make_train_step

RESULTS = Path(__file__).parent / "results"

# aten operator -> family (self CPU time is summed per family). An operator goes to the part of
# today's step that calls it most (``mul`` also serves the BNN's KL, ``add_`` autograd's
# gradient accumulation): read the families as shares, not exact accounts.
FAMILIES = {
    "conv forward": ("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution",
                     "aten::conv2d", "aten::_slow_conv2d_forward"),
    "conv backward": ("aten::convolution_backward", "aten::mkldnn_convolution_backward",
                      "aten::_slow_conv2d_backward"),
    # cosmobench.models.layers._ElementPReLU: _prelu_kernel forward; threshold_backward,
    # lerp, sub and a per-sample addcmul_ chain backward
    "PReLU (fwd+bwd)": ("aten::_prelu_kernel", "aten::threshold_backward", "aten::lerp",
                        "aten::sub", "aten::addcmul_", "aten::mul", "aten::where", "aten::gt",
                        "aten::le", "aten::masked_fill", "aten::zeros_like"),
    "copies (F.pad, layouts)": ("aten::constant_pad_nd", "aten::copy_", "aten::pad",
                                "aten::fill_", "aten::clone", "aten::_to_copy",
                                "aten::slice_backward", "aten::narrow"),
    "BatchNorm": ("aten::native_batch_norm", "aten::native_batch_norm_backward",
                  "aten::_batch_norm_impl_index", "aten::batch_norm"),
    "dense (mm/addmm)": ("aten::mm", "aten::addmm", "aten::linear"),
    "Adam (fused)": ("aten::_fused_adam_", "aten::_foreach_", "aten::lerp_",
                     "aten::addcdiv_", "aten::sqrt", "aten::mul_", "aten::add_", "aten::div_"),
    # cosmobench.models.variational: one weight sample and the KL per layer and step
    "weight noise and KL (BNN)": ("aten::normal_", "aten::randn", "aten::softplus",
                                  "aten::sigmoid", "aten::log", "aten::reciprocal",
                                  "aten::addcmul", "aten::dot"),
    "reductions (sum)": ("aten::sum",),
    "allocation": ("aten::empty", "aten::empty_strided", "aten::empty_like", "aten::resize_"),
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


PRECISIONS = ("fp32", "bf16")


def precisions_to_run(asked: str | None) -> tuple[list[str], str | None]:
    """The precisions to profile and, when bf16 is left out by default, why. ``asked``
    (comma-separated) is taken as given; unset, it is fp32, and bf16 where native."""
    if asked is not None:
        names = [p.strip() for p in asked.split(",") if p.strip()]
        bad = [p for p in names if p not in PRECISIONS]
        if bad or not names:
            raise SystemExit(f"error: --precisions {asked!r}: each must be one of "
                             f"{', '.join(PRECISIONS)}")
        return names, None
    cpu = cpu_info()
    if cpu.bf16_native:
        return list(PRECISIONS), None
    return ["fp32"], cpu.bf16_reason()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="2,14")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--compile", action="store_true", help="also profile torch.compile")
    ap.add_argument("--precisions", default=None,
                    help="comma-separated among fp32, bf16 (default: fp32, and bf16 where "
                         "the CPU runs it natively)")
    ap.add_argument("--out", default=str(RESULTS / "bench_cpu_profile"))
    args = ap.parse_args()
    precisions, bf16_left_out = precisions_to_run(args.precisions)
    torch.set_num_threads(args.threads)
    rows = []
    for bayesian in (False, True):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            for precision in precisions:
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
              "bf16_left_out": bf16_left_out, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    fams = list(FAMILIES) + ["other"]
    plural = "" if args.threads == 1 else "s"
    lines = [f"# Training step profile on {cpu_model()} ({args.threads} thread{plural})", "",
             f"`{record['command']}`; torch {torch.__version__}; load average "
             f"{record['machine']['load_average']} (shared machine: read the shares, not the "
             "absolute times).", "",
             *([f"bf16 not profiled: {bf16_left_out}.", ""] if bf16_left_out else []),
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
