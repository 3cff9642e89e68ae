"""One thread or every core? The paper's training steps timed at both, interleaved.

On a 2-core machine a tiny batch gives each of two threads little work per operator, and
when another job shares the cores the threads of an OpenMP pool wait on each other; one
thread can then win. This script says which count is faster here, per network and batch
size, with the step ``cosmobench train`` runs (``make_train_step``, eager, fp32 or bf16):
for each point it builds the network at the paper's size and calls
:func:`cosmobench.train.probe.time_threads` — the timing ``cosmobench train --threads -1``
uses to choose — with more rounds. Writes a Markdown table and its JSON to
``benchmarks/results/threads.md`` / ``.json`` (or ``--out``). Usage (idle machine)::

    .venv/bin/python benchmarks/threads.py [--nets cnn,bnn] [--batch-sizes 2,4,8,14]
        [--precision fp32] [--rounds 7] [--steps 3] [--out F]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from cosmobench.bench.env import cpu_model, load_average
from cosmobench.train.probe import paper_step, time_threads, usable_cores

RESULTS = Path(__file__).parent / "results"


def parse(nets: str, batch_sizes: str) -> tuple[list[str], list[int]]:
    """``--nets`` and ``--batch-sizes`` as lists; a one-line error for anything else."""
    names = [n.strip() for n in nets.split(",") if n.strip()]
    try:
        batches = [int(b) for b in batch_sizes.split(",")]
    except ValueError:
        batches = []
    if not names or any(n not in ("cnn", "bnn") for n in names):
        raise SystemExit(f"error: --nets takes cnn and/or bnn (cnn,bnn); got {nets!r}")
    if not batches or min(batches) < 1:
        raise SystemExit(f"error: --batch-sizes takes integers >= 1 (2,4,8,14); got "
                         f"{batch_sizes!r}")
    return names, batches


def point(net: str, batch: int, precision: str, counts: tuple[int, ...], rounds: int,
          steps: int) -> dict[int, float]:
    """Steps per second of the paper's ``net`` at ``batch`` for each thread count."""
    return time_threads(paper_step(net, batch, precision), counts, rounds=rounds, steps=steps)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="cnn,bnn")
    ap.add_argument("--batch-sizes", default="2,4,8,14")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per count per round")
    ap.add_argument("--out", default=str(RESULTS / "threads"))
    args = ap.parse_args(argv)
    nets, batches = parse(args.nets, args.batch_sizes)
    if args.rounds < 1 or args.steps < 1:
        raise SystemExit("error: --rounds and --steps must be >= 1")
    cores = usable_cores()
    counts = tuple(sorted({1, cores}))
    start = load_average()
    rows = []
    for net in nets:
        for batch in batches:
            rates = point(net, batch, args.precision, counts, args.rounds, args.steps)
            best = max(rates, key=rates.get)
            rows.append({"net": net, "batch": batch, "steps_per_s": rates, "best": best})
            print(f"{net} batch {batch:3d}: " + "  ".join(
                f"{c} thread{'s' * (c > 1)} {1e3 / r:7.1f} ms" for c, r in rates.items()
            ) + f"  -> {best}", flush=True)
    meta = {
        "command": " ".join(["benchmarks/threads.py", *(argv if argv is not None
                                                          else sys.argv[1:])]),
        "cpu": cpu_model(), "capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__, "cores": cores, "precision": args.precision,
        "rounds": args.rounds, "steps": args.steps,
        "load_average": {"start": start, "end": load_average()},
    }
    many = counts[-1]
    lines = [
        "# One thread or every core: the paper's training steps", "",
        f"`{meta['command']}`", "",
        f"{meta['cpu']} ({meta['capability']}), {cores} usable cores, torch {torch.__version__}, "
        f"eager {args.precision}; median step of {args.rounds} interleaved rounds × "
        f"{args.steps} steps per count; load average {start} before, "
        f"{meta['load_average']['end']} after.", "",
        f"| network | batch | 1 thread (ms) | {many} threads (ms) | 1 thread ÷ {many} speed "
        "| faster |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        one, all_ = r["steps_per_s"][1], r["steps_per_s"][many]
        lines.append(f"| {r['net'].upper()} | {r['batch']} | {1e3 / one:.1f} | "
                     f"{1e3 / all_:.1f} | {one / all_:.2f}× | {r['best']} |")
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    serial = [{**r, "steps_per_s": {str(k): v for k, v in r["steps_per_s"].items()}}
              for r in rows]
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": serial}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
