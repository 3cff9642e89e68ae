"""Simulation throughput: the `simulate` pipeline with 1 and 2 workers against a bare GalSim loop.

What is timed (galaxies per second, wall clock, median of ``--repeats``):

* ``galsim-bare``   -- the irreducible GalSim work: for the same galaxies (drawn from the
  builtin population beforehand, untimed), each component convolved with the 0.65"
  Kolmogorov PSF and drawn once at 64x64, 0.2"/px, then summed into six bands with their
  fluxes. One process.
* ``pipeline-1w``   -- ``cosmobench.sim.simulate`` end to end in one process: population
  draws, drawing, Poisson noise, SNR, HSM KSB + REGAUSS, writing the Zarr store.
* ``pipeline-1w-nohsm`` -- the same with ``measure=False`` (the HSM share).
* ``pipeline-2w``   -- ``simulate(..., workers=2)``: two worker processes (their start-up is
  included: this is what a user waits for).
* ``galsim-bare-2p`` -- the bare loop split over two processes started together: the scaling
  GalSim itself gets from the cores free during this run (the machine is shared), against
  which the pipeline's 1 -> 2 worker scaling is read.

Repeats are interleaved across the modes. Reported: the pipeline's overhead over bare
GalSim (``bare rate / pipeline rate``) and the 1 -> 2 worker scaling
(``rate(2w) / rate(1w)``). The machine is shared: the load average before and after is
recorded, and only ratios measured in the same run are compared.

    python benchmarks/simulate.py                 # n = 2000, 3 repeats
    python benchmarks/simulate.py --n 500 --repeats 1

Writes ``benchmarks/results/simulate.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import galsim
import numpy as np

from cosmobench.sim import SimConfig, Simulator, simulate
from cosmobench.survey import mag_to_electrons

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
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
        "threads": os.cpu_count(),
        "python": platform.python_version(),
        "galsim": galsim.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def bare_loop(galaxies, fluxes, psf, stamp=64, scale=0.2) -> np.ndarray:
    """Draw the same profiles the pipeline draws: one FFT drawing per component, six bands."""
    out = np.empty((len(galaxies), 6, stamp, stamp), np.float32)
    for g, (gal, flux) in enumerate(zip(galaxies, fluxes, strict=True)):
        acc = np.zeros((6, stamp, stamp))
        for c, comp in enumerate(gal.components):
            img = (
                galsim.Convolve(comp.profile, psf).drawImage(nx=stamp, ny=stamp, scale=scale).array
            )
            acc += flux[c][:, None, None] * img
        out[g] = acc
    return out


def bare_case(n: int, seed: int, lo: int = 0, hi: int | None = None):
    """Galaxies ``lo..hi-1`` (drawn untimed) and a callable drawing them in a bare GalSim loop."""
    sim = Simulator(SimConfig(n=n, seed=seed))
    galaxies = [sim.population.draw(sim.rng(i, 0)) for i in range(lo, n if hi is None else hi)]
    fluxes = [
        mag_to_electrons(np.stack([c.mag for c in g.components]), sim.constants, sim.exposure)
        for g in galaxies
    ]
    psf = galsim.Kolmogorov(fwhm=0.65)
    bare_loop(galaxies[:20], fluxes[:20], psf)  # warm-up (GalSim caches)

    def run() -> None:
        bare_loop(galaxies, fluxes, psf)

    return run


def _bare_half(n: int, seed: int, lo: int, hi: int, barrier, queue) -> None:
    run = bare_case(n, seed, lo, hi)
    barrier.wait()  # both processes start drawing together
    t0 = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    run()
    queue.put((t0, time.perf_counter()))


def bare_2p_case(n: int, seed: int):
    """The bare loop split over two processes: how much GalSim itself scales here, now."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")

    def run() -> float:
        barrier, queue = ctx.Barrier(2), ctx.Queue()
        halves = [(0, n // 2), (n // 2, n)]
        procs = [
            ctx.Process(target=_bare_half, args=(n, seed, lo, hi, barrier, queue))
            for lo, hi in halves
        ]
        for p in procs:
            p.start()
        spans = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        return max(t1 for _, t1 in spans) - min(t0 for t0, _ in spans)

    return run


def pipeline_case(n: int, seed: int, workers: int, measure: bool):
    """A callable running ``simulate`` into a fresh temporary store (deleted afterwards)."""
    cfg = SimConfig(n=n, seed=seed, measure=measure)
    Simulator(SimConfig(n=1)).chunk(0, 1)  # warm-up: imports and colour tables

    def run() -> None:
        tmp = Path(tempfile.mkdtemp(prefix="cosmobench-bench-"))
        try:
            simulate(cfg, tmp / "d.zarr", workers=workers, progress=False)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="galaxies per timed run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    load_before = os.getloadavg()
    cases = {
        "galsim-bare": bare_case(args.n, args.seed),
        "galsim-bare-2p": bare_2p_case(args.n, args.seed),
        "pipeline-1w": pipeline_case(args.n, args.seed, 1, True),
        "pipeline-1w-nohsm": pipeline_case(args.n, args.seed, 1, False),
        "pipeline-2w": pipeline_case(args.n, args.seed, 2, True),
    }
    # Repeats interleaved across modes, so that a change of load on this shared machine hits
    # every mode alike.
    raw: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            span = fn()  # the 2-process bare loop times itself (set-up excluded)
            raw[name].append(span if span is not None else time.perf_counter() - t0)
    records = []
    for name, times in raw.items():
        med = float(np.median(times))
        rec = {
            "mode": name,
            "workers": 2 if name.endswith(("2w", "2p")) else 1,
            "n": args.n,
            "times_s": [round(t, 4) for t in times],
            "median_s": round(med, 4),
            "iqr_s": round(float(np.subtract(*np.percentile(times, [75, 25]))), 4),
            "galaxies_per_s": round(args.n / med, 1),
            "ms_per_galaxy": round(1000 * med / args.n, 3),
        }
        records.append(rec)
        rate, ms = rec["galaxies_per_s"], rec["ms_per_galaxy"]
        print(f"{name:20s} {rate:8.1f} galaxies/s  {ms:7.3f} ms/galaxy")
    rate = {r["mode"]: r["galaxies_per_s"] for r in records}
    ratios = {
        "overhead_pipeline_1w_vs_bare": round(rate["galsim-bare"] / rate["pipeline-1w"], 3),
        "overhead_pipeline_1w_nohsm_vs_bare": round(
            rate["galsim-bare"] / rate["pipeline-1w-nohsm"], 3
        ),
        "scaling_2w_vs_1w": round(rate["pipeline-2w"] / rate["pipeline-1w"], 3),
        "scaling_bare_2p_vs_1p": round(rate["galsim-bare-2p"] / rate["galsim-bare"], 3),
    }
    result = {
        "schema": "cosmobench.benchmark.simulate",
        "schema_version": 1,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "settings": {"population": "builtin", "psf": "kolmogorov 0.65", "stamp": 64, "bands": 6},
        "records": records,
        "ratios": ratios,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "simulate.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Simulation throughput",
        "",
        f"`{result['command']}` on {result['machine']['cpu']} ({result['machine']['threads']} "
        f"threads), {result['date']}; load average before {result['load_average_before']}, "
        f"after {result['load_average_after']} (the machine is shared: compare ratios only).",
        "",
        "| mode | workers | galaxies/s | ms/galaxy | median s (IQR) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['mode']} | {r['workers']} | {r['galaxies_per_s']:.1f} "
            f"| {r['ms_per_galaxy']:.2f} | {r['median_s']:.2f} ({r['iqr_s']:.2f}) |"
        )
    lines += [
        "",
        "- pipeline overhead over bare GalSim (1 worker): "
        f"**{ratios['overhead_pipeline_1w_vs_bare']}×** "
        f"({ratios['overhead_pipeline_1w_nohsm_vs_bare']}× without HSM)",
        f"- scaling 1 → 2 workers: **{ratios['scaling_2w_vs_1w']}×** (worker start-up included); "
        f"bare GalSim in 2 processes at the same time: {ratios['scaling_bare_2p_vs_1p']}× "
        "(what the free cores allowed during this run)",
        "",
    ]
    (args.out / "simulate.md").write_text("\n".join(lines))
    print("\n".join(lines[-4:]))


if __name__ == "__main__":
    main()
