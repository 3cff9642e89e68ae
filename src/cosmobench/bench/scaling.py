"""Scaling measurements: streamed vs in-memory training, DDP, parallel simulation and
generation, store bandwidth and peak memory (what ``benchmarks/scaling.py`` runs).

Each ``bench_*`` runs the real command lines in fresh processes (``cosmobench train``,
``torchrun`` with the gloo backend, ``cosmobench generate``) or the library calls
(:func:`cosmobench.sim.simulate`, :func:`cosmobench.train.stream.read_chunks`) and returns
rates; where a worker count changes, the parallel efficiency rate(N) / (N x rate(1)). The
training data is a store of noisy round blobs (:func:`blob_store`): the cost of training and
reading does not depend on what the pixels show. The projection to many GPUs and the
Markdown report are :mod:`cosmobench.bench.scaling_report`'s; docs/scaling.md reads them.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import cosmobench
from cosmobench.bench.env import cpu_model
from cosmobench.errors import CosmobenchError

__all__ = [
    "GALAXY_BYTES",
    "PAPER_BATCHES",
    "PARAMS",
    "bench_ddp",
    "bench_generate",
    "bench_read",
    "bench_rss",
    "bench_simulate",
    "bench_training",
    "blob_store",
    "machine",
]

#: The paper's training batch sizes (Arcelin 2021, arXiv:2106.02465, Sect. 3.2, Fig. 2).
PAPER_BATCHES = (2, 4, 8, 10, 12, 14)
MB = 1e6
#: Bytes of one float32 image array of one galaxy (6 bands of 64 x 64 pixels).
GALAXY_BYTES = 6 * 64 * 64 * 4
#: Trainable parameters of the shape CNN and BNN (Keras count, as the paper's).
PARAMS = {"cnn": 1_517_217, "bnn": 2_726_241}


def machine() -> dict[str, Any]:
    """CPU model, cores, Python version and the 1-minute load average before measuring."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_before": os.getloadavg()[0],
    }


def child_env(threads: int) -> dict[str, str]:
    """The environment of a measured child process: ``threads`` OpenMP/MKL threads, and
    this cosmobench first on ``PYTHONPATH``."""
    src = str(Path(cosmobench.__file__).resolve().parents[1])
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


def run_timed(cmd: list[str], threads: int) -> float:
    """Run ``cmd``; its wall seconds. A failure raises with the end of its stderr."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=child_env(threads), capture_output=True, text=True)
    if p.returncode:
        raise CosmobenchError(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return time.perf_counter() - t0


def du(path: Path) -> int:
    """Bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


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
    """Images/s of a training run after its first epoch (which warms up): all the images of
    the later epochs over their seconds (its ``metrics.jsonl``)."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("seconds")]
    later = rows[1:] or rows
    return sum(r["images"] for r in later) / sum(r["seconds"] for r in later)


def train_cmd(
    data: Path, out: Path, batch: int, mode: str, epochs: int = 2, workers: int = 1
) -> list[str]:
    """Arguments after ``python`` of ``cosmobench train cnn`` on ``data`` (no validation split,
    ``mode`` ``memory`` or ``stream`` with a 128-galaxy shuffle buffer and ``workers`` loader
    processes)."""
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
        str(workers),
        "--no-progress",
    ]


def bench_training(
    work: Path,
    data: Path,
    batches: tuple[int, ...],
    cores: int,
    epochs: int = 3,
    repeats: int = 1,
) -> list[dict]:
    """CNN training in memory and streamed (reading in the training process, and with one
    loader process) at each batch size: images/s after the first epoch (which warms up),
    and the ratios streamed / in memory. The three runs of a batch size are interleaved,
    ``repeats`` rounds of them; each rate is the median over the rounds and each ratio the
    median of the rounds' own ratios (a round's runs are minutes apart, not a repeat's)."""
    rows = []
    variants = {"memory": ("memory", 0), "stream0": ("stream", 0), "stream1": ("stream", 1)}
    for b in batches:
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(repeats):
            for name, (mode, workers) in variants.items():
                out = work / f"train-{name}-{b}"
                cmd = [sys.executable, *train_cmd(data, out, b, mode, epochs, workers)]
                run_timed(cmd, cores)
                rates[name].append(last_rate(out))
                shutil.rmtree(out)
        each0 = [s / m for s, m in zip(rates["stream0"], rates["memory"], strict=True)]
        each1 = [s / m for s, m in zip(rates["stream1"], rates["memory"], strict=True)]
        rows.append(
            {
                "batch_size": b,
                "repeats": repeats,
                "memory_images_per_s": statistics.median(rates["memory"]),
                "stream0_images_per_s": statistics.median(rates["stream0"]),
                "stream_images_per_s": statistics.median(rates["stream1"]),
                "stream0_over_memory": statistics.median(each0),
                "stream_over_memory": statistics.median(each1),
                "stream0_over_memory_each": each0,
                "stream_over_memory_each": each1,
            }
        )
        print(
            f"  train batch {b:2d}: memory {rows[-1]['memory_images_per_s']:7.1f}  stream "
            f"(0 workers) {rows[-1]['stream0_images_per_s']:7.1f}  stream (1 worker) "
            f"{rows[-1]['stream_images_per_s']:7.1f} img/s  ratios "
            f"{', '.join(f'{r:.2f}' for r in each0)} (0 workers); "
            f"{', '.join(f'{r:.2f}' for r in each1)} (1 worker)"
        )
    return rows


def bench_ddp(work: Path, data: Path, cores: int) -> dict:
    """``torchrun`` with 1 and 2 gloo processes (batch 8 each, ``cores / N`` threads each):
    images/s of all ranks and the efficiency rate(2) / (2 x rate(1))."""
    rates = {}
    for n in (1, 2):
        out = work / f"ddp-{n}"
        run_timed(
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
    """``simulate`` of ``n`` galaxies with 1 and 2 pool workers and on a local Dask cluster of
    1 and 2 workers (its start-up included): galaxies/s and the efficiencies."""
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
    """Train a small VAE and flow (1 epoch: their quality does not change the cost), then
    ``torchrun cosmobench generate`` of ``n`` galaxies into one store with 1 and 2 ranks
    (rank-sharded chunks): galaxies/s (start-up included), MB written, efficiency."""
    vae, flow = work / "vae", work / "flow"
    common = ["--epochs", "1", "--batch-size", "32", "--no-progress", "--data", str(data)]
    run_timed(
        [sys.executable, "-m", "cosmobench", "train", "vae", "--out", str(vae), *common], cores
    )
    run_timed(
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
        dt = run_timed(
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


def bench_read(data: Path, n: int, write_s: float) -> dict:
    """Decoded read bandwidth of the ``noisy`` images with 0, 1, 2 loader workers, the size
    on disk, and the write bandwidth of both image arrays (from ``write_s``)."""
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
    """Peak resident memory of one streamed epoch (window 256, 1 worker: main process and
    worker) and of loading the store in memory, for stores of each size."""
    rows = []
    for n in sizes:
        path = work / f"rss-{n}.zarr"
        blob_store(path, n, 64, seed=n)
        row: dict[str, Any] = {"n": n, "images_MB": n * GALAXY_BYTES / MB}
        for mode in ("stream", "memory"):
            p = subprocess.run(
                [sys.executable, "-c", _RSS, str(path), str(n), mode],
                env=child_env(1),
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
