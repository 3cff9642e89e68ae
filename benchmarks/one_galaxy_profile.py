"""Where the time of generating one galaxy goes, against a galaxy's share of a batch.

``GalaxySampler`` (``cosmobench generate``'s code) with networks of the paper's size: the
time of ``sampler(1)`` and ``sampler(100)``, interleaved, with the inference decoder as it
runs (oneDNN-prepacked weights, the sub-pixel form of the stride-2 layers for one galaxy:
``cosmobench.models.onednn``, ``cosmobench.models.deconv``) and, in the same rounds, as it
ran before them (plain operators, four phase convolutions at every batch); then the pieces
of one galaxy — the base noise, the flow's latent (Jacobi sweeps), and the decoder with its
tail (sigmoid, clamp, inverse normalisation) — each repeated back to back and each right
after 100 galaxies (as one galaxy runs in the rounds: its weights no longer in cache); then
every layer of the batch-1 decoder in sequence, beside the same decoder
layers' cost per galaxy in a batch of 32, with each layer's rate in GFLOP/s against this
CPU's roofline in that precision (``cosmobench.bench.peak.measure_roofline``, measured after
the timing). A layer's FLOPs are those of the paper's layer it stands for (the VAE's own
decoder layer at the same position: a stride-2 layer's nine taps, not the sixteen of its
sub-pixel form), so a rate is the useful work done per second. Median of ``--repeats``
calls; writes ``benchmarks/results/one_galaxy_profile.md`` (or ``--out``). Run on an idle
machine::

    .venv/bin/python benchmarks/one_galaxy_profile.py [--threads 2] [--repeats 15]
        [--precision fp32|bf16] [--out F]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from cosmobench.bench.env import cpu_model, load_average
from cosmobench.bench.peak import measure_roofline
from cosmobench.bench.workloads import count_flops
from cosmobench.generate.sampler import GalaxySampler
from cosmobench.models import VAE, BandNormalizer, FlowConfig, LatentFlow, VAEConfig
from cosmobench.models.deconv import PhaseConv
from cosmobench.models.onednn import prepacking

RESULTS = Path(__file__).parent / "results"


def layer_times(decoder: torch.nn.Module, z: torch.Tensor, repeats: int) -> list[float]:
    """Median seconds of each layer of ``decoder``, run in sequence from ``z`` (cold weights,
    as in a real decode: each layer's weights were last touched one decode ago)."""
    layers = list(decoder)
    times: list[list[float]] = [[] for _ in layers]
    for _ in range(repeats):
        x = z
        for i, layer in enumerate(layers):
            t = time.perf_counter()
            x = layer(x)
            times[i].append(time.perf_counter() - t)
    return [statistics.median(t) for t in times]


def paper_flops(decoder: torch.nn.Module, z: torch.Tensor) -> list[float]:
    """FLOPs of each layer of the paper's ``decoder`` (the VAE's own) for the batch ``z``."""
    out, x = [], z
    with torch.inference_mode():
        for layer in decoder:
            y: list[torch.Tensor] = []  # the counted call's output, the next layer's input
            out.append(count_flops(lambda f=layer, i=x, o=y: o.append(f(i))) or 0.0)
            x = y[0]
    return out


def median_s(
    fn: Callable[[], object], repeats: int, before: Callable[[], object] | None = None
) -> float:
    """Median seconds of ``fn``, each call right after ``before`` (untimed) when given."""
    fn()
    out = []
    for _ in range(repeats):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


@contextlib.contextmanager
def decoder_as(variant: str) -> Iterator[None]:
    """``"now"``: the decoder as it runs; ``"before"``: plain operators, no sub-pixel form."""
    now = variant == "now"
    saved = PhaseConv.SUB_PIXEL_MAX_BATCH
    PhaseConv.SUB_PIXEL_MAX_BATCH = saved if now else 0
    try:
        with prepacking(now):
            yield
    finally:
        PhaseConv.SUB_PIXEL_MAX_BATCH = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--out", default=str(RESULTS / "one_galaxy_profile.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = load_average()
    vae, flow = VAE(VAEConfig()), LatentFlow(FlowConfig())
    sampler = GalaxySampler(vae, flow, BandNormalizer([1e3] * 6), precision=args.precision)
    variants = ("now", "before")
    with torch.inference_mode():
        for variant in variants:  # warm-up
            with decoder_as(variant):
                sampler(1, seed=0), sampler(100, seed=0)
        one: dict[str, list[float]] = {v: [] for v in variants}
        hundred: dict[str, list[float]] = {v: [] for v in variants}
        for i in range(args.repeats):  # interleaved: the ratios are what matter
            for variant in variants if i % 2 else variants[::-1]:
                with decoder_as(variant):
                    t = time.perf_counter()
                    sampler(1, seed=i)
                    t1 = time.perf_counter()
                    sampler(100, seed=i)
                    one[variant].append(t1 - t)
                    hundred[variant].append(time.perf_counter() - t1)
        t1 = {v: statistics.median(one[v]) for v in variants}
        t100 = {v: statistics.median(hundred[v]) for v in variants}
        eps = sampler.noise(1, seed=0)
        z = sampler.latents(eps)
        r = args.repeats
        calls = {
            "base noise (per-galaxy seed)": lambda: sampler.noise(1, seed=0),
            "flow latent (Jacobi sweeps)": lambda: sampler.latents(eps),
            "decoder and tail (sampler.decode)": lambda: sampler.decode(z),
        }
        pieces = {name: median_s(fn, r) for name, fn in calls.items()}
        sweeps = list(sampler.maf.last_sweeps)  # one galaxy's (the last flow call's)
        # the same pieces each timed right after 100 galaxies, as one galaxy is in the rounds
        # above: the caches then hold the last batch's activations, not this piece's weights
        after = {name: median_s(fn, r, lambda: sampler(100, seed=0)) for name, fn in calls.items()}
        plain = sampler._plain_decoder or vae.decoder
        dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32  # the decoder's
        one_layers = layer_times(plain, z.to(dtype), args.repeats)
        z32 = sampler.latents(sampler.noise(32, seed=1)).to(dtype)
        batch_layers = [t / 32 for t in layer_times(plain, z32, max(3, args.repeats // 3))]
    flops = paper_flops(vae.decoder, z.float())  # one galaxy, the paper's layers
    roof = measure_roofline(torch.device("cpu"), args.precision)
    peak = roof["flops_per_s"]

    def rate(f: float, t: float) -> str:
        return f"{f / t / 1e9:.0f}" if f and t > 0 else "—"

    lines = [
        "# One generated galaxy: where its time goes", "",
        f"`python benchmarks/one_galaxy_profile.py --threads {args.threads} --repeats "
        f"{args.repeats} --precision {args.precision}"
        + (f" --out {args.out}`" if Path(args.out).name != "one_galaxy_profile.md" else "`"),
        "",
        f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()}), {args.threads} threads, "
        f"torch {torch.__version__}, {args.precision}; networks of the paper's size, initial "
        f"weights; medians; load average {start} before, {load_average()} after.", "",
        "Interleaved calls, round by round (`now`: the decoder as it runs; `before`: plain "
        "operators and four phase convolutions at every batch, as before weight prepacking):",
        "",
        "| decoder | one galaxy (ms) | 100 galaxies (ms) | one galaxy's share of 100 |",
        "|---|---:|---:|---:|",
        *(f"| {v} | {t1[v] * 1e3:.2f} | {t100[v] * 1e3:.1f} | {t1[v] / t100[v]:.4f} |"
          for v in variants),
        "",
        f"- speed-up, before ÷ now: one galaxy **{t1['before'] / t1['now']:.2f}×**, "
        f"100 galaxies {t100['before'] / t100['now']:.2f}×",
        "",
        "The pieces of one galaxy (the decoder as it runs), each repeated back to back, and "
        "each timed right after 100 galaxies (cold caches, as in the rounds above):", "",
        *(f"- {name}: {s * 1e3:.2f} ms repeated, {after[name] * 1e3:.2f} ms after 100"
          for name, s in pieces.items()),
        f"- sum: {sum(pieces.values()) * 1e3:.2f} ms repeated, "
        f"{sum(after.values()) * 1e3:.2f} ms after 100",
        f"- flow sweeps per transform: {' '.join(map(str, sweeps))}", "",
        "The sampler's decoder as it runs (plain prepacked convolutions, frozen PReLUs), layer "
        "by layer in sequence: one galaxy, and per galaxy of a batch of 32; the rates count "
        "the paper's FLOPs of each layer (for one galaxy, in MFLOP):", "",
        "| layer | batch 1 (ms) | per galaxy at 32 (ms) | ratio | MFLOP | GFLOP/s at 1 | "
        "GFLOP/s at 32 |", "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for layer, a, b, f in zip(plain, one_layers, batch_layers, flops, strict=True):
        lines.append(f"| {type(layer).__name__} | {a * 1e3:.3f} | {b * 1e3:.3f} | "
                     + (f"{a / b:.1f}" if b > 0 else "—")
                     + f" | {f / 1e6:.1f} | {rate(f, a)} | {rate(f, b)} |")
    total, t1_all, t32_all = sum(flops), sum(one_layers), sum(batch_layers)
    lines += [
        f"| **all** | {t1_all * 1e3:.2f} | {t32_all * 1e3:.2f} | {t1_all / t32_all:.1f} | "
        f"{total / 1e6:.1f} | {rate(total, t1_all)} | {rate(total, t32_all)} |",
        "",
        f"Roofline in {args.precision}, measured after the timing: {peak / 1e9:.0f} GFLOP/s "
        f"({roof['kernel']}). The decoder's layers reach **{total / t1_all / peak:.0%}** of it "
        f"for one galaxy and **{total / t32_all / peak:.0%}** per galaxy of a batch of 32; "
        f"at the roofline a galaxy's decoder would take {total / peak * 1e3:.2f} ms.",
    ]
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
