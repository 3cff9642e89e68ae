"""Running a simulation: the per-galaxy pipeline, chunks, worker processes and Dask.

Galaxy *i* of a data set with seed *s* is a pure function of ``(config, i)``: its random
streams are children of ``numpy.random.SeedSequence(s, spawn_key=(i,))`` — exactly the
*i*-th child of ``SeedSequence(s).spawn(n)`` — one per purpose (population, shear, PSF,
noise). A ring partner (odd *i* with ``ring``) takes its population, shear and PSF streams
from galaxy *i − 1* and is rotated by 90°; its noise is its own. Hence the worker count,
the chunking and interruptions change nothing in the data.

The shear-test design (``SimConfig.shear_test``, Pujol et al. 2019, A&A 621, A2) draws
galaxy *k* as store rows 4k..4k+3: sign +1 (rows 4k, 4k+1) and −1 (4k+2, 4k+3), each a
90° ring pair (rows 4k+1 and 4k+3 rotated). All four take galaxy *k*'s population and PSF
streams. The ±g copies share one pixel-noise field: with s± the two noiseless stamps and
s̄ their mean, ``noisy± = s± + (Poisson(s̄ + B) − s̄ − B)``, so that ``noisy+ − noisy−``
equals ``noiseless+ − noiseless−`` and pixel noise cancels in paired differences; each
ring member has its own field (stream of row 4k or 4k+1).

The work unit is a chunk of the store: a worker (a process of a pool, or a Dask task)
simulates it, writes it and marks it done; ``simulate`` run again on the same output skips
the chunks marked done.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from cosmobench.errors import CosmobenchError
from cosmobench.sim.config import SimConfig
from cosmobench.sim.measure import NAN2, ksb, regauss
from cosmobench.sim.population import make_population
from cosmobench.sim.psf import PSFModel
from cosmobench.sim.render import add_poisson_noise, lensed_ellipticity, matched_filter_snr, render
from cosmobench.store import create_or_resume, open_writer
from cosmobench.survey import BANDS, exposure_time, lsst, mag_to_electrons, sky_per_pixel

__all__ = [
    "COLUMNS",
    "IMAGE_NAMES",
    "SHEAR_TEST_COLUMNS",
    "Simulator",
    "columns_of",
    "galaxy_seed",
    "simulate",
]

IMAGE_NAMES = ("noiseless", "noisy")
_F = "float32"
#: The simulation columns: name -> (dtype, shape of one row). See docs/architecture.md.
COLUMNS: dict[str, tuple[str, tuple[int, ...]]] = {
    "index": ("int64", ()),
    "seed": ("uint64", ()),
    "e1": (_F, ()),
    "e2": (_F, ()),
    "e1_int": (_F, ()),
    "e2_int": (_F, ()),
    "g1": (_F, ()),
    "g2": (_F, ()),
    "redshift": (_F, ()),
    "mag": (_F, (6,)),
    "flux": (_F, (6,)),
    "snr": (_F, (6,)),
    "hlr": (_F, ()),
    "bulge_frac": (_F, ()),
    "psf_fwhm": (_F, (6,)),
    "ksb_e1": (_F, ()),
    "ksb_e2": (_F, ()),
    "regauss_e1": (_F, ()),
    "regauss_e2": (_F, ()),
    "rot90": ("bool", ()),
    "sed_type": ("int8", ()),
    "cosmos_index": ("int64", ()),
}
#: Extra columns of a shear-test store: galaxy (group), sign of the shear, ring partner row.
SHEAR_TEST_COLUMNS: dict[str, tuple[str, tuple[int, ...]]] = {
    "group": ("int64", ()),
    "sign": ("int8", ()),
    "ring_partner": ("int64", ()),
}
STREAM_POPULATION, STREAM_SHEAR, STREAM_PSF, STREAM_NOISE = range(4)
R = BANDS.index("r")


def columns_of(cfg: SimConfig) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The columns of a store of ``cfg``: :data:`COLUMNS`, plus the shear-test ones."""
    return {**COLUMNS, **SHEAR_TEST_COLUMNS} if cfg.shear_test > 0 else dict(COLUMNS)


def galaxy_seed(seed: int, i: int) -> np.random.SeedSequence:
    """Galaxy *i*'s seed sequence: the *i*-th child of ``SeedSequence(seed)``."""
    return np.random.SeedSequence(seed, spawn_key=(i,))


class Simulator:
    """The per-galaxy pipeline of one :class:`SimConfig`: population → shear → PSF → pixels.

    Example:
        >>> sim = Simulator(SimConfig(n=4, seed=1))
        >>> images, columns = sim.chunk(0, 4)
        >>> images["noisy"].shape, columns["mag"].shape
        ((4, 6, 64, 64), (4, 6))
    """

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.constants = lsst(cfg.constants)
        self.exposure = exposure_time(self.constants, years=cfg.years, visits=cfg.visits)  # (6,) s
        self.sky = sky_per_pixel(self.constants, self.exposure, cfg.pixel_scale)  # (6,) e-/px
        self.population = make_population(cfg.population, cfg.mag_limit)
        self.psf = PSFModel(
            cfg.psf, cfg.psf_fwhm, seeing_sigma=cfg.seeing_sigma, moffat_beta=cfg.moffat_beta
        )

    def rng(self, i: int, stream: int) -> np.random.Generator:
        """Stream ``stream`` of galaxy ``i``: a child of :func:`galaxy_seed` ``(seed, i)``."""
        return np.random.default_rng(np.random.SeedSequence(self.cfg.seed, spawn_key=(i, stream)))

    def shear(self, parent: int) -> tuple[float, float]:
        """The lensing shear of galaxy ``parent`` (and of its ring partner)."""
        if self.cfg.shear_sigma <= 0:
            return self.cfg.shear
        rng = self.rng(parent, STREAM_SHEAR)
        while True:
            g1, g2 = self.cfg.shear_sigma * rng.standard_normal(2)
            if g1 * g1 + g2 * g2 < 0.81:
                return float(g1), float(g2)

    def galaxy(self, i: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Images ``{"noiseless", "noisy"}`` (6, S, S) and the column values of row ``i``."""
        cfg = self.cfg
        if cfg.shear_test > 0:
            images, columns = self.shear_quad(i // 4)
            return {k: v[i % 4] for k, v in images.items()}, columns[i % 4]
        rot90 = cfg.ring and i % 2 == 1
        parent = i - 1 if rot90 else i
        gal, fwhm, comp_flux, psfs = self._setup(parent, rot90)
        shear = self.shear(parent)
        noiseless = self._render(gal, comp_flux, psfs, shear)
        noisy = add_poisson_noise(noiseless, self.sky, self.rng(i, STREAM_NOISE))
        return {"noiseless": noiseless, "noisy": noisy}, self._columns(
            i, gal, shear, fwhm, comp_flux, noiseless, noisy, rot90
        )

    def shear_quad(self, k: int) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
        """Galaxy ``k`` of the shear-test design: images (4, 6, S, S) and 4 column dicts.

        Rows 4k..4k+3 are (+g, 0°), (+g, 90°), (−g, 0°), (−g, 90°); the shear ±g is on
        component 1 for even ``k`` and 2 for odd ``k``; the ±g copies share their noise.
        """
        g = self.cfg.shear_test
        out: list[tuple[dict[str, np.ndarray], dict[str, Any]]] = [None] * 4  # type: ignore[list-item]
        for rot in (0, 1):
            gal, fwhm, comp_flux, psfs = self._setup(k, bool(rot))
            drawn = {}
            for sign in (1, -1):
                shear = (sign * g, 0.0) if k % 2 == 0 else (0.0, sign * g)
                drawn[sign] = (shear, self._render(gal, comp_flux, psfs, shear))
            mean = 0.5 * (drawn[1][1].astype(np.float64) + drawn[-1][1].astype(np.float64))
            noise = add_poisson_noise(mean, self.sky, self.rng(4 * k + rot, STREAM_NOISE))
            noise = noise.astype(np.float64) - np.clip(mean, 0.0, None)  # (6, S, S)
            for sign, (shear, noiseless) in drawn.items():
                row = 4 * k + rot + (0 if sign > 0 else 2)
                noisy = (noiseless.astype(np.float64) + noise).astype(np.float32)
                cols = self._columns(row, gal, shear, fwhm, comp_flux, noiseless, noisy, bool(rot))
                cols.update(group=k, sign=sign, ring_partner=row ^ 1)
                out[row - 4 * k] = ({"noiseless": noiseless, "noisy": noisy}, cols)
        images = {name: np.stack([o[0][name] for o in out]) for name in IMAGE_NAMES}
        return images, [o[1] for o in out]

    def _setup(self, parent: int, rot90: bool) -> tuple[Any, np.ndarray, np.ndarray, list[Any]]:
        """Galaxy ``parent`` (rotated by 90° if asked), its PSF FWHM, fluxes and PSFs."""
        gal = self.population.draw(self.rng(parent, STREAM_POPULATION))
        if rot90:
            gal = gal.rotated(90.0)
        fwhm = self.psf.draw_fwhm(self.rng(parent, STREAM_PSF))
        comp_flux = mag_to_electrons(
            np.stack([c.mag for c in gal.components]), self.constants, self.exposure
        )
        return gal, fwhm, comp_flux, self.psf.profiles(fwhm)

    def _render(self, gal: Any, comp_flux: np.ndarray, psfs: list[Any], shear: Any) -> np.ndarray:
        cfg = self.cfg
        return render(
            gal, comp_flux, psfs, shear, stamp_size=cfg.stamp_size, pixel_scale=cfg.pixel_scale
        )  # (6, S, S) e-

    def _columns(
        self,
        i: int,
        gal: Any,
        shear: tuple[float, float],
        fwhm: np.ndarray,
        comp_flux: np.ndarray,
        noiseless: np.ndarray,
        noisy: np.ndarray,
        rot90: bool,
    ) -> dict[str, Any]:
        cfg = self.cfg
        ksb_e, rg_e = NAN2, NAN2
        if cfg.measure:
            psf_img = self.psf.image(float(fwhm[R]), cfg.pixel_scale)
            ksb_e = ksb(noiseless[R], psf_img, cfg.pixel_scale)
            rg_e = regauss(noisy[R], psf_img, cfg.pixel_scale, float(self.sky[R]))
        e1, e2 = lensed_ellipticity(gal.e_int, shear)
        flux = comp_flux.sum(axis=0)
        return {
            "index": i,
            "seed": galaxy_seed(cfg.seed, i).generate_state(1, np.uint64)[0],
            "e1": e1, "e2": e2, "e1_int": gal.e_int[0], "e2_int": gal.e_int[1],
            "g1": shear[0], "g2": shear[1],
            "redshift": gal.redshift,
            "mag": gal.mag, "flux": flux, "snr": matched_filter_snr(noiseless, self.sky),
            "hlr": gal.hlr, "bulge_frac": gal.bulge_frac, "psf_fwhm": fwhm,
            "ksb_e1": ksb_e[0], "ksb_e2": ksb_e[1], "regauss_e1": rg_e[0], "regauss_e2": rg_e[1],
            "rot90": rot90, "sed_type": gal.sed_type, "cosmos_index": gal.cosmos_index,
        }  # fmt: skip

    def chunk(self, start: int, stop: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Galaxies ``start..stop-1`` stacked: images (m, 6, S, S) and columns (m, ...)."""
        if self.cfg.shear_test > 0 and start % 4 == 0 and stop % 4 == 0:
            quads = [self.shear_quad(k) for k in range(start // 4, stop // 4)]
            rows = [
                ({n: q[0][n][j] for n in IMAGE_NAMES}, q[1][j]) for q in quads for j in range(4)
            ]
        else:
            rows = [self.galaxy(i) for i in range(start, stop)]
        images = {k: np.stack([r[0][k] for r in rows]) for k in IMAGE_NAMES}
        columns = {
            k: np.asarray([r[1][k] for r in rows], dtype=dt)
            for k, (dt, _) in columns_of(self.cfg).items()
        }
        return images, columns


# One simulator and writer per worker process, built on its first chunk.
_WORKER: dict[str, tuple[Simulator, Any]] = {}


def _simulate_chunk(out: str, cfg_json: str, k: int) -> int:
    """Worker entry point: simulate chunk ``k``, write it, mark it done; return its rows."""
    key = f"{out}\0{cfg_json}"
    if key not in _WORKER:
        _WORKER.clear()
        _WORKER[key] = (Simulator(SimConfig.from_dict(json.loads(cfg_json))), open_writer(out))
    sim, writer = _WORKER[key]
    start, stop = writer.chunk_range(k)
    images, columns = sim.chunk(start, stop)
    writer.write_chunk(k, images, columns)
    return stop - start


def simulate(
    cfg: SimConfig,
    out: str | Path,
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = True,
) -> Path:
    """Simulate ``cfg.n`` galaxies (``cfg.n_images`` images) into ``out``, resuming it.

    Arguments:
        cfg: the simulation config (stored in the data set).
        out: the store folder; an existing store with the same config is resumed, one with
            another config is an error.
        workers: worker processes (or Dask workers of a local cluster).
        scheduler: ``None`` (processes on this machine), ``"local"`` (a local Dask cluster
            of ``workers`` processes), ``"slurm:SPEC"`` (``workers`` Dask workers in Slurm
            jobs through dask-jobqueue: :mod:`cosmobench.sim.cluster`) or a Dask scheduler
            address (``tcp://host:8786``). The workers must see ``out``.
        progress: show a rich progress bar.

    Returns:
        The path of the complete store.
    """
    if not isinstance(workers, int) or workers < 1:
        raise CosmobenchError(f"workers must be an integer >= 1; got {workers!r}")
    out = Path(out)
    sim = Simulator(cfg)  # validates the population (e.g. the COSMOS folder) before writing
    with _dask_client(scheduler, workers) as client:  # connect before writing anything
        writer = create_or_resume(
            out, cfg.n_images, cfg.chunk_size, "simulation", store_config(cfg), columns_of(cfg),
            IMAGE_NAMES,
            bands=BANDS, pixel_scale=cfg.pixel_scale, stamp_size=cfg.stamp_size,
        )  # fmt: skip
        return _run(cfg, sim, writer, client, workers, out, progress)


def store_config(cfg: SimConfig) -> dict[str, Any]:
    """The config a store records: ``cfg.to_dict()`` without ``shear_test`` when it is off,
    so that stores written before the shear-test design existed still resume (reading
    them back, ``SimConfig.from_dict`` gives the field its default)."""
    out = cfg.to_dict()
    if not out.get("shear_test"):
        out.pop("shear_test", None)
    return out


def _run(
    cfg: SimConfig,
    sim: Simulator,
    writer: Any,
    client: Any,
    workers: int,
    out: Path,
    progress: bool,
) -> Path:
    pending = writer.pending_chunks()
    done_rows = cfg.n_images - sum(
        writer.chunk_range(k)[1] - writer.chunk_range(k)[0] for k in pending
    )
    cfg_json = json.dumps(cfg.to_dict())
    unit = "galaxies" if cfg.n_images == cfg.n else "images"  # a shear test: 4 per galaxy
    with _progress(progress, cfg.n_images, done_rows, f"simulating {out.name}", unit) as advance:
        if client is not None:
            futures = client.map(
                _simulate_chunk,
                [str(out)] * len(pending),
                [cfg_json] * len(pending),
                pending,
                pure=False,
            )
            from dask.distributed import as_completed as dask_completed

            for fut in dask_completed(futures):
                advance(fut.result())
        elif workers > 1 and len(pending) > 1:
            _run_pool(workers, str(out.resolve()), cfg_json, pending, advance)
        else:
            for k in pending:
                start, stop = writer.chunk_range(k)
                writer.write_chunk(k, *sim.chunk(start, stop))
                advance(stop - start)
    return writer.finalize()


def _run_pool(
    workers: int, out: str, cfg_json: str, pending: list[int], advance: Callable[[int], None]
) -> None:
    # forkserver: children start from a clean single-threaded server, not from this process
    # (which may hold zarr's I/O thread or torch's thread pools).
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["cosmobench.sim.run"])
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(pending)), mp_context=ctx,
        initializer=_die_with_parent, initargs=(os.getpid(),),
    )  # fmt: skip
    try:
        futures = [pool.submit(_simulate_chunk, out, cfg_json, k) for k in pending]
        for fut in as_completed(futures):
            advance(fut.result())
    except BrokenProcessPool:
        raise CosmobenchError(
            "a simulation worker process died (out of memory, or killed); rerun the same "
            "command to resume"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _die_with_parent(parent: int, period_s: float = 0.25) -> None:
    """Worker initializer: exit as soon as the main process is gone (SIGKILL, SIGTERM, ...).

    A worker is a child of the forkserver, not of the main process, so ``PR_SET_PDEATHSIG``
    would watch the wrong parent; a daemon thread polls the main process instead. With the
    workers gone, the forkserver and the resource tracker (which exit when their last client
    does) follow.
    """

    def watch() -> None:
        while _alive(parent):
            time.sleep(period_s)
        os._exit(1)

    threading.Thread(target=watch, name="cosmobench-parent-watch", daemon=True).start()


@contextlib.contextmanager
def _dask_client(scheduler: str | None, workers: int) -> Iterator[Any]:
    """A Dask client: ``None`` without a scheduler, a local cluster for ``"local"``."""
    if scheduler is None:
        yield None
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise CosmobenchError("--scheduler needs Dask: pip install 'cosmobench[dask]'") from None
    with contextlib.ExitStack() as stack:
        if scheduler.startswith("slurm:"):  # dask-jobqueue (cosmobench.sim.cluster)
            from cosmobench.sim.cluster import scale, slurm_cluster

            cluster = stack.enter_context(slurm_cluster(scheduler[len("slurm:") :]))
            client = stack.enter_context(Client(cluster))
            scale(cluster, workers)
        elif scheduler == "local":
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True,
                    dashboard_address=None, silence_logs=logging.ERROR,
                )
            )  # fmt: skip
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout="5s"))
            except (OSError, TimeoutError, ValueError, TypeError) as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
                raise CosmobenchError(
                    f"cannot reach the Dask scheduler {scheduler!r} ({first}); give 'local', "
                    "slurm:SPEC or a running scheduler's address such as tcp://host:8786"
                ) from None
        yield client


@contextlib.contextmanager
def _progress(
    enabled: bool, total: int, completed: int, label: str, unit: str = "galaxies"
) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda rows: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total, completed=completed, rate="")

        def advance(rows: int) -> None:
            bar.advance(task, rows)
            speed = bar.tasks[0].speed
            bar.update(task, rate="" if speed is None or math.isnan(speed) else f"{speed:.0f}/s")

        yield advance
