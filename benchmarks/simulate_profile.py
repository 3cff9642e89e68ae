"""Where the simulation pipeline's time goes: cProfile of ``simulate`` on one worker.

Groups the cumulative time of one process simulating ``--n`` galaxies into drawing
(GalSim ``drawImage``), Poisson noise, HSM measurements (KSB + REGAUSS) and store writes,
and writes ``benchmarks/results/simulate_profile.md``.

    .venv/bin/python benchmarks/simulate_profile.py [--n 1000]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from pathlib import Path

from cosmobench.bench.env import cpu_model, load_average
from cosmobench.sim import SimConfig, simulate

RESULTS = Path(__file__).parent / "results"
PARTS = {  # (file suffix, function name) whose cumulative time is each part
    "drawing (GalSim drawImage)": ("galsim/gsobject.py", "drawImage"),
    "Poisson noise": ("cosmobench/sim/render.py", "add_poisson_noise"),
    "HSM KSB + REGAUSS": ("galsim/hsm.py", "EstimateShear"),
    "store writes (Zarr)": ("cosmobench/store.py", "write_chunk"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    start = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        simulate(SimConfig(n=64, seed=9, chunk_size=64), Path(tmp) / "warm.zarr",
                 workers=1, progress=False)  # imports and first-call costs, untimed
        prof = cProfile.Profile()
        prof.enable()
        simulate(SimConfig(n=args.n, seed=3, chunk_size=256), Path(tmp) / "run.zarr",
                 workers=1, progress=False)
        prof.disable()
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    total = max(ct for (_f, _l, name), (_cc, _nc, _tt, ct, _c) in stats.items()
                if name == "simulate")
    lines = ["# Simulation pipeline: where one worker's time goes", "",
             f"`python benchmarks/simulate_profile.py --n {args.n}` on {cpu_model()}; load "
             f"average {start} before, {load_average()} after. cProfile adds its own "
             f"overhead: read the shares, not the absolute times. Total {total:.2f} s for "
             f"{args.n} galaxies.", "", "| part | seconds | share |", "|---|---:|---:|"]
    for label, (suffix, func) in PARTS.items():
        t = sum(ct for (f, _l, name), (_cc, _nc, _tt, ct, _c) in stats.items()
                if name == func and f.endswith(suffix))
        lines.append(f"| {label} | {t:.2f} | {100 * t / total:.0f} % |")
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "simulate_profile.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
