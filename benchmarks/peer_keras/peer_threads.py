"""Is the Keras peer given its best thread setting? Two peers, interleaved call by call.

``compare.py`` runs the peer with ``--threads`` intra-op *and* inter-op threads
(TensorFlow's defaults follow the cores). On a 2-core machine two inter-op threads may run
two 2-thread ops at once, more threads than cores, which could slow the peer and flatter
cosmobench's ratios. This script starts two peer servers, one with ``--inter-op`` threads
per setting in ``--inter-ops`` (default ``1,2``), and times the same training steps on
each, round by round (one call of each server per round, the order alternating), so the
median ratio says which setting suits the peer. Writes
``benchmarks/results/peer_threads.md`` (or ``--out``). Usage (idle machine, ~2 min)::

    PYTHONPATH=src .venv/bin/python benchmarks/peer_keras/peer_threads.py \\
        --peer-python /work/peer-venv/bin/python
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

# compare.py lies beside this script (its folder is first on the path when run)
from compare import RESULTS, PeerServer

from cosmobench.bench.env import cpu_model, load_average


def parse(inter_ops: str, points: str) -> tuple[list[int], list[tuple[str, int]]]:
    """``--inter-ops`` and ``--points`` as lists; a one-line error for anything else."""
    try:
        settings = [int(s) for s in inter_ops.split(",")]
        pairs = [(net, int(batch)) for net, batch in (p.split(":") for p in points.split(","))]
    except ValueError:
        raise SystemExit(f"error: --inter-ops takes integers (1,2) and --points net:batch "
                         f"pairs (cnn:2,bnn:8); got {inter_ops!r} and {points!r}") from None
    if len(set(settings)) < 2 or min(settings) < 1:
        raise SystemExit(f"error: --inter-ops needs two or more settings >= 1; got {inter_ops!r}")
    if any(net not in ("cnn", "bnn") or batch < 1 for net, batch in pairs):
        raise SystemExit(f"error: --points nets are cnn or bnn, batches >= 1; got {points!r}")
    return settings, pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-python", default="/work/peer-venv/bin/python")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of every peer")
    ap.add_argument("--inter-ops", default="1,2", help="inter-op threads, one peer each")
    ap.add_argument("--points", default="cnn:2,cnn:8,cnn:14,bnn:2,bnn:8")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--out", default=str(RESULTS / "peer_threads.md"))
    args = ap.parse_args()
    settings, points = parse(args.inter_ops, args.points)
    start = load_average()
    peers = {k: PeerServer(args.peer_python, args.threads, k) for k in settings}
    rows = []
    try:
        for net, batch in points:
            req = {"op": "train", "net": net, "batch": batch}
            for p in peers.values():
                p.ask(**req, warmup=2, repeats=0)
            times: dict[int, list[float]] = {k: [] for k in settings}
            for r in range(args.repeats):
                for k in settings if r % 2 else settings[::-1]:
                    times[k] += peers[k].ask(**req, warmup=0, repeats=1)[0]
            med = {k: statistics.median(v) for k, v in times.items()}
            rows.append((f"{net.upper()} train step, batch {batch}", med))
            print(rows[-1][0], "  ".join(f"inter-op {k}: {v * 1e3:.1f} ms"
                                          for k, v in med.items()), flush=True)
    finally:
        for p in peers.values():
            p.close()
    ref = settings[-1]
    head = [f"inter-op {k} (ms)" for k in settings]
    head += [f"speed, inter-op {k} ÷ {ref}" for k in settings if k != ref]
    lines = [
        "# The Keras peer's inter-op threads", "",
        f"`{' '.join(sys.argv)}`", "",
        f"{cpu_model()}, {args.threads} intra-op threads in every peer; median of "
        f"{args.repeats} interleaved rounds after 2 warm-up calls; load average {start} "
        f"before, {load_average()} after. `compare.py` runs the peer with inter-op "
        f"threads = intra-op threads.", "",
        "| workload | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head),
    ]
    for name, med in rows:
        cells = [f"{med[k] * 1e3:.1f}" for k in settings]
        cells += [f"{med[ref] / med[k]:.2f}×" for k in settings if k != ref]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
