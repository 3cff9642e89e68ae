"""Scaling: streamed vs in-memory training, DDP, Dask simulation, rank-sharded generation.

What is measured (on this machine; every figure with its parallel efficiency where a
worker count changes):

* ``train-memory`` / ``train-stream`` -- ``cosmobench train cnn`` on the same store, in
  memory and streamed (``--shuffle-buffer 128 --loader-workers 1``), at the paper's batch
  sizes 2, 4, 8, 10, 12, 14: images/s of the second epoch (the first warms up), and the
  ratio stream / memory (the acceptance asks >= 0.9).
* ``ddp`` -- ``torchrun --nproc-per-node 1`` vs ``2`` (gloo, CPU) of the same training
  (batch 8 per process; each process gets ``cores / N`` threads). Efficiency =
  rate(2) / (2 x rate(1)).
* ``simulate`` -- ``simulate --workers 1`` vs ``2`` (process pool), and ``--scheduler local``
  with 1 and 2 Dask workers (cluster start-up included: what a user waits for).
* ``generate`` -- ``torchrun --nproc-per-node 1`` vs ``2 -m cosmobench generate`` into one
  store (rank-sharded chunks) from a small VAE + flow trained here (their quality does not
  change the cost).
* ``read`` -- read bandwidth of the store (decoded MB/s, ``read_chunks`` with 0, 1, 2
  workers) and its write bandwidth (building it).
* ``rss`` -- peak resident memory of one streamed epoch (loader alone, window 256) against
  the store size, next to loading the same store in memory.

Then a projection on paper for 8 GPUs and 64 nodes (read bandwidth, all-reduce of the
1.5 M / 2.7 M parameters, generation write bandwidth), written with the numbers it rests
on into ``benchmarks/results/scaling.{json,md}``.

    python benchmarks/scaling.py            # about 15 min on an idle 2-core machine
    python benchmarks/scaling.py --quick    # a smoke test of every part (~3 min)
    python benchmarks/scaling.py --parts train   # measure one part again, keep the others

The measurements are :mod:`cosmobench.bench.scaling`'s, the projection and the Markdown
:mod:`cosmobench.bench.scaling_report`'s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from cosmobench.bench.scaling import (
    PAPER_BATCHES,
    bench_ddp,
    bench_generate,
    bench_read,
    bench_rss,
    bench_simulate,
    bench_training,
    blob_store,
    machine,
)
from cosmobench.bench.scaling_report import projection, scaling_markdown
from cosmobench.errors import CosmobenchError

RESULTS = Path(__file__).parent / "results"
PARTS = ("read", "train", "ddp", "simulate", "generate", "rss")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--n-train", type=int, default=768, help="galaxies of the training store")
    ap.add_argument(
        "--train-repeats",
        type=int,
        default=1,
        help="rounds of the three interleaved training runs per batch size (medians)",
    )
    ap.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated among {', '.join(PARTS)}; the others are kept from the "
        "existing results file (the projection is recomputed)",
    )
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; choose among {', '.join(PARTS)}")
    sys.stdout.reconfigure(line_buffering=True)  # progress lines as they come
    q = args.quick
    n_train = 96 if q else args.n_train
    batches = (2, 14) if q else PAPER_BATCHES
    cores = os.cpu_count() or 1
    stem = "scaling-quick" if q else "scaling"
    old_file = args.out / f"{stem}.json"
    res: dict[str, Any] = {}
    if set(parts) != set(PARTS):  # keep the other parts' measurements
        if not old_file.exists():
            ap.error(f"--parts needs the earlier results {old_file} for the other parts")
        res = json.loads(old_file.read_text())
        res.pop("command", None)
    res.update(machine=machine(), quick=q)
    work = Path(tempfile.mkdtemp(prefix="cosmobench-scaling-"))
    try:
        data = work / "train.zarr"
        write_s = blob_store(data, n_train, 64)
        print(f"store of {n_train} galaxies in {work}")
        runs = {
            "read": lambda: bench_read(data, n_train, write_s),
            "train": lambda: bench_training(work, data, batches, cores, repeats=args.train_repeats),
            "ddp": lambda: bench_ddp(work, data, cores),
            "simulate": lambda: bench_simulate(work, 64 if q else 384),
            "generate": lambda: bench_generate(work, data, 64 if q else 512, cores),
            "rss": lambda: bench_rss(work, (256, 512) if q else (500, 1000, 2000, 4000)),
        }
        for name in PARTS:
            if name in parts:
                res[name] = runs[name]()
        res["projection"] = projection(res)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["machine"]["load_after"] = os.getloadavg()[0]
    res["machine"]["peak_rss_MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cmd = "python benchmarks/scaling.py" + (" --quick" if q else "")
    if set(parts) != set(PARTS):
        cmd += f" --parts {','.join(parts)}"
        res["parts_measured_last"] = parts
    if args.n_train != 768 and not q:
        cmd += f" --n-train {args.n_train}"
    if args.train_repeats != 1:
        cmd += f" --train-repeats {args.train_repeats}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps({"command": cmd, **res}, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(scaling_markdown(res, cmd))
    print(f"wrote {args.out / stem}.json and .md")


if __name__ == "__main__":
    try:
        main()
    except CosmobenchError as e:  # a measured command failed: its output, no traceback
        sys.exit(str(e))
