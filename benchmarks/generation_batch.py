"""Which decoder batch size generates fastest on this CPU? (``GalaxySampler(batch_size=)``)

Networks of the paper's size (random weights: the time does not depend on them), 1,000
galaxies per batch size, after a warm-up; prints a table and writes
``benchmarks/results/generation_batch.md``. The CPU default of ``GalaxySampler`` (32) comes
from this sweep.

    .venv/bin/python benchmarks/generation_batch.py [--threads 2] [--n 1000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from cosmobench.bench.env import cpu_model, load_average
from cosmobench.generate.sampler import GalaxySampler
from cosmobench.models import build_model
from cosmobench.models.normalize import BandNormalizer

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--sizes", default="8,16,32,64,128,500")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vae, flow = build_model("vae", {}), build_model("flow", {})
    norm = BandNormalizer([1e3] * 6)
    start = load_average()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        sampler = GalaxySampler(vae, flow, norm, batch_size=size)
        with torch.inference_mode():
            sampler(64, seed=0)
            t0 = time.perf_counter()
            sampler(args.n, seed=1)
            rows.append((size, args.n / (time.perf_counter() - t0)))
    lines = ["# Generation on CPU: images per second by decoder batch size", "",
             f"`python benchmarks/generation_batch.py --threads {args.threads} --n {args.n}` "
             f"on {cpu_model()}, {args.threads} threads; load average {start} before, "
             f"{load_average()} after.", "", "| batch size | images/s |", "|---:|---:|"]
    lines += [f"| {size} | {rate:.1f} |" for size, rate in rows]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "generation_batch.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
