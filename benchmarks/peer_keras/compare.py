"""cosmobench against its Keras + TFP peer (``peer.py``), interleaved point by point, one run.

For every point — a CNN or BNN training step at batch 2, 4, 8, 14 and the generation of 1, 100
and 1,000 galaxies — the peer (in its own interpreter, ``--peer-python``, as a server) and
cosmobench (in this interpreter) are timed back to back with the same protocol: ``--warmup``
untimed calls, then the median of ``--repeats`` timed calls, ``--threads`` threads on both
sides (TensorFlow intra- and inter-op; torch intra-op). Wall time decides (run it on an
otherwise idle machine); each side's process CPU time is recorded too, a cross-check that
survives a busy machine at one thread. Writes ``benchmarks/results/peer_keras.{json,md}``
with the speed ratio (peer time ÷ cosmobench time: above 1, cosmobench is faster). Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/peer_keras/compare.py \\
        --peer-python /work/peer-venv/bin/python --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from cosmobench.bench.env import cpu_model, load_average

HERE = Path(__file__).parent
RESULTS = HERE.parent / "results"


class PeerServer:
    """The Keras peer in its own interpreter, answering one JSON request per line."""

    def __init__(self, python: str, threads: int) -> None:
        cmd = [python, str(HERE / "peer.py"), "--serve", "--threads", str(threads)]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("error: the Keras peer stopped; run peer.py --check to see why")
        return json.loads(line)

    def ask(self, **req) -> tuple[list[float], list[float]]:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        return answer["times"], answer["cpu"]

    def close(self) -> None:
        self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def _timed(fn, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and process CPU seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return times, cpu


class Ours:
    """cosmobench's own step (``make_train_step``) and sampler (``GalaxySampler``)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sampler = None

    def train(self, net: str, batch: int, warmup: int, repeats: int) -> tuple[list, list]:
        from cosmobench.models import ShapeConfig, ShapeNet
        from cosmobench.train.step import make_optimizer, make_train_step

        torch.manual_seed(0)
        model = ShapeNet(ShapeConfig(bayesian=net == "bnn")).train()
        step = make_train_step(model, make_optimizer(model), n_train=10_000)
        if self.mode == "compile":
            step = torch.compile(step)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 6, 64, 64, generator=g)
        y = 0.1 * torch.randn(batch, 3, generator=g)
        return _timed(lambda: step(x, y), warmup + (2 if self.mode == "compile" else 0), repeats)

    def generate(self, n: int, warmup: int, repeats: int) -> tuple[list, list]:
        from cosmobench.generate.sampler import GalaxySampler
        from cosmobench.models import VAE, BandNormalizer, FlowConfig, LatentFlow, VAEConfig

        if self.sampler is None:
            torch.manual_seed(0)
            vae, flow = VAE(VAEConfig()), LatentFlow(FlowConfig())
            self.sampler = GalaxySampler(vae, flow, BandNormalizer([1e3] * 6))
        seeds = iter(range(10**6))
        return _timed(lambda: self.sampler(n, seed=next(seeds)), warmup, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-python", default="/work/peer-venv/bin/python")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7, help="timed calls per training point")
    ap.add_argument("--gen-repeats", type=int, default=3, help="timed calls per generation")
    ap.add_argument("--batch-sizes", default="2,4,8,14")
    ap.add_argument("--gen-sizes", default="1,100,1000")
    ap.add_argument("--nets", default="cnn,bnn")
    ap.add_argument("--mode", default="eager", choices=["eager", "compile"])
    ap.add_argument("--out", default=str(RESULTS / "peer_keras"))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    t_start = time.time()
    peer = PeerServer(args.peer_python, args.threads)
    ours = Ours(args.mode)
    rows = []

    def record(workload: str, peer_t: tuple, our_t: tuple, per: int) -> None:
        p, o = statistics.median(peer_t[0]), statistics.median(our_t[0])
        pc, oc = statistics.median(peer_t[1]), statistics.median(our_t[1])
        rows.append(
            {
                "workload": workload,
                "peer_s": p,
                "cosmobench_s": o,
                "ratio": p / o,
                "peer_cpu_s": pc,
                "cosmobench_cpu_s": oc,
                "cpu_ratio": pc / oc,
                "items": per,
                "peer_times": peer_t[0],
                "cosmobench_times": our_t[0],
            }
        )
        print(
            f"{workload:28s} peer {p * 1e3:9.1f} ms  cosmobench {o * 1e3:9.1f} ms  "
            f"ratio {p / o:5.2f}x  (CPU-time ratio {pc / oc:5.2f}x)",
            flush=True,
        )

    try:
        for net in args.nets.split(","):
            for b in (int(s) for s in args.batch_sizes.split(",")):
                pt = peer.ask(
                    op="train", net=net, batch=b, warmup=args.warmup, repeats=args.repeats
                )
                ot = ours.train(net, b, args.warmup, args.repeats)
                record(f"{net.upper()} train step, batch {b}", pt, ot, b)
        for n in (int(s) for s in args.gen_sizes.split(",")):
            warm = 1 if n >= 1000 else args.warmup
            pt = peer.ask(op="generate", n=n, warmup=warm, repeats=args.gen_repeats)
            ot = ours.generate(n, warm, args.gen_repeats)
            record(f"generate {n:,}", pt, ot, n)
    finally:
        peer.close()

    gen = {r["items"]: r for r in rows if r["workload"].startswith("generate")}
    derived = {}
    if 1 in gen and 100 in gen:
        derived["one_galaxy_share_of_100"] = gen[1]["cosmobench_s"] / gen[100]["cosmobench_s"]
    cnn = {r["items"]: r for r in rows if r["workload"].startswith("CNN")}
    if 2 in cnn and 14 in cnn:
        derived["cnn_b2_per_image_over_b14"] = (cnn[2]["cosmobench_s"] / 2) / (
            cnn[14]["cosmobench_s"] / 14
        )
    meta = {
        "command": " ".join(sys.argv),
        "cpu": cpu_model(),
        "threads": args.threads,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "tensorflow": peer.info.get("tf"),
        "mode": args.mode,
        "load_average": load_average(),
        "warmup": args.warmup,
        "repeats": args.repeats,
        "gen_repeats": args.gen_repeats,
        "seconds": round(time.time() - t_start, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "rows": rows, "derived": derived}, indent=1) + "\n"
    )
    lines = [
        "# cosmobench vs a Keras + TFP peer (interleaved, one run)",
        "",
        f"`{meta['command']}`",
        "",
        f"{meta['cpu']} ({meta['capability']}), {args.threads} threads on both sides, "
        f"torch {meta['torch']} ({args.mode}, fp32), TensorFlow {meta['tensorflow']}; "
        f"median of {args.repeats} steps ({args.gen_repeats} generations) after "
        f"{args.warmup} warm-up; load average at the end {meta['load_average']}; "
        f"{meta['seconds']:.0f} s in all.",
        "",
        "| workload | Keras peer | cosmobench | cosmobench ÷ peer speed | CPU-time ratio |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['peer_s'] * 1e3:.1f} ms | "
            f"{r['cosmobench_s'] * 1e3:.1f} ms | {r['ratio']:.2f}× | {r['cpu_ratio']:.2f}× |"
        )
    for k, v in derived.items():
        lines.append(f"\n{k.replace('_', ' ')}: {v:.3f}")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')} and .json")


if __name__ == "__main__":
    main()
