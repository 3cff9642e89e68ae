"""cosmobench against its Keras + TFP peer (``peer.py``), interleaved point by point, one run.

For every point — a CNN or BNN training step at batch 2, 4, 8, 14 and the generation of 1, 100
and 1,000 galaxies — the peer (in its own interpreter, ``--peer-python``, as a server) and
cosmobench (in this interpreter) are timed with the same protocol: ``--warmup`` untimed
calls each, then ``--repeats`` rounds of one timed peer call followed by one timed call of
each cosmobench mode, and the median of each side's calls; ``--threads`` threads on both
sides (TensorFlow intra- and inter-op; torch intra-op). Interleaving call by call puts both
sides in the same moments of a shared machine whose speed drifts (by up to 2x within
minutes on the 2-core machines here). Wall time decides (run it on an otherwise idle
machine); each side's process CPU time is recorded too, a cross-check that survives a busy
machine at one thread. Writes ``benchmarks/results/peer_keras.{json,md}``
with the speed ratio (peer time ÷ cosmobench time: above 1, cosmobench is faster). Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/peer_keras/compare.py \\
        --peer-python /work/peer-venv/bin/python --threads 2 --modes eager,compile,bf16

``--modes`` times several cosmobench modes at every point (the peer once); the fastest is
reported as the best mode. bf16 modes are timed only on CPUs with native bf16.

How sure a ratio is: the rounds are paired (one peer call, then one call per mode), so the
table's ratio of medians gets a 90 % interval from a paired bootstrap over the rounds
(Efron & Tibshirani 1993, ch. 13: resample whole rounds with replacement, recompute the
ratio of medians, take the 5th and 95th percentiles), beside the median of the per-round
ratios. A target is met beyond this run's noise only where the interval's low end reaches
it. ``--from-json F`` rewrites the tables of a stored run (with its intervals) without
timing anything.

After the timing, on the same idle machine, the run measures what the hardware allows: the
FLOPs of each point (matrix products and convolutions, counted by torch's
``FlopCounterMode`` on cosmobench's own call) and this CPU's roofline in fp32 and, where
native, bf16 (:func:`cosmobench.bench.peak.measure_roofline`: the best of matrix products
and a 3×3 convolution). The **ceiling** of a point is the peer's time over the time of those
FLOPs at the roofline: the speed ratio against the peer of an implementation that ran every
FLOP as fast as the fastest kernel measured here. The measured roofline is a lower bound
of the CPU's true peak, so a target well above a point's ceiling is out of reach of any
code on this CPU in that precision (``--no-roofline`` skips this part).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from cosmobench.bench.env import cpu_model, load_average
from cosmobench.bench.modes import mode_step

HERE = Path(__file__).parent
RESULTS = HERE.parent / "results"
#: Environment variables that set threads or instruction sets, recorded with a run.
THREAD_VARS = ("OMP_NUM_THREADS", "OMP_PROC_BIND", "OMP_PLACES", "OMP_WAIT_POLICY",
               "GOMP_SPINCOUNT", "KMP_AFFINITY", "KMP_BLOCKTIME", "ATEN_CPU_CAPABILITY",
               "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "OPENBLAS_CORETYPE")


def thread_env() -> dict[str, str]:
    """The variables of :data:`THREAD_VARS` set in this process (the peer inherits them)."""
    return {k: os.environ[k] for k in THREAD_VARS if k in os.environ}


class PeerServer:
    """The Keras peer in its own interpreter, answering one JSON request per line."""

    def __init__(self, python: str, threads: int, inter_op: int | None = None) -> None:
        cmd = [python, str(HERE / "peer.py"), "--serve", "--threads", str(threads)]
        if inter_op is not None:
            cmd += ["--inter-op", str(inter_op)]
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


def ratio_interval(peer_times: list[float], our_times: list[float], level: float = 0.9,
                   draws: int = 4000, seed: int = 0) -> tuple[float, float]:
    """``level`` interval of median(peer) / median(ours) from a paired bootstrap over the
    rounds (round *i* is ``peer_times[i]`` then ``our_times[i]``; resampled together)."""
    import numpy as np

    peer, ours = np.asarray(peer_times, float), np.asarray(our_times, float)
    if peer.shape != ours.shape or peer.size == 0:
        raise ValueError(f"need paired rounds; got {peer.size} and {ours.size} times")
    idx = np.random.default_rng(seed).integers(0, peer.size, size=(draws, peer.size))
    return _central(np.median(peer[idx], axis=1) / np.median(ours[idx], axis=1), level)


def unpaired_interval(num_times: list[float], den_times: list[float], level: float = 0.9,
                      draws: int = 4000, seed: int = 0) -> tuple[float, float]:
    """``level`` interval of median(num) / median(den) for two series timed at different
    moments (two points of a run): each is resampled on its own."""
    import numpy as np

    num, den = np.asarray(num_times, float), np.asarray(den_times, float)
    if num.size == 0 or den.size == 0:
        raise ValueError("need times on both sides")
    rng = np.random.default_rng(seed)
    return _central(np.median(num[rng.integers(0, num.size, size=(draws, num.size))], axis=1)
                    / np.median(den[rng.integers(0, den.size, size=(draws, den.size))], axis=1),
                    level)


def _central(ratios: Any, level: float) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap ``ratios`` (percentile method)."""
    import numpy as np

    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(ratios, [tail, 100 - tail])
    return float(lo), float(hi)


def derived_pairs(rows: list[dict]) -> Iterator[tuple[str, str, dict, dict, float]]:
    """Each derived share of a run, per mode: ``(name, mode, numerator point, denominator
    point, scale)``, the share being scale × numerator time / denominator time: one galaxy's
    time over 100 galaxies', and a batch-2 CNN step's time per image over batch 14's."""
    gen = {r["items"]: r for r in rows if r["workload"].startswith("generate")}
    cnn = {r["items"]: r for r in rows if r["workload"].startswith("CNN")}
    for mode in rows[0]["modes"] if rows else ():
        if 1 in gen and 100 in gen:
            yield f"one galaxy's share of 100 ({mode})", mode, gen[1], gen[100], 1.0
        if 2 in cnn and 14 in cnn:
            yield (f"CNN batch-2 over batch-14 time per image ({mode})", mode, cnn[2], cnn[14],
                   14 / 2)


def derived_intervals(rows: list[dict]) -> dict[str, tuple[float, float]]:
    """90 % intervals of the derived shares (:func:`derived_pairs`), keyed as ``derived``;
    the two points were timed minutes apart, so each is resampled on its own."""
    out: dict[str, tuple[float, float]] = {}
    for name, mode, num, den, scale in derived_pairs(rows):
        if "times" in num["modes"][mode] and "times" in den["modes"][mode]:
            lo, hi = unpaired_interval(num["modes"][mode]["times"], den["modes"][mode]["times"])
            out[name] = (lo * scale, hi * scale)
    return out


def paired_stats(row: dict) -> dict[str, dict[str, float]]:
    """Per mode of a stored row: the ratio of medians, its 90 % paired-bootstrap interval
    and the median of the per-round ratios."""
    import numpy as np

    out = {}
    peer = row["peer_times"]
    for mode, m in row["modes"].items():
        lo, hi = ratio_interval(peer, m["times"])
        per_round = np.asarray(peer, float) / np.asarray(m["times"], float)
        out[mode] = {"ratio": row["peer_s"] / m["s"], "lo": lo, "hi": hi,
                     "round_median": float(np.median(per_round))}
    return out


class Ours:
    """cosmobench's own step (``make_train_step``) and sampler (``GalaxySampler``) in one mode:
    ``eager`` (fp32), ``compile`` (``torch.compile``), ``bf16`` (autocast) or ``compile+bf16``.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.compile = "compile" in mode
        self.precision = "bf16" if "bf16" in mode else "fp32"
        self.sampler = None

    def train(self, net: str, batch: int, warmup: int) -> object:
        """A warmed-up training step on a synthetic batch, as a no-argument callable."""
        from cosmobench.models import ShapeConfig, ShapeNet
        from cosmobench.train.step import make_optimizer, make_train_step

        torch.manual_seed(0)
        model = ShapeNet(ShapeConfig(bayesian=net == "bnn")).train()
        opt = make_optimizer(model)
        step = make_train_step(model, opt, n_train=10_000, precision=self.precision)
        if self.compile:
            step = mode_step(step, "compile")  # with the step's inductor options
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 6, 64, 64, generator=g)
        y = 0.1 * torch.randn(batch, 3, generator=g)
        _timed(lambda: step(x, y), warmup + (2 if self.compile else 0), 0)
        return lambda: step(x, y)

    def generate(self, n: int, warmup: int) -> object:
        """A warmed-up sampler of ``n`` galaxies (a new seed per call), as a callable."""
        from cosmobench.generate.sampler import GalaxySampler
        from cosmobench.models import VAE, BandNormalizer, FlowConfig, LatentFlow, VAEConfig

        if self.sampler is None:
            torch.manual_seed(0)
            vae, flow = VAE(VAEConfig()), LatentFlow(FlowConfig())
            self.sampler = GalaxySampler(
                vae, flow, BandNormalizer([1e3] * 6), precision=self.precision,
                compile=self.compile,
            )  # fmt: skip
        seeds = iter(range(10**6))
        extra = 2 if self.compile else 0  # a compile per batch size (full and remainder)
        _timed(lambda: self.sampler(n, seed=next(seeds)), warmup + extra, 0)
        return lambda: self.sampler(n, seed=next(seeds))


def interleaved(peer: PeerServer, request: dict, ours: dict[str, object], repeats: int
                ) -> tuple[tuple[list, list], dict[str, tuple[list, list]]]:
    """``repeats`` rounds of one peer call then one call of each of ``ours`` (warmed up)."""
    peer_t: tuple[list, list] = ([], [])
    our_t: dict[str, tuple[list, list]] = {m: ([], []) for m in ours}
    for _ in range(repeats):
        t, c = peer.ask(**request, warmup=0, repeats=1)
        peer_t[0].extend(t)
        peer_t[1].extend(c)
        for m, fn in ours.items():
            t, c = _timed(fn, 0, 1)
            our_t[m][0].extend(t)
            our_t[m][1].extend(c)
    return peer_t, our_t


def usable_modes(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """The modes this CPU runs natively, and why each other one is left out (bf16 without
    AVX-512 BF16 or AMX would be emulated in fp32: not a mode anyone would choose)."""
    from cosmobench.bench.hardware import cpu_info

    cpu = cpu_info()
    keep, skipped = [], {}
    for m in names:
        if m not in MODES:
            raise SystemExit(f"error: mode {m!r} is not one of {', '.join(MODES)}")
        if "bf16" in m and not cpu.bf16_native:
            skipped[m] = cpu.bf16_reason() or "no native bf16"
        else:
            keep.append(m)
    if "eager" not in keep:
        raise SystemExit("error: --modes must include eager (the fp32 reference)")
    return keep, skipped


MODES = ("eager", "compile", "bf16", "compile+bf16")


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
    ap.add_argument(
        "--modes",
        default="eager",
        help=f"comma-separated cosmobench modes among {', '.join(MODES)}; eager (fp32) is the "
        "reference, and the fastest of them is the 'best mode' (bf16 only where native)",
    )
    ap.add_argument("--out", default=str(RESULTS / "peer_keras"))
    ap.add_argument("--no-roofline", action="store_true",
                    help="skip the FLOP counts, the roofline and the ceilings")
    ap.add_argument("--from-json", default=None,
                    help="rewrite the tables (.md beside it) of this stored run; time nothing")
    args = ap.parse_args()
    if args.from_json:
        try:
            stored = json.loads(Path(args.from_json).read_text())
            parts = stored["meta"], stored["rows"], stored["derived"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"error: {args.from_json} is not a stored comparison run "
                             f"(a .json this script wrote): {e}") from None
        md = Path(args.from_json).with_suffix(".md")
        # notes added to the record by hand (paragraphs opening "**Note") are kept
        notes = [p for p in (md.read_text().split("\n\n") if md.exists() else [])
                 if p.startswith("**Note")]
        text = markdown(*parts)
        md.write_text("\n\n".join([text.rstrip("\n"), *(n.rstrip("\n") for n in notes)]) + "\n")
        print(f"wrote {md}")
        return

    modes, skipped = usable_modes([m.strip() for m in args.modes.split(",") if m.strip()])
    # every point compiles anew (batch size, autocast on or off): past dynamo's default
    # recompile limit (8) the later points would silently run eagerly
    torch._dynamo.config.recompile_limit = 256
    torch._dynamo.config.accumulated_recompile_limit = 4096
    torch.set_num_threads(args.threads)
    t_start = time.time()
    peer = PeerServer(args.peer_python, args.threads)
    ours = {m: Ours(m) for m in modes}
    rows = []

    def record(workload: str, peer_t: tuple, our_t: dict[str, tuple], per: int) -> None:
        p, pc = statistics.median(peer_t[0]), statistics.median(peer_t[1])
        o = {m: statistics.median(t[0]) for m, t in our_t.items()}
        oc = {m: statistics.median(t[1]) for m, t in our_t.items()}
        best = min(o, key=o.get)
        rows.append(
            {
                "workload": workload,
                "items": per,
                "peer_s": p,
                "peer_cpu_s": pc,
                "peer_times": peer_t[0],
                # the eager fp32 reference under the names the first version used
                "cosmobench_s": o["eager"],
                "cosmobench_cpu_s": oc["eager"],
                "ratio": p / o["eager"],
                "cpu_ratio": pc / oc["eager"],
                "cosmobench_times": our_t["eager"][0],
                "modes": {m: {"s": o[m], "cpu_s": oc[m], "times": our_t[m][0]} for m in o},
                "best_mode": best,
                "best_ratio": p / o[best],
            }
        )
        print(
            f"{workload:28s} peer {p * 1e3:9.1f} ms  eager {o['eager'] * 1e3:9.1f} ms  "
            f"ratio {p / o['eager']:5.2f}x  best {best} {p / o[best]:5.2f}x",
            flush=True,
        )

    try:
        for net in filter(None, args.nets.split(",")):  # "" times no training
            for b in (int(s) for s in filter(None, args.batch_sizes.split(","))):
                request = {"op": "train", "net": net, "batch": b}
                peer.ask(**request, warmup=args.warmup, repeats=0)
                calls = {m: o.train(net, b, args.warmup) for m, o in ours.items()}
                pt, ot = interleaved(peer, request, calls, args.repeats)
                record(f"{net.upper()} train step, batch {b}", pt, ot, b)
                del calls  # free this point's models before the next
        for n in (int(s) for s in filter(None, args.gen_sizes.split(","))):
            warm = 1 if n >= 1000 else args.warmup
            request = {"op": "generate", "n": n}
            peer.ask(**request, warmup=warm, repeats=0)
            calls = {m: o.generate(n, warm) for m, o in ours.items()}
            pt, ot = interleaved(peer, request, calls, args.gen_repeats)
            record(f"generate {n:,}", pt, ot, n)
    finally:
        peer.close()

    roofline = None if args.no_roofline else ceilings(rows, modes, args)
    derived = {
        name: scale * num["modes"][mode]["s"] / den["modes"][mode]["s"]
        for name, mode, num, den, scale in derived_pairs(rows)
    }
    meta = {
        "command": " ".join(sys.argv),
        "cpu": cpu_model(),
        "threads": args.threads,
        "thread_env": thread_env(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "tensorflow": peer.info.get("tf"),
        "modes": modes,
        "modes_skipped": skipped,
        "load_average": load_average(),
        "warmup": args.warmup,
        "repeats": args.repeats,
        "gen_repeats": args.gen_repeats,
        "seconds": round(time.time() - t_start, 1),
        "roofline": roofline,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "rows": rows, "derived": derived}, indent=1) + "\n"
    )
    out.with_suffix(".md").write_text(markdown(meta, rows, derived))
    print(f"wrote {out.with_suffix('.md')} and .json")


def point_flops(workload: str, items: int) -> float | None:
    """FLOPs of one call of a point, counted on cosmobench's eager fp32 call; generation is
    n times :func:`galaxy_flops`."""
    from cosmobench.bench.workloads import count_flops

    if workload.startswith("generate"):
        return galaxy_flops() * items or None
    net = workload.split()[0].lower()
    return count_flops(Ours("eager").train(net, items, 0))


@functools.cache
def galaxy_flops() -> float:
    """One galaxy's FLOPs through the paper's own layers (the flow, and the VAE decoder's
    transposed convolutions: ``bench.generation.sample_flops``), counted once: the sampler's
    recast decoder computes the same function with a few more FLOPs, which must not lower
    the ceiling."""
    from cosmobench.bench.generation import sample_flops

    ours = Ours("eager")
    ours.generate(1, 0)  # builds the sampler
    return sample_flops(ours.sampler, 1) or 0.0


def ceilings(rows: list[dict], modes: list[str], args: argparse.Namespace) -> dict:
    """FLOPs per point, the roofline per precision, and each point's ceiling against the peer
    (added to ``rows``); the roofline and its kernels are returned for the record."""
    from cosmobench.bench.peak import measure_roofline

    cpu = torch.device("cpu")
    precisions = ["fp32"] + (["bf16"] if any("bf16" in m for m in modes) else [])
    roof = {p: measure_roofline(cpu, p) for p in precisions}
    for r in rows:
        flops = point_flops(r["workload"], r["items"])
        r["flops"] = flops
        if not flops:
            continue
        r["peer_fraction"] = {p: flops / r["peer_s"] / roof[p]["flops_per_s"] for p in roof}
        r["eager_fraction"] = flops / r["cosmobench_s"] / roof["fp32"]["flops_per_s"]
        r["ceiling"] = {p: r["peer_s"] / (flops / roof[p]["flops_per_s"]) for p in roof}
        print(f"{r['workload']:28s} {flops / 1e9:8.2f} GFLOP  ceiling "
              + "  ".join(f"{p} {c:5.2f}x" for p, c in r["ceiling"].items()), flush=True)
    return {p: {k: v[k] for k in ("flops_per_s", "kernel", "kernels", "theoretical")}
            for p, v in roof.items()}


def markdown(meta: dict, rows: list[dict], derived: dict) -> str:
    """The ratio table: the peer, cosmobench eager (fp32) and, with several modes, each mode
    and the best; how sure each ratio is; and, when measured, the ceilings."""
    modes = meta["modes"]
    args = argparse.Namespace(**{k: meta[k] for k in ("threads", "repeats", "gen_repeats",
                                                      "warmup")})
    lines = [
        "# cosmobench vs a Keras + TFP peer (interleaved call by call, one run)",
        "",
        f"`{meta['command']}`",
        "",
        f"{meta['cpu']} ({meta['capability']}), {args.threads} threads on both sides, "
        f"torch {meta['torch']}, TensorFlow {meta['tensorflow']} (the peer: Keras "
        f"``train_on_batch``, a graph-compiled fp32 step; generation in a ``tf.function``); "
        f"median of {args.repeats} rounds of steps ({args.gen_repeats} of generations), "
        f"each round one peer call then one call per mode, after {args.warmup} warm-up; "
        f"load average at the end {meta['load_average']}; "
        f"{meta['seconds']:.0f} s in all.",
        "",
    ]
    if meta.get("thread_env"):
        lines += ["Thread and instruction-set variables (both sides): "
                  + ", ".join(f"`{k}={v}`" for k, v in meta["thread_env"].items()) + ".", ""]
    for m, why in meta["modes_skipped"].items():
        lines += [f"- mode {m} not timed: {why}", ""]
    head = ["workload", "Keras peer", "cosmobench eager", "eager ÷ peer speed", "CPU-time ratio"]
    others = [m for m in modes if m != "eager"]
    head += [f"{m}" for m in others]
    if others:
        head += ["best mode", "best ÷ peer speed"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["workload"],
            f"{r['peer_s'] * 1e3:.1f} ms",
            f"{r['cosmobench_s'] * 1e3:.1f} ms",
            f"{r['ratio']:.2f}×",
            f"{r['cpu_ratio']:.2f}×",
        ]
        cells += [f"{r['modes'][m]['s'] * 1e3:.1f} ms" for m in others]
        if others:
            cells += [r["best_mode"], f"{r['best_ratio']:.2f}×"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    spread = derived_intervals(rows)
    lines += [f"- {k}: {v:.3f}" + (f" [90 % interval {spread[k][0]:.3f}, {spread[k][1]:.3f}]"
                                   if k in spread else "") for k, v in derived.items()]
    if all("peer_times" in r and all("times" in m for m in r["modes"].values()) for r in rows):
        lines += [
            "",
            "## How sure each ratio is",
            "",
            "The ratio of medians above, with its 90 % interval from a paired bootstrap over "
            "the rounds (whole rounds resampled), and the median of the per-round ratios; "
            "a target is met beyond this run's noise where the interval's low end reaches it.",
            "",
            "| workload | eager ÷ peer [90 % interval] | per-round median | best mode ÷ peer "
            "[90 % interval] | per-round median |",
            "|---|---|---|---|---|",
        ]
        for r in rows:
            stats = paired_stats(r)
            e, b = stats["eager"], stats[r["best_mode"]]
            lines.append(
                f"| {r['workload']} | {e['ratio']:.2f}× [{e['lo']:.2f}, {e['hi']:.2f}] | "
                f"{e['round_median']:.2f}× | {r['best_mode']} {b['ratio']:.2f}× "
                f"[{b['lo']:.2f}, {b['hi']:.2f}] | {b['round_median']:.2f}× |"
            )
    roof = meta.get("roofline")
    if roof:
        precisions = list(roof)
        lines += [
            "",
            "## What the hardware allows",
            "",
            "Roofline measured after the timing, on the same machine: "
            + "; ".join(f"{p} {v['flops_per_s'] / 1e9:.0f} GFLOP/s ({v['kernel']}; theoretical "
                        f"{v['theoretical'].get('flops_per_s', 0) / 1e9:.0f}: "
                        f"{v['theoretical'].get('source', '?')})" for p, v in roof.items())
            + ". FLOPs: matrix products and convolutions of cosmobench's call (torch's "
            "``FlopCounterMode``). **Ceiling**: the peer's time over the time of those FLOPs "
            "at the roofline: the speed ratio of code running every FLOP at the fastest rate "
            "measured here in that precision (the CPU's true peak is somewhat higher).",
            "",
        ]
        head = ["workload", "GFLOP per call", "peer ÷ fp32 roofline",
                "cosmobench eager ÷ fp32 roofline"]
        head += [f"ceiling in {p} (× peer)" for p in precisions]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            if not r.get("flops"):
                continue
            cells = [r["workload"], f"{r['flops'] / 1e9:.2f}",
                     f"{r['peer_fraction']['fp32']:.0%}", f"{r['eager_fraction']:.0%}"]
            cells += [f"{r['ceiling'][p]:.2f}×" for p in precisions]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
