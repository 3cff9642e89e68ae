"""Sampling the latent flow: Jacobi sweeps against the sequential passes, by batch size.

:class:`~cosmobench.generate.maf.FastMAF` solves batches of up to 256 on a CPU by Jacobi
sweeps (Song et al. 2021, arXiv:2002.03629), which stop when a sweep changes no bit; how many
sweeps that takes depends on how strongly the flow chains its features. The sweeps of batches
of up to 8 run through NumPy, whose operators cost less to call than torch's. So this times
the sweeps in torch, the same sweeps in NumPy, the sequential passes, and ``FastMAF`` as the
sampler calls it (NumPy up to 8, torch sweeps up to 256, and larger batches swept in blocks
of 256 while the sweeps pay), interleaved call by call, on the paper's flow (32 features, 8
transforms, hidden (256, 256)) in up to three states:

* ``initial`` -- zuko's initial weights (what ``cosmobench bench generate`` times);
* ``chained`` -- fitted by maximum likelihood, ``--fit-steps`` Adam steps, to synthetic
  32-d data in which every feature is a strongly nonlinear function of the two before it
  (a harder case than a VAE's latent space, whose features are nearly independent);
* ``run`` -- a trained flow from ``--flow RUN`` (a ``cosmobench train flow`` folder).

Prints a table (median ms per call, the speed-ups, the sweeps each transform took, and the
largest difference between the torch sweeps' and the passes' samples, and between the NumPy
and the torch sweeps') and writes it to
``benchmarks/results/flow_jacobi.md``. Run on an idle machine::

    .venv/bin/python benchmarks/flow_jacobi.py [--flow RUN] [--threads 2] [--repeats 15]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from cosmobench.bench.env import cpu_model, load_average
from cosmobench.generate.maf import FastMAF
from cosmobench.models import FlowConfig, LatentFlow

RESULTS = Path(__file__).parent / "results"
# Largest batch whose NumPy sweeps are timed: from 16 NumPy's OpenBLAS runs a second thread
# of its own (2 Zen 4 cores: CPU time twice the wall time), which then competes with torch's
# threads in the calls timed after it.
NUMPY_MAX_TIMED = 16


def chained_data(n: int, features: int, generator: torch.Generator) -> torch.Tensor:
    """Standardised samples in which feature i depends nonlinearly on features i-1 and i-2."""
    x = torch.empty(n, features)
    x[:, 0] = torch.randn(n, generator=generator)
    for i in range(1, features):
        prev2 = torch.tanh(x[:, i - 2]) ** 2 if i > 1 else 0.0
        x[:, i] = (2.0 * torch.tanh(1.5 * x[:, i - 1]) + 0.8 * torch.sin(2.0 * x[:, i - 1])
                   + 0.3 * torch.randn(n, generator=generator) + 0.3 * prev2)
    return (x - x.mean(0)) / x.std(0)


def fit_chained(flow: LatentFlow, steps: int, seed: int = 0) -> float:
    """Fit ``flow`` to :func:`chained_data` (batches of 256, Adam 1e-3); the last loss."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        loss = -flow.log_prob(chained_data(256, flow.config.features, gen)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss)


def time_methods(flow: LatentFlow, batch: int, repeats: int) -> dict:
    """Torch sweeps, NumPy sweeps (up to ``NUMPY_MAX_TIMED``), sequential passes and the
    default ``FastMAF`` on one batch, interleaved (the order rotating every round); medians
    in ms."""
    methods = {  # sweeps at any batch size, in torch (and NumPy, below); then no sweeps
        "jacobi": FastMAF(flow.flow, jacobi_max_batch=batch, numpy_max_batch=0),
        "sequential": FastMAF(flow.flow, jacobi_max_batch=0),
        "default": FastMAF(flow.flow),  # as the sampler calls it: the choice by batch size
    }
    if batch <= NUMPY_MAX_TIMED:
        methods["numpy"] = FastMAF(flow.flow, jacobi_max_batch=batch, numpy_max_batch=batch)
    eps = torch.randn(batch, flow.config.features, generator=torch.Generator().manual_seed(1))
    out = {name: fast(eps) for name, fast in methods.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            out[name] = methods[name](eps)
            times[name].append(time.perf_counter() - t0)
    return {
        "batch": batch,
        "numpy_ms": float("nan"),
        **{f"{name}_ms": 1e3 * statistics.median(t) for name, t in times.items()},
        "sweeps": list(methods["jacobi"].last_sweeps),
        "numpy_sweeps": list(methods["numpy"].last_sweeps) if "numpy" in methods else [],
        "default_sweeps": list(methods["default"].last_sweeps),
        "max_abs_diff": float((out["jacobi"] - out["sequential"]).abs().max()),
        "numpy_diff": float((out["numpy"] - out["jacobi"]).abs().max()) if "numpy" in out
        else float("nan"),
    }


def _cell(value: float, spec: str, unit: str = "") -> str:
    return "—" if math.isnan(value) else f"{value:{spec}}{unit}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flow", help="a trained flow run folder (cosmobench train flow --out)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--batches", default="1,4,8,16,32")
    ap.add_argument("--fit-steps", type=int, default=1000)
    ap.add_argument("--out", default=str(RESULTS / "flow_jacobi"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    start = load_average()

    torch.manual_seed(0)
    flows = {"initial": LatentFlow(FlowConfig())}
    chained = LatentFlow(FlowConfig())
    t0 = time.perf_counter()
    loss = fit_chained(chained, args.fit_steps)
    notes = [f"`chained`: {args.fit_steps} Adam steps in {time.perf_counter() - t0:.0f} s, "
             f"last negative log-likelihood {loss:.2f} (a standard normal's is 45.4)."]
    flows["chained"] = chained
    if args.flow:
        from cosmobench.train.runs import load_run

        flows["run"], _ = load_run(args.flow, "flow")
        notes.append(f"`run`: {args.flow}.")
    rows = []
    for name, flow in flows.items():
        flow.eval()
        for batch in batches:
            row = {"flow": name, **time_methods(flow, batch, args.repeats)}
            rows.append(row)
            print(f"{name:8s} batch {batch:4d}  jacobi {row['jacobi_ms']:7.2f} ms  numpy "
                  f"{row['numpy_ms']:7.2f} ms  sequential {row['sequential_ms']:7.2f} ms  "
                  f"sweeps {row['sweeps']}", flush=True)

    lines = [
        "# Sampling the latent flow: Jacobi sweeps against the sequential passes", "",
        f"`python benchmarks/flow_jacobi.py --threads {args.threads} --repeats {args.repeats}"
        f" --batches {args.batches} --fit-steps {args.fit_steps}"
        + (f" --flow {args.flow}" if args.flow else "") + "`", "",
        f"{cpu_model()}, {args.threads} threads, torch {torch.__version__}; median of "
        f"{args.repeats} interleaved calls; load average {start} before, {load_average()} "
        "after. Sweeps: per transform, 0 = fell back to the sequential passes (after 16).", "",
        "| flow | batch | Jacobi, torch (ms) | Jacobi, NumPy (ms) | sequential (ms) "
        "| default (ms) | torch sweeps ÷ passes speed | NumPy ÷ torch sweeps speed "
        "| default ÷ passes speed | sweeps per transform (torch; NumPy; default's last "
        "swept block) | max abs difference (torch sweeps − passes; NumPy − torch) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    lines += [
        f"| {r['flow']} | {r['batch']} | {r['jacobi_ms']:.2f} | {_cell(r['numpy_ms'], '.2f')} | "
        f"{r['sequential_ms']:.2f} | {r['default_ms']:.2f} | "
        f"{r['sequential_ms'] / r['jacobi_ms']:.2f}× | "
        f"{_cell(r['jacobi_ms'] / r['numpy_ms'], '.2f', '×')} | "
        f"{r['sequential_ms'] / r['default_ms']:.2f}× | "
        f"{' '.join(map(str, r['sweeps']))}; {' '.join(map(str, r['numpy_sweeps'])) or '—'}; "
        f"{' '.join(map(str, r['default_sweeps']))} | "
        f"{r['max_abs_diff']:.1e}; {_cell(r['numpy_diff'], '.1e')} |"
        for r in rows
    ]
    lines += ["", f"- NumPy sweeps timed up to batch {NUMPY_MAX_TIMED} (— above): from 16 "
              "NumPy's OpenBLAS runs a second thread of its own, which competes with torch's "
              "threads in the calls timed after it.", *(f"- {n}" for n in notes)]
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
