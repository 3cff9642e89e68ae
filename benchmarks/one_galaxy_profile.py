"""Where the time of generating one galaxy goes, against a galaxy's share of a batch.

``GalaxySampler`` (``cosmobench generate``'s code) with networks of the paper's size: the
time of ``sampler(1)`` and ``sampler(100)``, interleaved, and of the pieces of one galaxy —
the base noise, the flow's latent (Jacobi sweeps), every layer of the batch-1 decoder in
sequence, and the tail (sigmoid, clamp, inverse normalisation) — beside the same decoder
layers' cost per galaxy in a batch of 32. Median of ``--repeats`` calls; writes
``benchmarks/results/one_galaxy_profile.md`` (or ``--out``). Run on an idle machine::

    .venv/bin/python benchmarks/one_galaxy_profile.py [--threads 2] [--repeats 15] [--out F]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from cosmobench.bench.env import cpu_model, load_average
from cosmobench.generate.sampler import GalaxySampler
from cosmobench.models import VAE, BandNormalizer, FlowConfig, LatentFlow, VAEConfig

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


def median_s(fn: Callable[[], object], repeats: int) -> float:
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=str(RESULTS / "one_galaxy_profile.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = load_average()
    vae, flow = VAE(VAEConfig()), LatentFlow(FlowConfig())
    sampler = GalaxySampler(vae, flow, BandNormalizer([1e3] * 6))
    with torch.inference_mode():
        sampler(1, seed=0), sampler(100, seed=0)  # warm-up
        one, hundred = [], []
        for i in range(args.repeats):  # interleaved: the ratio is what matters
            t = time.perf_counter()
            sampler(1, seed=i)
            t1 = time.perf_counter()
            sampler(100, seed=i)
            one.append(t1 - t)
            hundred.append(time.perf_counter() - t1)
        t1, t100 = statistics.median(one), statistics.median(hundred)
        eps = sampler.noise(1, seed=0)
        z = sampler.latents(eps)
        r = args.repeats
        pieces = {
            "base noise (per-galaxy seed)": median_s(lambda: sampler.noise(1, seed=0), r),
            "flow latent (Jacobi sweeps)": median_s(lambda: sampler.latents(eps), r),
            "decoder and tail (sampler.decode)": median_s(lambda: sampler.decode(z), r),
        }
        sweeps = list(sampler.maf.last_sweeps)
        plain = sampler._plain_decoder or vae.decoder
        one_layers = layer_times(plain, z, args.repeats)
        z32 = sampler.latents(sampler.noise(32, seed=1))
        batch_layers = [t / 32 for t in layer_times(plain, z32, max(3, args.repeats // 3))]

    lines = [
        "# One generated galaxy: where its time goes", "",
        f"`python benchmarks/one_galaxy_profile.py --threads {args.threads} --repeats "
        f"{args.repeats}" + (f" --out {args.out}`" if Path(args.out).name !=
                             "one_galaxy_profile.md" else "`"), "",
        f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()}), {args.threads} threads, "
        f"torch {torch.__version__}; networks of the paper's size, initial weights; medians; "
        f"load average {start} before, {load_average()} after.", "",
        f"- one galaxy: **{t1 * 1e3:.2f} ms**; 100 galaxies: {t100 * 1e3:.1f} ms "
        f"({t100 * 10:.2f} ms a galaxy); one galaxy's share of 100: **{t1 / t100:.3f}** "
        "(interleaved calls)",
        *(f"- {name}: {s * 1e3:.2f} ms" for name, s in pieces.items()),
        f"- flow sweeps per transform: {' '.join(map(str, sweeps))}", "",
        "The sampler's decoder (plain convolutions, frozen PReLUs), layer by layer in "
        "sequence: one galaxy, and per galaxy of a batch of 32:", "",
        "| layer | batch 1 (ms) | per galaxy at 32 (ms) | ratio |", "|---|---:|---:|---:|",
    ]
    for layer, a, b in zip(plain, one_layers, batch_layers, strict=True):
        name = type(layer).__name__
        lines.append(f"| {name} | {a * 1e3:.3f} | {b * 1e3:.3f} | {a / b:.1f} |" if b > 0 else
                     f"| {name} | {a * 1e3:.3f} | {b * 1e3:.3f} | — |")
    lines.append(f"| **all** | {sum(one_layers) * 1e3:.2f} | {sum(batch_layers) * 1e3:.2f} | "
                 f"{sum(one_layers) / sum(batch_layers):.1f} |")
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
