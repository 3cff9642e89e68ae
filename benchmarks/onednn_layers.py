"""Where oneDNN spends a training step, layer by layer and pass by pass, at two batch sizes.

Runs the trainer's own step (``make_train_step``) of the paper's CNN or BNN under oneDNN's
verbose log (``torch.backends.mkldnn.verbose``, in a child process: oneDNN prints from C) and
reads back every primitive it executed: each convolution's forward, backward-data and
backward-weights pass with its implementation and rate (the layer's FLOPs over the logged
time), and the reorders, split into *weight* reorders (a kernel re-laid out into oneDNN's
blocked format, or its gradient back: a fixed cost per step, whatever the batch) and
*activation* reorders. Per image, the small batch against the large one shows which passes
do not shrink with the batch, and how much of a small batch's extra cost per image is
oneDNN's at all. The log's times include its own overhead: read them as shares.

Writes ``benchmarks/results/onednn_layers*.{md,json}``. Usage (idle machine, ~1 min)::

    .venv/bin/python benchmarks/onednn_layers.py [--net cnn] [--batch-sizes 2,14]
        [--precision fp32] [--steps 10] [--rounds 9] [--out benchmarks/results/onednn_layers]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
PASSES = {"forward_training": "forward", "forward_inference": "forward",
          "backward_data": "backward-data", "backward_weights": "backward-weights"}  # fmt: skip
_CONV = re.compile(r"(?:g(\d+))?mb(\d+)_(.*)")


def conv_problem(desc: str) -> tuple[str, float]:
    """oneDNN's convolution problem ``(g)mbN_ic..oc.._ih..oh..kh..`` → (the layer without its
    batch, its FLOPs per call: 2 · N · (C_in / groups) · C_out · H_out · W_out · k_h · k_w)."""
    m = _CONV.fullmatch(desc)
    if m is None:
        raise ValueError(f"not a oneDNN convolution problem: {desc!r}")
    groups, mb, layer = int(m.group(1) or 1), int(m.group(2)), m.group(3)
    d = {k: int(v) for k, v in re.findall(r"([a-z]+)(\d+)", layer)}
    ow, kw = d.get("ow", d["oh"]), d.get("kw", d["kh"])
    return layer, 2.0 * mb * d["ic"] / groups * d["oc"] * d["oh"] * ow * d["kh"] * kw


def parse_log(text: str, steps: int) -> dict[str, Any]:
    """Milliseconds per step of every primitive in a oneDNN verbose log of ``steps`` steps.

    Returns ``conv``: ``{(layer, pass): {"ms", "gflop", "impl"}}`` per step; ``weight_reorder_ms``
    (reorders whose dimensions are some logged convolution's kernel), ``activation_reorder_ms``,
    ``other_ms`` by primitive kind, and ``total_ms``."""
    conv: dict[tuple[str, str], dict[str, Any]] = {}
    reorders: list[tuple[str, float]] = []
    other: dict[str, float] = defaultdict(float)
    kernels: set[str] = set()
    for line in text.splitlines():
        f = line.strip().split(",")
        if len(f) < 6 or f[0] != "onednn_verbose" or "exec" not in f:
            continue
        i = f.index("exec")
        kind, impl, prop, desc, ms = f[i + 2], f[i + 3], f[i + 4], f[-2], float(f[-1])
        if kind == "convolution":
            layer, flop = conv_problem(desc)
            d = {k: v for k, v in re.findall(r"([a-z]+)(\d+)", layer)}
            kernels.add(f"{d['oc']}x{d['ic']}x{d['kh']}x{d.get('kw', d['kh'])}")
            row = conv.setdefault((layer, PASSES.get(prop, prop)), {"ms": 0.0, "gflop": 0.0,
                                                                    "impl": impl})  # fmt: skip
            row["ms"] += ms / steps
            row["gflop"] += flop / 1e9 / steps
        elif kind == "reorder":
            reorders.append((desc, ms / steps))
        else:
            other[kind] += ms / steps
    weight = sum(ms for desc, ms in reorders if desc in kernels)
    activation = sum(ms for desc, ms in reorders if desc not in kernels)
    total = sum(r["ms"] for r in conv.values()) + weight + activation + sum(other.values())
    return {"conv": conv, "weight_reorder_ms": weight, "activation_reorder_ms": activation,
            "other_ms": dict(other), "total_ms": total}  # fmt: skip


def median_run(steps: list[str]) -> dict[str, Any]:
    """:func:`parse_log` of each step's log, every figure the median over the steps (robust
    to a step that a shared machine slowed)."""
    runs = [parse_log(text, 1) for text in steps]
    med = statistics.median
    keys = list(dict.fromkeys(k for r in runs for k in r["conv"]))
    conv = {k: {"ms": med([r["conv"][k]["ms"] if k in r["conv"] else 0.0 for r in runs]),
                "gflop": max(r["conv"][k]["gflop"] for r in runs if k in r["conv"]),
                "impl": next(r["conv"][k]["impl"] for r in runs if k in r["conv"])}
            for k in keys}  # fmt: skip
    kinds = {k for r in runs for k in r["other_ms"]}
    return {"conv": conv,
            **{k: med([r[k] for r in runs])
               for k in ("weight_reorder_ms", "activation_reorder_ms", "total_ms")},
            "other_ms": {k: med([r["other_ms"].get(k, 0.0) for r in runs]) for k in kinds}}


def step_logs(net: str, batches: list[int], precision: str, steps: int, rounds: int,
              threads: int) -> tuple[dict[int, list[str]], dict[int, float]]:
    """oneDNN's verbose log of each of ``steps`` training steps at each batch size, the batch sizes
    taking turns, and the median wall time of ``rounds`` unlogged steps of each, also taken in
    turns (one child process: oneDNN prints from C, flushed before each step's marker)."""
    env = {**os.environ, "ONEDNN_VERBOSE": "0", "PYTHONUNBUFFERED": "1"}
    code = (
        "import ctypes, json, statistics, time, torch\n"
        "from cosmobench.train.probe import paper_step\n"
        f"torch.set_num_threads({threads}); libc = ctypes.CDLL(None); steps = {{}}\n"
        f"for b in {batches!r}:\n"
        f"    steps[b] = paper_step({net!r}, b, {precision!r}); [steps[b]() for _ in range(3)]\n"
        "walls = {b: [] for b in steps}\n"
        f"for r in range({rounds}):\n"
        "    for b in (list(steps) if r % 2 == 0 else list(steps)[::-1]):\n"
        "        t = time.perf_counter(); steps[b](); walls[b].append(time.perf_counter() - t)\n"
        "print('--- wall', json.dumps({b: statistics.median(v) for b, v in walls.items()}))\n"
        "with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):\n"
        f"    for _ in range({steps}):\n"
        "        for b in steps:\n"
        "            libc.fflush(None); print('--- batch', b, flush=True); steps[b]()\n"
        "libc.fflush(None)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise SystemExit(f"error: the profiled step failed in its child process: {last}")
    out = run.stdout
    logs: dict[int, list[list[str]]] = {b: [] for b in batches}
    walls: dict[int, float] = {}
    batch = None
    for line in out.splitlines():
        if line.startswith("--- wall"):
            walls = {int(b): t for b, t in json.loads(line.split(" ", 2)[2]).items()}
        elif line.startswith("--- batch"):
            batch = int(line.split()[2])
            logs[batch].append([])
        elif batch is not None:
            logs[batch][-1].append(line)
    return {b: ["\n".join(step) for step in v] for b, v in logs.items()}, walls


def table(net: str, runs: dict[int, dict[str, Any]]) -> list[str]:
    """Markdown rows: each convolution pass per image at every batch size, then the reorders."""
    batches = sorted(runs)
    lo, hi = batches[0], batches[-1]
    head = " | ".join(f"ms/image at {b}" for b in batches)
    lines = [f"| layer (oneDNN problem) | pass | {head} | {lo} ÷ {hi} per image | "
             + " | ".join(f"GFLOP/s at {b}" for b in batches) + " | implementation at "
             f"{hi} |", "|---|---|" + "---|" * (2 * len(batches) + 2)]  # fmt: skip
    keys = list(dict.fromkeys(k for b in batches for k in runs[b]["conv"]))
    for layer, kind in keys:
        rows = [runs[b]["conv"].get((layer, kind)) for b in batches]
        per = [r["ms"] / b if r else float("nan") for r, b in zip(rows, batches, strict=True)]
        rate = [f"{r['gflop'] / r['ms'] * 1e3:.0f}" if r else "—" for r in rows]
        impl = rows[-1]["impl"] if rows[-1] else "—"
        lines.append(f"| {layer} | {kind} | "
                     + " | ".join(f"{p:.3f}" for p in per)
                     + f" | {per[0] / per[-1]:.2f} | " + " | ".join(rate) + f" | {impl} |")
    for name, key in (("weight reorders", "weight_reorder_ms"),
                      ("activation reorders", "activation_reorder_ms")):  # fmt: skip
        per = [runs[b][key] / b for b in batches]
        dashes = " | ".join("—" for _ in batches)
        lines.append(f"| {name} | all | " + " | ".join(f"{p:.3f}" for p in per)
                     + f" | {per[0] / max(per[-1], 1e-12):.2f} | {dashes} | |")
    per = [runs[b]["total_ms"] / b for b in batches]
    lines.append("| **all oneDNN** | | " + " | ".join(f"**{p:.3f}**" for p in per)
                 + f" | **{per[0] / per[-1]:.2f}** | " + " | ".join("—" for _ in batches) + " | |")
    return lines


def main(argv: list[str] | None = None) -> None:
    from cosmobench.bench.env import load_average, script_meta, write_script_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="cnn", choices=["cnn", "bnn"])
    ap.add_argument("--batch-sizes", default="2,14")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--steps", type=int, default=10, help="logged steps per batch size")
    ap.add_argument("--rounds", type=int, default=9, help="unlogged steps timed per batch size")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "onednn_layers"))
    args = ap.parse_args(argv)
    try:
        batches = sorted({int(b) for b in args.batch_sizes.split(",")})
    except ValueError:
        raise SystemExit(
            f"error: --batch-sizes takes integers; got {args.batch_sizes!r}") from None
    if len(batches) < 2 or batches[0] < 1 or args.steps < 1 or args.rounds < 1:
        raise SystemExit("error: give at least two batch sizes >= 1, --steps and --rounds >= 1")
    start, t0 = load_average(), time.time()
    logs, walls = step_logs(args.net, batches, args.precision, args.steps, args.rounds,
                            args.threads)
    runs = {}
    for b in batches:
        runs[b] = median_run(logs[b])
        if not runs[b]["conv"]:
            raise SystemExit("error: oneDNN logged no convolution (is this torch built with it?)")
        print(f"batch {b}: {runs[b]['total_ms']:.1f} ms of oneDNN per step, "
              f"{walls[b] * 1e3:.1f} ms a step unlogged", flush=True)
    meta = script_meta("benchmarks/onednn_layers.py", start, t0, threads=args.threads,
                       precision=args.precision, net=args.net, steps=args.steps,
                       rounds=args.rounds)
    out = Path(args.out)
    write_script_json(out, meta, [
        {"batch": b, "wall_ms": walls[b] * 1e3, **{k: v for k, v in runs[b].items() if k != "conv"},
         "conv": [{"layer": k[0], "pass": k[1], **v} for k, v in runs[b]["conv"].items()]}
        for b in batches])  # fmt: skip
    lo, hi = batches[0], batches[-1]
    dnn = [runs[b]["total_ms"] / b for b in (lo, hi)]
    wall = [walls[b] * 1e3 / b for b in (lo, hi)]
    fixed = runs[lo]["weight_reorder_ms"]
    bare = [(runs[b]["total_ms"] - runs[b]["weight_reorder_ms"]) / b for b in (lo, hi)]
    lines = [
        f"# oneDNN's share of a {args.net.upper()} training step, layer by layer", "",
        f"`{meta['command']}`", "",
        f"{meta['cpu']} ({meta['capability']}), {args.threads} threads, torch {meta['torch']}, "
        f"{args.precision} eager, the trainer's step; median wall time of {args.rounds} unlogged "
        f"steps per batch size, then oneDNN's verbose log of {args.steps} more, the batch sizes "
        f"taking turns (medians over the logged steps); load average {start} before, "
        f"{meta['load_average'][1]} after; {meta['seconds']:.0f} s. Logged times carry the "
        "log's own overhead: read them as shares.", "",
        f"- whole step: {walls[lo] * 1e3:.1f} ms at batch {lo}, "
        f"{walls[hi] * 1e3:.1f} ms at {hi}: per image **{wall[0] / wall[1]:.2f}×**",
        f"- oneDNN alone per image, batch {lo} over {hi}: **{dnn[0] / dnn[1]:.2f}×** "
        f"({dnn[0]:.2f} against {dnn[1]:.2f} ms)",
        f"- weight reorders (kernels into oneDNN's blocked layout and their gradients back, a "
        f"fixed cost per step): {fixed:.2f} ms at batch {lo}, "
        f"{runs[hi]['weight_reorder_ms']:.2f} ms at {hi}; oneDNN per image without them, "
        f"{lo} over {hi}: {bare[0] / bare[1]:.2f}×",
        "", *table(args.net, runs),
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')} and .json")


if __name__ == "__main__":
    main()
