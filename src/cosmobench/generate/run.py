"""``cosmobench generate``: trained VAE + flow -> a generation store, batched and resumable.

The n galaxies are written chunk by chunk into the same Zarr store format as ``simulate``
(``kind="generation"``; images ``noiseless`` and, with ``noise``, ``noisy``; columns
``index``, ``seed``, ``latent``), so ``cosmobench inspect`` and every reader work on it.
Each chunk is marked done once written: rerunning the same command resumes, another
config is refused, and nothing already written is ever removed.

Under ``torchrun`` chunk *k* goes to rank ``k % world_size`` and each rank writes only its
chunks of the one store (rank 0 creates it; the ranks meet at two barriers). Galaxy *i* is
drawn from its own seed (:func:`~cosmobench.generate.sampler.galaxy_seeds`), so the store is
the same whatever the number of ranks, the batch size or an interruption.

Optional noise makes the galaxies look observed: background-subtracted Poisson noise of
source plus sky, ``Poisson(x + B_b) - B_b`` (GalSim's ``PoissonNoise(sky_level)``, as the
simulator), with the LSST sky per pixel ``B_b`` of :mod:`cosmobench.survey`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cosmobench.config import Config
from cosmobench.errors import CosmobenchError, check_choice, check_positive
from cosmobench.generate.sampler import PRECISIONS, GalaxySampler, galaxy_noise, galaxy_seeds

__all__ = ["GenerateConfig", "generate", "load_generator", "sky_levels", "add_sky_noise"]


@dataclasses.dataclass(frozen=True)
class GenerateConfig(Config):
    """What a generation store holds (stored as its ``config``; a resume must match it).

    Attributes:
        vae_run: run folder of the trained VAE (resolved to an absolute path).
        flow_run: run folder of the flow trained on that VAE's latents.
        n: number of galaxies.
        seed: master seed; galaxy *i* uses ``SeedSequence(seed, spawn_key=(i,))``.
        chunk_size: galaxies per stored chunk (the unit of resuming and of rank sharding).
        noise: also store ``noisy`` images with LSST Poisson noise.
        constants: survey constants of the sky level (``surveycodex`` or ``arcelin2021``).
        years: survey duration of the sky level (10 = full depth, as the simulator).
        precision: decoder precision, ``fp32`` or ``bf16`` (autocast; the flow stays fp32).
        vae_fingerprint: filled in from the VAE (so a retrained VAE cannot be mixed in).
        flow_fingerprint: filled in from the flow.
    """

    vae_run: str = ""
    flow_run: str = ""
    n: int = 1000
    seed: int = 0
    chunk_size: int = 1024
    noise: bool = False
    constants: str = "surveycodex"
    years: float = 10.0
    precision: str = "fp32"
    vae_fingerprint: str = ""
    flow_fingerprint: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n <= 0:
            raise CosmobenchError(f"n must be an integer > 0; got {self.n!r}")
        check_positive("chunk_size", self.chunk_size)
        if int(self.seed) != self.seed or self.seed < 0:
            raise CosmobenchError(f"seed must be an integer >= 0; got {self.seed!r}")
        check_positive("years", self.years)
        check_choice("precision", self.precision, PRECISIONS)
        from cosmobench.survey import CONSTANTS

        check_choice("constants", self.constants, CONSTANTS)


def load_generator(
    vae_run: str | Path, flow_run: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, nn.Module, nn.Module, dict[str, str]]:
    """Load ``(vae, flow, normalizer, fingerprints)``, refusing a flow of another VAE."""
    from cosmobench.train.runs import fingerprint, load_run, vae_fingerprint

    vae, vinfo = load_run(vae_run, "vae", device=device)
    flow, finfo = load_run(flow_run, "flow", device=device)
    normalizer = vinfo["normalizer"]
    latent, features = vae.config.latent, flow.config.features
    if latent != features:
        raise CosmobenchError(
            f"flow {flow_run} models {features}-d latents but VAE {vae_run} has latent size "
            f"{latent}: train a flow on this VAE (cosmobench train flow --vae {vae_run})"
        )
    vfp = vae_fingerprint(vae, normalizer)
    trained_on = finfo.get("vae_fingerprint")
    if trained_on != vfp:
        raise CosmobenchError(
            f"flow {flow_run} was trained on another VAE (fingerprint {trained_on}; {vae_run} "
            f"is {vfp}: other weights or normalisation): train a flow on this VAE "
            f"(cosmobench train flow --vae {vae_run})"
        )
    return vae, flow, normalizer, {"vae": vfp, "flow": fingerprint(flow.config, flow)}


def sky_levels(constants: str = "surveycodex", years: float = 10.0) -> np.ndarray:
    """LSST sky per pixel (electrons, shape (6,)) for the given constants and depth."""
    from cosmobench.survey import exposure_time, lsst, sky_per_pixel

    const = lsst(constants)
    return sky_per_pixel(const, exposure_time(const, years=years))


def add_sky_noise(images: np.ndarray, sky: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Background-subtracted Poisson noise, ``Poisson(x + B) - B``, galaxy ``i`` from ``seeds[i]``.

    Arguments:
        images: noiseless (n, 6, H, W) electrons, >= 0.
        sky: sky per pixel (6,) electrons.
        seeds: per-galaxy seeds (n,); the noise stream is ``SeedSequence([seed, 1])``,
            independent of the torch stream that drew the latent.
    """
    sky = np.asarray(sky, dtype=np.float64)[:, None, None]
    out = np.empty(images.shape, dtype=np.float32)
    for i, (img, s) in enumerate(zip(images, seeds, strict=True)):
        rng = np.random.default_rng(np.random.SeedSequence([int(s), 1]))
        out[i] = rng.poisson(np.clip(img.astype(np.float64), 0.0, None) + sky) - sky
    return out


def generate(
    cfg: GenerateConfig,
    out: str | Path,
    *,
    device: str = "cpu",
    batch_size: int | None = None,
    cuda_graph: bool = False,
    compile: bool = False,
    progress: bool = True,
    png: str | Path | None = None,
) -> Path:
    """Generate ``cfg.n`` galaxies into the store ``out`` (resuming it if it exists).

    Arguments:
        cfg: what to generate (the fingerprints are filled in here).
        out: the store folder (``GEN.zarr``); an existing store of another kind or config
            is refused untouched.
        device: torch device (``cuda`` means ``cuda:LOCAL_RANK`` under torchrun).
        batch_size: galaxies per network batch (memory; does not change the galaxies);
            default 32 on a CPU, 2048 on an accelerator.
        cuda_graph: capture each batch as one CUDA graph (CUDA only).
        compile: ``torch.compile`` the decoder (see ``GalaxySampler``: on a CPU the
            eager decoder is faster).
        progress: show a progress bar (rank 0).
        png: also write a colour grid of the first galaxies to this PNG.

    Returns:
        The store path.
    """
    from cosmobench.store import create_or_resume, open_writer
    from cosmobench.train.distributed import barrier, init_distributed, shutdown

    out = Path(out)
    _check_output(out)
    if batch_size is not None:
        check_positive("batch_size", batch_size)
    info = init_distributed(device)  # joins torchrun's process group, if any
    try:
        vae, flow, normalizer, fps = load_generator(cfg.vae_run, cfg.flow_run, info.device)
        cfg = cfg.replace(
            vae_run=str(Path(cfg.vae_run).resolve()),
            flow_run=str(Path(cfg.flow_run).resolve()),
            vae_fingerprint=fps["vae"],
            flow_fingerprint=fps["flow"],
        )
        sampler = GalaxySampler(
            vae, flow, normalizer, device=info.device, precision=cfg.precision,
            cuda_graph=cuda_graph, compile=compile, batch_size=batch_size,
        )
        latent = sampler.features
        columns = {"index": "int64", "seed": "uint64", "latent": ("float32", (latent,))}
        images = ("noiseless", "noisy") if cfg.noise else ("noiseless",)
        sky = sky_levels(cfg.constants, cfg.years)
        attrs = {"generator": {"vae_run": cfg.vae_run, "flow_run": cfg.flow_run,
                               "vae_fingerprint": fps["vae"], "flow_fingerprint": fps["flow"],
                               "sky_per_pixel": [float(b) for b in sky] if cfg.noise else None}}
        error = None
        if info.is_main:
            try:
                writer = create_or_resume(out, cfg.n, cfg.chunk_size, "generation",
                                          cfg.to_dict(), columns, images, extra_attrs=attrs)
            except CosmobenchError as e:
                error = e
        _agree(error is None, info.device)
        if error is not None:
            raise error
        if not info.is_main:
            writer = open_writer(out)
        mine = [k for k in writer.pending_chunks() if k % info.world == info.rank]
        _run_chunks(writer, mine, sampler, cfg, sky, progress and info.is_main)
        barrier()
        if info.is_main:
            writer.finalize()
            if png is not None:
                _write_grid(out, Path(png))
    finally:
        shutdown(info)  # leaves the group only if init_distributed made it
    return out


def _check_output(out: Path) -> None:
    """Refuse early, and without touching it, an output that is another kind of store."""
    if not out.exists():
        return
    if out.is_file():
        raise CosmobenchError(f"{out} is a file; --out must be a new or generation store")
    if (out / "zarr.json").is_file():
        try:
            kind = json.loads((out / "zarr.json").read_text()).get("attributes", {}).get("kind")
        except (OSError, ValueError):
            kind = None
        if kind not in (None, "generation"):
            raise CosmobenchError(
                f"{out} is a {kind} data set; generate writes a generation store: "
                "choose another --out"
            )


def _agree(ok: bool, device: torch.device) -> None:
    """All ranks learn whether rank 0 could create the store (no one waits forever)."""
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        flag = torch.tensor([0.0 if ok else 1.0], device=device)
        dist.all_reduce(flag)
        if flag.item() and ok:
            raise CosmobenchError("rank 0 could not open the output store (see its error)")


def _run_chunks(writer: Any, chunks: list[int], sampler: GalaxySampler, cfg: GenerateConfig,
                sky: np.ndarray, progress: bool) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    total = sum(writer.chunk_range(k)[1] - writer.chunk_range(k)[0] for k in chunks)
    columns = (TextColumn("generate"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("galaxies", total=total)
        for k in chunks:
            start, stop = writer.chunk_range(k)
            index = np.arange(start, stop, dtype=np.int64)
            seeds = galaxy_seeds(cfg.seed, index)
            z, x = sampler.sample_noise(galaxy_noise(seeds, sampler.features))
            noiseless = x.cpu().numpy()
            imgs = {"noiseless": noiseless}
            if cfg.noise:
                imgs["noisy"] = add_sky_noise(noiseless, sky, seeds)
            writer.write_chunk(k, imgs, {"index": index, "seed": seeds,
                                         "latent": z.cpu().numpy()})
            bar.advance(task, stop - start)


def _write_grid(out: Path, png: Path) -> Path:
    from cosmobench.generate.figures import save_grid
    from cosmobench.store import open_dataset

    ds = open_dataset(out)
    k = min(ds.n, 36)
    panels = {name: ds.images(name, slice(0, k)) for name in ds.image_names}
    try:
        return save_grid(panels, png, title=f"generated galaxies ({out.name})")
    except OSError as e:
        raise CosmobenchError(f"cannot write {png}: {e.strerror or e}") from None
