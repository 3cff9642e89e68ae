"""Time galaxy generation (flow sample -> decoder -> counts) at the paper's n and beyond.

What is timed: ``GalaxySampler(n)`` (``cosmobench.generate``), networks of the paper's size
with their **random initial weights** (the cost of a sample does not depend on the weights'
values), n = 1, 10, 100, 500, 1000, 5000 (Arcelin 2021, Fig. 4) and 10^5, in batches of at
most ``--batch-size`` (each batch's images returned on the device, then dropped, as a
generator streaming to a store does). Modes:

* ``zuko-fp32``  -- zuko's own MAF inverse (``flow().transform.inv``), fp32 decoder: the baseline;
* ``fast-fp32``  -- :class:`~cosmobench.generate.maf.FastMAF`, fp32 decoder;
* ``fast-bf16``  -- FastMAF, decoder under bf16 autocast (the flow stays fp32);
* ``*-graph``    -- (CUDA) the whole sample of each batch captured as one CUDA graph;
* ``*-compile``  -- the decoder (and inverse normalisation) through ``torch.compile``.

Also the latent sampler alone (``flow-zuko`` vs ``flow-fast``, n = 1 ... 1000): the part of
the work that the fast sampler changes. Protocol: one warm-up of 100 galaxies per mode (the
paper's), one untimed call per (mode, n), then R timed repeats (device-synchronised wall
clock); median, IQR, min and images/s per point, raw times kept. The paper's V100 and IPU
seconds are listed beside ours.

    python benchmarks/generation.py                      # this CPU, all of the above
    python benchmarks/generation.py --device cuda --tag h100 \
        --modes zuko-fp32,fast-fp32,fast-bf16,fast-fp32-graph,fast-bf16-graph

Writes ``benchmarks/results/generation[_<tag>].{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from cosmobench.bench.env import capture_env, load_average
from cosmobench.bench.timing import RawTiming, WallClock
from cosmobench.generate import FastMAF, GalaxySampler
from cosmobench.models import VAE, BandNormalizer, FlowConfig, LatentFlow, VAEConfig
from cosmobench.reference import load_reference

PAPER_N = [1, 10, 100, 500, 1000, 5000]
BAND_MAX = [300.0, 2000.0, 6000.0, 8000.0, 9000.0, 10000.0]  # plausible I_b (e-)


def repeats_for(n: int, budget: float) -> int:
    """More repeats for cheap points; at least 3 (1 for the 10^5 point)."""
    return 1 if n >= 50_000 else max(3, min(15, int(budget / max(n, 1))))


def timed(fn, device: torch.device, n: int, repeats: int) -> dict:
    """``repeats`` single calls on the library's synchronised wall clock, and their
    statistics (:mod:`cosmobench.bench.timing`)."""
    clock = WallClock(device)
    times = [clock.time_block(fn, 1) for _ in range(repeats)]
    st = RawTiming(1, tuple(times)).stats()
    return {"median_s": st.median_s, "iqr_s": st.iqr_s, "min_s": st.min_s,
            "repeats": len(times), "images_per_s": n / st.median_s, "raw_s": times}


def build(device: torch.device):
    torch.manual_seed(0)
    vae, flow = VAE(VAEConfig()), LatentFlow(FlowConfig())
    return vae, flow, BandNormalizer(BAND_MAX)


def generate_n(sampler: GalaxySampler, n: int, batch: int) -> None:
    for start in range(0, n, batch):
        sampler(min(batch, n - start))  # images on the device, dropped


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--modes", default="zuko-fp32,fast-fp32,fast-bf16,fast-fp32-compile")
    p.add_argument("--n", default=",".join(map(str, PAPER_N)), help="comma-separated n")
    p.add_argument("--big", type=int, default=100_000, help="extra n (0: none)")
    p.add_argument("--big-modes", default=None, help="modes timed at --big (default: all)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--budget", type=int, default=3000, help="images per point, about")
    p.add_argument("--flow-n", default="1,10,100,1000", help="n of the latent-only timing")
    p.add_argument("--tag", default="", help="suffix of the results files")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--render", default=None, help="only rewrite the .md/.png of this .json")
    p.add_argument("--note", action="append", default=[], help="a note for the record")
    args = p.parse_args(argv)
    if args.render:
        path = Path(args.render)
        result = json.loads(path.read_text())
        result["notes"] = result.get("notes", []) + args.note
        path.write_text(json.dumps(result, indent=1) + "\n")
        modes = result["config"]["modes"].split(",")
        path.with_suffix(".md").write_text(markdown(result, modes))
        figure(result, modes, path.with_suffix(".png"))
        return

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    modes = args.modes.split(",")
    ns = [int(v) for v in args.n.split(",")]
    big_modes = modes if args.big_modes is None else args.big_modes.split(",")
    env = capture_env(device, ["python", *sys.argv])
    ref = load_reference("arcelin2021")["generate"]
    paper = {n: (g, i) for n, g, i in zip(ref["n"], ref["gpu_s"], ref["ipu_s"], strict=True)}
    vae, flow, norm = build(device)
    records = []

    print(f"device {device} ({env['cpu_model'] if device.type == 'cpu' else env['gpu']['name']}),"
          f" {torch.get_num_threads()} threads, load {load_average()}")
    # -- the latent sampler alone ---------------------------------------------------------
    fast = FastMAF(flow.flow, device)
    zflow = flow.flow.to(device)
    for n in [int(v) for v in args.flow_n.split(",") if v]:
        eps = torch.randn(n, 32, device=device)
        with torch.inference_mode():
            def zuko_call(eps=eps):
                d = zflow()
                d.transform.inv(d.base.mean + d.base.stddev * eps)
            for name, fn in (("flow-zuko", zuko_call), ("flow-fast", lambda eps=eps: fast(eps))):
                fn()
                rec = {"workload": "flow-sample", "mode": name, "n": n,
                       **timed(fn, device, n, repeats_for(n, args.budget) + 2)}
                records.append(rec)
                print(f"  {name:16s} n={n:<7d} {rec['median_s']:.4f} s")

    # -- whole generation -----------------------------------------------------------------
    for mode in modes:
        kind, precision, *extra = mode.split("-")
        sampler = GalaxySampler(vae, flow, norm, device=device, precision=precision,
                                fast=kind == "fast", cuda_graph="graph" in extra,
                                compile="compile" in extra, batch_size=args.batch_size)
        generate_n(sampler, 100, args.batch_size)  # the paper's warm-up
        for n in ns + ([args.big] if args.big and mode in big_modes else []):
            generate_n(sampler, min(n, args.batch_size), args.batch_size)  # this batch size
            load = load_average()
            rec = {"workload": "generate", "mode": mode, "n": n,
                   **timed(lambda s=sampler, n=n: generate_n(s, n, args.batch_size), device, n,
                           repeats_for(n, args.budget)),
                   "load_average": load, "paper_v100_s": paper.get(n, (None, None))[0],
                   "paper_ipu_s": paper.get(n, (None, None))[1]}
            records.append(rec)
            print(f"  {mode:16s} n={n:<7d} {rec['median_s']:9.4f} s  "
                  f"{rec['images_per_s']:9.1f} img/s  (x{rec['repeats']})", flush=True)
        del sampler

    env["load_average_end"] = load_average()
    result = {"schema": "cosmobench.generation-benchmark", "schema_version": 1, "env": env,
              "config": vars(args), "weights": "random initialisation (paper-size VAE and "
              "flow); the cost of a sample does not depend on the weights' values",
              "reference": ref["what"], "notes": args.note, "records": records}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "generation" + (f"_{args.tag}" if args.tag else "")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{stem}.md").write_text(markdown(result, modes))
    figure(result, modes, out / f"{stem}.png")
    print(f"wrote {out / stem}.json/.md/.png")


def markdown(result: dict, modes: list[str]) -> str:
    env, recs = result["env"], result["records"]
    machine = env["gpu"]["name"] if env.get("gpu") else env["cpu_model"]
    gen = {(r["mode"], r["n"]): r for r in recs if r["workload"] == "generate"}
    ns = sorted({r["n"] for r in recs if r["workload"] == "generate"})
    lines = [
        f"# Generation timings on {machine} ({env['device']}, {env['threads']} threads)",
        "",
        f"Command: `{' '.join(env['command'])}`  ",
        f"torch {env['torch']}, zuko {env.get('zuko')}, cosmobench {env['cosmobench']} "
        f"({env.get('git_commit')}), {env['created']}  ",
        f"Load average at start / end: {env['load_average_start']} / "
        f"{env.get('load_average_end')} (shared machine: compare modes as ratios).  ",
        f"Weights: {result['weights']}.",
        "",
        "Seconds to generate n galaxies (median of repeats after warm-up; images/s in "
        "brackets), with the paper's V100 and IPU seconds (Arcelin 2021, Fig. 4):",
        "",
        "| n | " + " | ".join(modes) + " | paper V100 | paper IPU | fastest here | "
        "zuko-fp32 / fastest | V100 / fastest |",
        "|---:|" + "---:|" * (len(modes) + 2) + "---|---:|---:|",
    ]
    for n in ns:
        here = {m: gen[(m, n)] for m in modes if (m, n) in gen}
        cells = [f"{here[m]['median_s']:.3g} ({here[m]['images_per_s']:.3g}/s)" if m in here
                 else "–" for m in modes]
        any_rec = next(iter(here.values()))
        v100, ipu = any_rec.get("paper_v100_s"), any_rec.get("paper_ipu_s")
        best = min(here, key=lambda m: here[m]["median_s"])
        t_best = here[best]["median_s"]
        base = f"{here['zuko-fp32']['median_s'] / t_best:.2f}" if "zuko-fp32" in here else "–"
        vs_v100 = f"{v100 / t_best:.2f}" if v100 else "–"
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {v100 or '–'} | {ipu or '–'} | "
                     f"{best} | {base} | {vs_v100} |")
    flow = {(r["mode"], r["n"]): r for r in recs if r["workload"] == "flow-sample"}
    fns = sorted({n for _, n in flow})
    if fns:
        lines += ["", "Latent sampler alone (32-d MAF, 8 transforms x 32 passes), seconds:", "",
                  "| n | zuko | FastMAF | speed-up |", "|---:|---:|---:|---:|"]
        for n in fns:
            z, f = flow[("flow-zuko", n)]["median_s"], flow[("flow-fast", n)]["median_s"]
            lines.append(f"| {n} | {z:.4g} | {f:.4g} | {z / f:.1f} |")
    if result.get("notes"):
        lines += ["", "Notes:", "", *[f"- {note}" for note in result["notes"]]]
    return "\n".join(lines) + "\n"


def figure(result: dict, modes: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in result["records"] if r["workload"] == "generate"]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for m in modes:
        pts = sorted((r["n"], r["median_s"]) for r in recs if r["mode"] == m)
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", label=f"{m} (this run)")
    ref = load_reference("arcelin2021")["generate"]
    ax.plot(ref["n"], ref["gpu_s"], "k--s", label="paper: V100")
    ax.plot(ref["n"], ref["ipu_s"], "k:^", label="paper: IPU")
    machine = result["env"]["gpu"]["name"] if result["env"].get("gpu") else \
        result["env"]["cpu_model"]
    ax.set(xscale="log", yscale="log", xlabel="galaxies generated n",
           ylabel="seconds", title=f"generation time: {machine}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
