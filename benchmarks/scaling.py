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

    python benchmarks/scaling.py            # about 9-11 min on an idle 2-core machine
    python benchmarks/scaling.py --quick    # a smoke test of every part (~3 min)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
PAPER_BATCHES = (2, 4, 8, 10, 12, 14)
MB = 1e6
GALAXY_BYTES = 6 * 64 * 64 * 4  # one float32 image array of one galaxy
PARAMS = {"cnn": 1_517_217, "bnn": 2_726_241}


def machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_before": os.getloadavg()[0],
    }


def env(threads: int) -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


def run(cmd: list[str], threads: int) -> float:
    """Run ``cmd``; wall seconds (a failure stops the benchmark with its output)."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env(threads), capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return time.perf_counter() - t0


def blob_store(path: Path, n: int, chunk: int, seed: int = 0) -> float:
    """A store of ``n`` noisy round blobs (cheap to make; the cost of training and reading
    does not depend on what the pixels show); returns the write seconds."""
    from cosmobench.store import create_or_resume

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64] - 31.5
    blob = np.exp(-(xx**2 + yy**2) / 18.0).astype(np.float32)
    spec = {"index": "int64", "e1": "float32", "e2": "float32", "redshift": "float32"}
    t0 = time.perf_counter()
    w = create_or_resume(
        path,
        n,
        chunk,
        "simulation",
        {"bench": "scaling", "seed": seed},
        spec,
        ("noisy", "noiseless"),
    )
    for k in range(w.n_chunks):
        a, b = w.chunk_range(k)
        m = b - a
        clean = rng.uniform(500, 5000, (m, 6, 1, 1)).astype(np.float32) * blob
        noisy = clean + rng.normal(0, 30, clean.shape).astype(np.float32)
        w.write_chunk(
            k,
            {"noisy": noisy, "noiseless": clean},
            {
                "index": np.arange(a, b),
                "e1": rng.normal(0, 0.2, m),
                "e2": rng.normal(0, 0.2, m),
                "redshift": rng.uniform(0.1, 2, m),
            },
        )
    w.finalize()
    return time.perf_counter() - t0


def last_rate(run_dir: Path) -> float:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return float(rows[-1]["images_per_s"])


def train_cmd(data: Path, out: Path, batch: int, mode: str, epochs: int = 2) -> list[str]:
    return [
        "-m",
        "cosmobench",
        "train",
        "cnn",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--batch-size",
        str(batch),
        "--val-fraction",
        "0",
        "--data-mode",
        mode,
        "--shuffle-buffer",
        "128",
        "--loader-workers",
        "1",
        "--no-progress",
    ]


def bench_training(work: Path, data: Path, batches: tuple[int, ...], cores: int) -> list[dict]:
    rows = []
    for b in batches:
        rates = {}
        for mode in ("memory", "stream"):
            out = work / f"train-{mode}-{b}"
            run([sys.executable, *train_cmd(data, out, b, mode)], cores)
            rates[mode] = last_rate(out)
            shutil.rmtree(out)
        rows.append(
            {
                "batch_size": b,
                "memory_images_per_s": rates["memory"],
                "stream_images_per_s": rates["stream"],
                "stream_over_memory": rates["stream"] / rates["memory"],
            }
        )
        print(
            f"  train batch {b:2d}: memory {rates['memory']:7.1f}  stream "
            f"{rates['stream']:7.1f} img/s  ratio {rows[-1]['stream_over_memory']:.2f}"
        )
    return rows


def bench_ddp(work: Path, data: Path, cores: int) -> dict:
    rates = {}
    for n in (1, 2):
        out = work / f"ddp-{n}"
        run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={n}",
                "-m",
                "cosmobench",
                "--",
                *train_cmd(data, out, 8, "memory")[2:],
            ],
            max(1, cores // n),
        )
        rates[n] = last_rate(out)  # images of all ranks / rank 0's epoch seconds
        shutil.rmtree(out)
    eff = rates[2] / (2 * rates[1])
    print(
        f"  torchrun 1 -> 2 processes: {rates[1]:.1f} -> {rates[2]:.1f} img/s, efficiency {eff:.2f}"
    )
    return {
        "batch_per_process": 8,
        "images_per_s": {str(k): v for k, v in rates.items()},
        "efficiency": eff,
    }


def bench_simulate(work: Path, n: int) -> dict:
    from cosmobench.sim import SimConfig, simulate

    cfg = SimConfig(n=n, seed=5, chunk_size=max(8, n // 16))
    out: dict[str, Any] = {"n": n, "chunk_size": cfg.chunk_size}
    for label, kw in (
        ("workers-1", {"workers": 1}),
        ("workers-2", {"workers": 2}),
        ("dask-local-1", {"workers": 1, "scheduler": "local"}),
        ("dask-local-2", {"workers": 2, "scheduler": "local"}),
    ):
        path = work / f"sim-{label}.zarr"
        t0 = time.perf_counter()
        simulate(cfg, path, progress=False, **kw)
        dt = time.perf_counter() - t0
        shutil.rmtree(path)
        out[label] = {"seconds": dt, "galaxies_per_s": n / dt}
        print(f"  simulate {label}: {n / dt:.1f} galaxies/s")
    out["efficiency_workers"] = out["workers-2"]["galaxies_per_s"] / (
        2 * out["workers-1"]["galaxies_per_s"]
    )
    out["efficiency_dask"] = out["dask-local-2"]["galaxies_per_s"] / (
        2 * out["dask-local-1"]["galaxies_per_s"]
    )
    return out


def bench_generate(work: Path, data: Path, n: int, cores: int) -> dict:
    vae, flow = work / "vae", work / "flow"
    common = ["--epochs", "1", "--batch-size", "32", "--no-progress", "--data", str(data)]
    run([sys.executable, "-m", "cosmobench", "train", "vae", "--out", str(vae), *common], cores)
    run(
        [
            sys.executable,
            "-m",
            "cosmobench",
            "train",
            "flow",
            "--vae",
            str(vae),
            "--out",
            str(flow),
            *common,
        ],
        cores,
    )
    out: dict[str, Any] = {"n": n}
    for ranks in (1, 2):
        store = work / f"gen-{ranks}.zarr"
        dt = run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={ranks}",
                "-m",
                "cosmobench",
                "--",
                "generate",
                "--vae",
                str(vae),
                "--flow",
                str(flow),
                "--n",
                str(n),
                "--out",
                str(store),
                "--chunk-size",
                "64",
                "--no-progress",
            ],
            max(1, cores // ranks),
        )
        out[f"ranks-{ranks}"] = {
            "seconds": dt,
            "galaxies_per_s": n / dt,
            "written_MB": du(store) / MB,
        }
        shutil.rmtree(store)
        print(f"  generate {ranks} rank(s): {n / dt:.1f} galaxies/s (start-up included)")
    out["efficiency"] = out["ranks-2"]["galaxies_per_s"] / (2 * out["ranks-1"]["galaxies_per_s"])
    return out


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_read(data: Path, n: int, write_s: float) -> dict:
    from cosmobench.store import open_dataset
    from cosmobench.train.stream import read_chunks

    ds = open_dataset(data)
    out: dict[str, Any] = {
        "n": n,
        "store_MB_on_disk": du(data) / MB,
        "write_MB_per_s": 2 * n * GALAXY_BYTES / MB / write_s,
    }
    for workers in (0, 1, 2):
        t0 = time.perf_counter()
        rows = sum(len(c) for _, c in read_chunks(ds, "noisy", workers))
        dt = time.perf_counter() - t0
        out[f"read_MB_per_s_workers_{workers}"] = rows * GALAXY_BYTES / MB / dt
        out[f"read_galaxies_per_s_workers_{workers}"] = rows / dt
    print(
        f"  read: {out['read_MB_per_s_workers_0']:.0f} MB/s decoded (1 process), write "
        f"{out['write_MB_per_s']:.0f} MB/s"
    )
    return out


_RSS = """
import resource, sys, numpy as np, torch
from cosmobench.train.stream import StreamSplit
path, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "stream":
    pos = np.arange(n)
    split = StreamSplit(path, pos, pos, 64, shuffle_buffer=256, workers=1)
    for x, _ in split.epoch_batches(0, 0, 14, torch.device("cpu")):
        pass
else:
    from cosmobench.store import open_dataset
    x = open_dataset(path).tensor("noisy")
self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(self, kids)
"""


def bench_rss(work: Path, sizes: tuple[int, ...]) -> list[dict]:
    rows = []
    for n in sizes:
        path = work / f"rss-{n}.zarr"
        blob_store(path, n, 64, seed=n)
        row: dict[str, Any] = {"n": n, "images_MB": n * GALAXY_BYTES / MB}
        for mode in ("stream", "memory"):
            p = subprocess.run(
                [sys.executable, "-c", _RSS, str(path), str(n), mode],
                env=env(1),
                capture_output=True,
                text=True,
                check=True,
            )
            me, kids = (int(v) / 1024 for v in p.stdout.split())
            row[f"{mode}_peak_MB"] = me + (kids if mode == "stream" else 0)
            row[f"{mode}_main_MB"], row[f"{mode}_worker_MB"] = me, kids
        shutil.rmtree(path)
        rows.append(row)
        print(
            f"  rss n={n}: images {row['images_MB']:.0f} MB, streamed peak "
            f"{row['stream_main_MB']:.0f} + {row['stream_worker_MB']:.0f} MB, in memory "
            f"{row['memory_peak_MB']:.0f} MB"
        )
    return rows


def projection(res: dict[str, Any]) -> dict[str, Any]:
    """Where the time goes at 8 GPUs and 64 nodes, from the numbers measured here and the
    paper's V100 timings (Arcelin 2021, Table/Fig. 3: 442.9 s for 100 epochs of 8,000
    images at batch 14, i.e. 1,806 images/s; CosmoDC2 generation at ~1.5e3 images/s)."""
    v100_train = 100 * 8000 / 442.94  # images/s, CNN, batch 14
    gen_rate = 2.26e9 / (18 * 86400)  # images/s, one V100 ("less than 18 days")
    read_1 = res["read"]["read_MB_per_s_workers_0"]  # decoded MB/s, one process
    out: dict[str, Any] = {
        "v100_train_images_per_s": v100_train,
        "v100_generate_images_per_s": gen_rate,
        "read_MB_per_s_per_process": read_1,
    }
    for gpus, label, link_GBps, lat_us in (
        (8, "8 GPUs (one node, NVLink)", 150.0, 10.0),
        (512, "64 nodes x 8 GPUs (InfiniBand HDR)", 25.0, 5.0),
    ):
        need = gpus * v100_train * GALAXY_BYTES / MB  # MB/s of decoded images
        p: dict[str, Any] = {
            "gpus": gpus,
            "read_MB_per_s_needed": need,
            "loader_processes_needed": need / read_1,
        }
        for kind, params in PARAMS.items():
            size = params * 4
            ring = 2 * (gpus - 1) / gpus * size / (link_GBps * 1e9) + 2 * (gpus - 1) * lat_us * 1e-6
            steps = {b: b / v100_train for b in (2, 14)}
            p[f"allreduce_{kind}_ms"] = ring * 1e3
            p[f"allreduce_{kind}_share_of_step_b14"] = ring / (ring + steps[14])
            p[f"allreduce_{kind}_share_of_step_b2"] = ring / (ring + steps[2])
        p["generate_write_GB_per_s"] = gpus * gen_rate * 2 * GALAXY_BYTES / 1e9
        p["billion_galaxies_hours"] = 1e9 / (gpus * gen_rate) / 3600
        out[label] = p
    return out


def markdown(res: dict[str, Any], cmd: str) -> str:
    m = res["machine"]
    L = [
        f"# Scaling on {m['cpu']} ({m['cores']} cores)",
        "",
        f"Command: `{cmd}`; load average before {m['load_before']:.2f}, after "
        f"{m.get('load_after', float('nan')):.2f}. Made by `benchmarks/scaling.py`.",
        "",
        "## Streamed vs in-memory training (CNN, images/s, second epoch)",
        "",
        "| batch | in memory | streamed | streamed / memory |",
        "|---|---|---|---|",
    ]
    for r in res["train"]:
        L.append(
            f"| {r['batch_size']} | {r['memory_images_per_s']:.1f} | "
            f"{r['stream_images_per_s']:.1f} | {r['stream_over_memory']:.2f} |"
        )
    d = res["ddp"]
    L += [
        "",
        "## Parallel runs",
        "",
        "| what | 1 | 2 | parallel efficiency |",
        "|---|---|---|---|",
        f"| torchrun CNN training, gloo (images/s) | {d['images_per_s']['1']:.1f} | "
        f"{d['images_per_s']['2']:.1f} | {d['efficiency']:.2f} |",
    ]
    s = res["simulate"]
    L.append(
        f"| simulate --workers (galaxies/s) | {s['workers-1']['galaxies_per_s']:.1f} | "
        f"{s['workers-2']['galaxies_per_s']:.1f} | {s['efficiency_workers']:.2f} |"
    )
    L.append(
        f"| simulate --scheduler local (galaxies/s) | "
        f"{s['dask-local-1']['galaxies_per_s']:.1f} | "
        f"{s['dask-local-2']['galaxies_per_s']:.1f} | {s['efficiency_dask']:.2f} |"
    )
    g = res["generate"]
    L.append(
        f"| generate, torchrun ranks (galaxies/s) | {g['ranks-1']['galaxies_per_s']:.1f} "
        f"| {g['ranks-2']['galaxies_per_s']:.1f} | {g['efficiency']:.2f} |"
    )
    r = res["read"]
    L += [
        "",
        "## Store bandwidth",
        "",
        f"Decoded read of `noisy` (LZ4 Blosc): {r['read_MB_per_s_workers_0']:.0f} MB/s in "
        f"one process, {r['read_MB_per_s_workers_1']:.0f} MB/s with 1 loader worker "
        "(its start-up included), "
        f"{r['read_MB_per_s_workers_2']:.0f} MB/s with 2; write (both image arrays, "
        f"compressed): {r['write_MB_per_s']:.0f} MB/s.",
        "",
        "## Peak memory vs store size (one streamed epoch, window 256, 1 worker)",
        "",
        "| galaxies | images (MB) | streamed: main + worker (MB) | in memory (MB) |",
        "|---|---|---|---|",
    ]
    for x in res["rss"]:
        L.append(
            f"| {x['n']} | {x['images_MB']:.0f} | {x['stream_main_MB']:.0f} + "
            f"{x['stream_worker_MB']:.0f} | {x['memory_peak_MB']:.0f} |"
        )
    L += [
        "",
        "The worker's peak RSS counts the pages it shares with the training process since "
        "the fork; what matters is that neither column grows with the store.",
    ]
    p = res["projection"]
    L += [
        "",
        "## Projection (on paper)",
        "",
        f"Rests on: the paper's V100 CNN training rate {p['v100_train_images_per_s']:.0f} "
        f"images/s (batch 14) and generation rate {p['v100_generate_images_per_s']:.0f} "
        f"images/s (CosmoDC2 in 18 days); one image array = {GALAXY_BYTES / 1e3:.0f} kB; "
        f"the read rate of one process measured above; ring all-reduce time "
        "2(W-1)/W x bytes / link + 2(W-1) x latency (NVLink 150 GB/s, 10 us; "
        "InfiniBand HDR 25 GB/s, 5 us).",
        "",
        "| | read needed (MB/s) | loader processes | all-reduce CNN / BNN (ms) | "
        "share of a batch-14 step (CNN / BNN) | share at batch 2 (CNN) | "
        "generation write (GB/s) | 10^9 galaxies (h) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label in ("8 GPUs (one node, NVLink)", "64 nodes x 8 GPUs (InfiniBand HDR)"):
        q = p[label]
        L.append(
            f"| {label} | {q['read_MB_per_s_needed']:.0f} | "
            f"{q['loader_processes_needed']:.1f} | {q['allreduce_cnn_ms']:.2f} / "
            f"{q['allreduce_bnn_ms']:.2f} | {q['allreduce_cnn_share_of_step_b14']:.0%} / "
            f"{q['allreduce_bnn_share_of_step_b14']:.0%} | "
            f"{q['allreduce_cnn_share_of_step_b2']:.0%} | "
            f"{q['generate_write_GB_per_s']:.1f} | {q['billion_galaxies_hours']:.1f} |"
        )
    L += ["", "Reading: see docs/scaling.md for what these numbers imply."]
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--n-train", type=int, default=384, help="galaxies of the training store")
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress lines as they come
    q = args.quick
    n_train = 96 if q else args.n_train
    batches = (2, 14) if q else PAPER_BATCHES
    cores = os.cpu_count() or 1
    res: dict[str, Any] = {"machine": machine(), "quick": q}
    work = Path(tempfile.mkdtemp(prefix="cosmobench-scaling-"))
    try:
        data = work / "train.zarr"
        write_s = blob_store(data, n_train, 64)
        print(f"store of {n_train} galaxies in {work}")
        res["read"] = bench_read(data, n_train, write_s)
        res["train"] = bench_training(work, data, batches, cores)
        res["ddp"] = bench_ddp(work, data, cores)
        res["simulate"] = bench_simulate(work, 64 if q else 384)
        res["generate"] = bench_generate(work, data, 64 if q else 512, cores)
        res["rss"] = bench_rss(work, (256, 512) if q else (500, 1000, 2000, 4000))
        res["projection"] = projection(res)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["machine"]["load_after"] = os.getloadavg()[0]
    res["machine"]["peak_rss_MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cmd = "python benchmarks/scaling.py" + (" --quick" if q else "")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "scaling-quick" if q else "scaling"
    (args.out / f"{stem}.json").write_text(json.dumps({"command": cmd, **res}, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(res, cmd))
    print(f"wrote {args.out / stem}.json and .md")


if __name__ == "__main__":
    main()
