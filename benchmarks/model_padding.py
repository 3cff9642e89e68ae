"""What TensorFlow-exact 'same' padding costs: the shape CNN/BNN training step with TF's
asymmetric stride-2 padding (``F.pad`` + conv, what ``cosmobench.models`` does) against
PyTorch's symmetric ``padding=1`` (same shapes, windows shifted by one pixel).

Usage: ``python benchmarks/model_padding.py [--device cuda] [--batches 2 14 128]``.
Prints a table and writes ``benchmarks/results/model_padding_<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import cosmobench.models.layers as layers
import cosmobench.models.variational as var
from cosmobench.models import build_model

RESULTS = Path(__file__).parent / "results"


def _symmetric(x, weight, bias, stride):
    return F.conv2d(x, weight, bias, stride=stride, padding=weight.shape[-1] // 2)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_step(kind: str, batch: int, device: str, repeats: int, steps: int) -> list[float]:
    """Median-ready list of seconds per training step (forward, backward, Adam)."""
    torch.manual_seed(0)
    model = build_model(kind, {}).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 6, 64, 64, device=device)
    y = 0.3 * torch.randn(batch, 3, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model.loss(x, y, 8000).backward()
        opt.step()

    for _ in range(3):
        step()
    out = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        out.append((time.perf_counter() - t0) / steps)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", type=int, nargs="+", default=[2, 14, 128])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    tf_same = layers.same_conv2d
    rows = []
    for kind in ("cnn", "bnn"):
        for b in args.batches:
            rec = {"workload": kind, "batch": b}
            for name, fn in (("tf_same", tf_same), ("symmetric", _symmetric)):
                layers.same_conv2d = var.same_conv2d = fn
                t = time_step(kind, b, args.device, args.repeats, args.steps)
                rec[f"{name}_ms"] = 1e3 * statistics.median(t)
                rec[f"{name}_raw_s"] = t
            layers.same_conv2d = var.same_conv2d = tf_same
            rec["ratio_tf_over_symmetric"] = rec["tf_same_ms"] / rec["symmetric_ms"]
            rows.append(rec)
            print(
                f"{kind:4s} batch {b:4d}  tf-same {rec['tf_same_ms']:8.2f} ms  "
                f"symmetric {rec['symmetric_ms']:8.2f} ms  "
                f"ratio {rec['ratio_tf_over_symmetric']:.3f}"
            )
    dev = args.device
    env = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if dev.startswith("cuda") else None,
        "torch": torch.__version__,
        "loadavg": os.getloadavg(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                env["cpu"] = line.split(":", 1)[1].strip()
                break
    tag = dev.split(":")[0]
    out_dir = Path(os.environ.get("OUT", RESULTS))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"model_padding_{tag}.json").write_text(
        json.dumps({"env": env, "rows": rows}, indent=2)
    )
    md = [
        f"# TF-exact 'same' padding vs symmetric padding ({env['gpu'] or env['cpu']}, "
        f"{env['threads']} threads, load {env['loadavg'][0]:.1f})",
        "",
        f"Command: `{env['command']}`; median of {args.repeats} × {args.steps} training steps.",
        "",
        "| model | batch | TF same (ms/step) | symmetric (ms/step) | ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    md += [
        f"| {r['workload']} | {r['batch']} | {r['tf_same_ms']:.2f} | {r['symmetric_ms']:.2f} | "
        f"{r['ratio_tf_over_symmetric']:.3f} |"
        for r in rows
    ]
    (out_dir / f"model_padding_{tag}.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
