"""CLI commands ``generate`` (VAE + flow -> a store of galaxies) and ``evaluate-generation``.

Options fill a :class:`~cosmobench.generate.GenerateConfig` and call
:func:`cosmobench.generate.generate` or :func:`cosmobench.generate.evaluate_generation`;
bad input is a one-line error. ``torchrun --nproc-per-node N -m cosmobench -- generate ...``
splits the chunks across N processes writing the one store (the ``--`` keeps torchrun's own
parser from reading ``--n`` as an abbreviation of its ``--nnodes``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from cosmobench.cli.app import app, console
from cosmobench.errors import CosmobenchError

__all__ = ["generate_command", "evaluate_generation_command"]

Opt = typer.Option


@app.command("generate")
def generate_command(
    vae: Annotated[Path, Opt("--vae", help="Run folder of the trained VAE.")],
    flow: Annotated[Path, Opt("--flow", help="Run folder of the flow trained on that VAE.")],
    n: Annotated[int, Opt("--n", help="Number of galaxies.")],
    out: Annotated[Path, Opt("--out", help="Output store (a Zarr folder, e.g. gen.zarr).")],
    seed: Annotated[int, Opt(help="Master seed: galaxy i depends only on (seed, i).")] = 0,
    noise: Annotated[bool, Opt("--noise", help="Also store LSST Poisson-noisy images.")] = False,
    constants: Annotated[str, Opt(help="Sky level: surveycodex or arcelin2021.")] = "surveycodex",
    years: Annotated[float, Opt(help="Survey depth of the sky level, years.")] = 10.0,
    precision: Annotated[str, Opt(help="Decoder precision: fp32 or bf16 (autocast).")] = "fp32",
    device: Annotated[str, Opt(help="Torch device (cuda = cuda:LOCAL_RANK).")] = "cpu",
    batch_size: Annotated[int | None, Opt(help="Galaxies per network batch (memory only) "
                                          "[default: 32 on cpu, 2048 on gpu].")] = None,
    chunk_size: Annotated[int, Opt(help="Galaxies per stored chunk (unit of resume).")] = 1024,
    cuda_graph: Annotated[bool, Opt("--cuda-graph", help="One CUDA graph per batch.")] = False,
    compile: Annotated[bool, Opt("--compile", help="torch.compile the decoder.")] = False,
    png: Annotated[Path | None, Opt(help="Write a colour grid of galaxies here.")] = None,
    progress: Annotated[bool, Opt("--progress/--no-progress", help="Progress bar.")] = True,
) -> None:
    """Generate galaxies with a trained VAE and latent flow into a store; rerun to resume."""
    from cosmobench.devices import resolve_device
    from cosmobench.generate import GenerateConfig, generate
    from cosmobench.outputs import check_image_path, check_store_output

    if cuda_graph and resolve_device(device).type != "cuda":
        raise CosmobenchError(
            f"--cuda-graph needs a CUDA device; got --device {device} (drop --cuda-graph)"
        )
    if cuda_graph and compile:
        raise CosmobenchError("give --cuda-graph or --compile, not both")
    if n >= 1:
        check_store_output(out, n, images=2 if noise else 1)
    if png is not None:
        check_image_path(png)
    cfg = GenerateConfig(
        vae_run=str(vae), flow_run=str(flow), n=n, seed=seed, chunk_size=chunk_size,
        noise=noise, constants=constants, years=years, precision=precision,
    )
    t0 = time.perf_counter()
    path = generate(cfg, out, device=device, batch_size=batch_size, cuda_graph=cuda_graph,
                    compile=compile, progress=progress, png=png)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, rank 0 reports
    console.print(f"generated {n:,} galaxies in [bold]{path}[/] "
                  f"({time.perf_counter() - t0:.1f} s)", highlight=False)
    if png is not None:
        console.print(f"wrote {png}", highlight=False)


@app.command("evaluate-generation")
def evaluate_generation_command(
    gen: Annotated[Path, typer.Argument(help="A store made by generate.")],
    reference: Annotated[Path, Opt("--reference", help="A simulated store to compare with.")],
    out: Annotated[Path, Opt("--out", help="Folder for fidelity.json and the PNGs.")],
    n: Annotated[int | None, Opt(help="Galaxies per compared set [default: as many as the "
                                 "generated store and each reference half allow].")] = None,
    progress: Annotated[bool, Opt("--progress/--no-progress", help="Progress bar.")] = True,
) -> None:
    """Flux, size and ellipticity (HSM adaptive moments) of generated vs simulated galaxies:
    Wasserstein distances, with two independent simulated sets as the floor."""
    from cosmobench.generate import evaluate_generation, fidelity_table
    from cosmobench.outputs import check_output

    check_output(out, "dir", need_bytes=8 << 20)
    result = evaluate_generation(gen, reference, out, n=n, progress=progress)
    console.print(fidelity_table(result))
    console.print(f"wrote {out / 'fidelity.json'}, hist_*.png and grid.png", highlight=False)
