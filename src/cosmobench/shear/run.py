"""``measure_shear``: every estimator on a shear-test store, raw and metacalibrated.

The store's galaxies are cut into blocks of ``block`` galaxies (4 images each); a block is
measured by one worker process (or in this process), which reads its noisy stamps, makes
the metacalibration images if asked (:mod:`cosmobench.shear.metacal`), runs each estimator
on them (:mod:`cosmobench.shear.estimators`) and returns the estimates, which are kept on
disk if asked (:mod:`cosmobench.shear.resume`: a killed measurement resumes). The
statistics (:mod:`cosmobench.shear.bias`) then run on the whole store in this process.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from cosmobench.config import Config
from cosmobench.errors import CosmobenchError, check_choice, check_positive
from cosmobench.shear.bias import ERROR_METHODS, binned_bias, group_sums, shear_bias
from cosmobench.shear.design import ShearDesign, load_design
from cosmobench.shear.estimators import EstimatorSpec, Measurer, parse_estimators
from cosmobench.shear.metacal import VARIANTS, Metacal, responses
from cosmobench.shear.resume import UnitCache, unit_key

__all__ = ["ShearConfig", "measure_shear", "measure_block"]


@dataclasses.dataclass(frozen=True)
class ShearConfig(Config):
    """Settings of one ``cosmobench shear`` measurement.

    Attributes:
        estimators: ``truth``, ``ksb``, ``regauss`` and/or run folders of a cnn or bnn.
        metacal: also measure each image estimator with metacalibration.
        metacal_galaxies: metacalibrate only the first this-many galaxies (its cost is
            ~30 GalSim FFT draws per six-band stamp); ``None``: all.
        errors: ``bootstrap`` or ``jackknife`` over galaxies.
        resamples: bootstrap draws; blocks: jackknife blocks.
        snr_bins, size_bins: quantile bins of the r-band SNR and of the half-light radius.
        samples: weight samples per BNN prediction.
        block: galaxies per work unit.
        workers: worker processes.
        seed: seeds the bootstrap, the BNN weight noise and the metacal noise correction.
    """

    estimators: tuple[str, ...] = ("truth",)
    metacal: bool = False
    metacal_galaxies: int | None = None
    errors: str = "bootstrap"
    resamples: int = 500
    blocks: int = 100
    snr_bins: int = 4
    size_bins: int = 4
    samples: int = 10
    block: int = 16
    workers: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.estimators:
            raise CosmobenchError(
                "no estimator given; name one or more of truth, ksb, regauss or a cnn/bnn "
                "run folder, comma-separated"
            )
        check_choice("errors", self.errors, ERROR_METHODS)
        for name in ("resamples", "blocks", "snr_bins", "size_bins", "samples", "block"):
            check_positive(name, getattr(self, name))
        check_positive("workers", self.workers)
        if self.metacal_galaxies is not None:
            check_positive("metacal_galaxies", self.metacal_galaxies)


# ------------------------------------------------------------------------------ workers

_CACHE: dict[str, Any] = {}


def measure_block(
    store: str, specs: list[EstimatorSpec], start: int, stop: int, metacal: bool, cfg: ShearConfig
) -> tuple[int, dict[str, dict[str, np.ndarray]]]:
    """Estimates of galaxies ``start..stop-1``: ``{name: {"raw": (4n, 2), variant: ...}}``."""
    from cosmobench.store import open_dataset

    key = f"{store}\0{[s.name for s in specs]}\0{cfg.seed}\0{cfg.samples}"
    if _CACHE.get("key") != key:
        ds = open_dataset(store)
        image_specs = [s for s in specs if s.needs_images]
        bands = tuple(sorted({b for s in image_specs for b in s.bands}))
        _CACHE.clear()
        _CACHE.update(
            key=key,
            ds=ds,
            fwhm=np.asarray(ds.column("psf_fwhm"), np.float64),
            mcal=Metacal(ds.config, bands=bands or (2,)),
            measurer=Measurer(image_specs, ds.pixel_scale, samples=cfg.samples, seed=cfg.seed),
        )
    ds, fwhm, mc, measurer = (_CACHE[k] for k in ("ds", "fwhm", "mcal", "measurer"))
    rows = slice(4 * start, 4 * stop)
    images = np.asarray(ds.images("noisy", rows), np.float32)  # (4n, 6, S, S)
    images = np.where(np.isfinite(images), images, 0.0).astype(np.float32)
    f = fwhm[rows]
    r = 2
    psf_raw = [mc.psf.image(float(x), mc.pixel_scale) for x in f[:, r]]
    sets: dict[str, tuple[np.ndarray, list[Any], float]] = {
        "raw": (images, psf_raw, float(mc.sky[r]))
    }
    if metacal:
        var = {k: np.zeros_like(images) for k in VARIANTS}
        for j in range(len(images)):
            group, rot = start + j // 4, j % 2  # ±g copies (same rot) share the noise stream
            rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(group, rot)))
            for k, v in mc.images(images[j], f[j], rng).items():
                var[k][j] = v
        psf_mc = [mc.psf_image(float(x)) for x in f[:, r]]
        for k, v in var.items():
            sets[k] = (v, psf_mc, 2.0 * float(mc.sky[r]))
    out: dict[str, dict[str, np.ndarray]] = {}
    for spec in measurer.specs:
        out[spec.name] = {}
        for k, (imgs, psfs, sky_var) in sets.items():
            e = np.full((len(imgs), 2), np.nan)
            for slot in range(4):  # one batch per slot: a BNN uses the same weights in each
                idx = np.arange(slot, len(imgs), 4)
                if spec.kind == "network":
                    e[idx] = measurer.measure(spec, imgs[idx], None, sky_var, start)
                else:
                    e[idx] = [
                        measurer.measure(spec, imgs[i : i + 1], psfs[i], sky_var, start)[0]
                        for i in idx
                    ]
            out[spec.name][k] = e
    return stop - start, out


# ------------------------------------------------------------------------------ driver


def measure_shear(
    store: str | Path,
    cfg: ShearConfig,
    *,
    progress: bool = True,
    resume_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Shear biases of every estimator of ``cfg`` on the shear-test store ``store``.

    With ``resume_dir``, every finished block of estimates is kept there
    (:class:`~cosmobench.shear.resume.UnitCache`) and a rerun after a kill measures only
    the blocks that are missing.

    Returns:
        The content of ``shear.json``: ``{"schema", "store", "g", "n_galaxies", "config",
        "estimators": {name: {"kind", "m1", "m1_err", ..., "n_used", "n_failed",
        "snr_bins", "size_bins", "metacal": {...} | None}}}``.
    """
    from cosmobench.store import open_dataset

    ds = open_dataset(store)
    design = load_design(ds)
    specs = parse_estimators(list(cfg.estimators))
    g = design.n_groups
    n_mc = g if cfg.metacal_galaxies is None else min(cfg.metacal_galaxies, g)
    image_specs = [s for s in specs if s.needs_images]
    raw: dict[str, np.ndarray] = {s.name: np.full((4 * g, 2), np.nan) for s in image_specs}
    mcal = {s.name: {k: np.full((4 * n_mc, 2), np.nan) for k in VARIANTS} for s in image_specs}
    if image_specs:
        blocks = [(a, min(a + cfg.block, g)) for a in range(0, g, cfg.block)]
        units = [(a, b, cfg.metacal and a < n_mc) for a, b in blocks]
        # metacal blocks stop at n_mc
        units = [
            part
            for a, b, m in units
            for part in (
                [(a, min(b, n_mc), True), (n_mc, b, False)] if m and b > n_mc else [(a, b, m)]
            )
            if part[1] > part[0]
        ]
        path = str(Path(store).resolve())
        cache = None
        if resume_dir is not None:
            cache = UnitCache(resume_dir, unit_key(path, ds, image_specs, cfg))
        names = [s.name for s in image_specs]
        done, todo = [], []
        for u in units:
            hit = cache.get(u, names, ["raw", *VARIANTS] if u[2] else ["raw"]) if cache else None
            if hit is None:
                todo.append(u)
            else:
                done.append(((u[0], u[1]), hit))
        for (a, b), res in [*done, *_run_units(path, image_specs, todo, cfg, progress, cache)]:
            for name, d in res.items():
                raw[name][4 * a : 4 * b] = d["raw"]
                for k in VARIANTS:
                    if k in d:
                        mcal[name][k][4 * a : 4 * b] = d[k]
    result: dict[str, Any] = {
        "schema": "cosmobench.shear",
        "schema_version": 1,
        "store": str(ds.path),
        "g": design.g,
        "n_galaxies": g,
        "n_images": 4 * g,
        "metacal_galaxies": n_mc if cfg.metacal else 0,
        "config": cfg.to_dict(),
        "estimators": {},
    }
    for spec in specs:
        est = design.truth if spec.kind == "truth" else raw[spec.name]
        entry: dict[str, Any] = {"kind": spec.kind, "path": spec.path}
        entry.update(_bias(design, est, None, cfg, slice(0, g)))
        entry["metacal"] = None
        if cfg.metacal and spec.needs_images:
            m = mcal[spec.name]
            entry["metacal"] = {
                "n_galaxies": n_mc,
                **_bias(design, m["noshear"], responses(m), cfg, slice(0, n_mc)),
            }
        result["estimators"][spec.name] = entry
    return result


def _bias(
    design: ShearDesign, est: np.ndarray, resp: np.ndarray | None, cfg: ShearConfig, groups: slice
) -> dict[str, Any]:
    sums = group_sums(
        est, design.truth[4 * groups.start : 4 * groups.stop], design.component[groups], resp
    )
    kw = {"errors": cfg.errors, "resamples": cfg.resamples, "blocks": cfg.blocks, "seed": cfg.seed}
    return {
        **shear_bias(sums, **kw),
        "snr_bins": binned_bias(sums, design.snr[groups], cfg.snr_bins, **kw),
        "size_bins": binned_bias(sums, design.size[groups], cfg.size_bins, **kw),
    }


def _run_units(
    store: str,
    specs: list[EstimatorSpec],
    units: list[tuple[int, int, bool]],
    cfg: ShearConfig,
    progress: bool,
    cache: UnitCache | None = None,
) -> Any:
    """Yield ``((start, stop), estimates)`` per unit, in processes if ``cfg.workers > 1``;
    each finished unit is kept in ``cache`` before it is yielded."""
    from cosmobench.sim.run import _progress

    if not units:
        return
    total = sum(b - a for a, b, _ in units)
    with _progress(progress, total, 0, "measuring shear") as advance:
        if cfg.workers == 1 or len(units) == 1:
            for a, b, m in units:
                n, res = measure_block(store, specs, a, b, m, cfg)
                if cache is not None:
                    cache.put((a, b, m), res)
                advance(n)
                yield (a, b), res
            return
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(method)
        pool = ProcessPoolExecutor(max_workers=min(cfg.workers, len(units)), mp_context=ctx)
        try:
            futures = {
                pool.submit(measure_block, store, specs, a, b, m, cfg): (a, b, m)
                for a, b, m in units
            }
            for fut in as_completed(futures):
                n, res = fut.result()
                if cache is not None:
                    cache.put(futures[fut], res)
                advance(n)
                yield futures[fut][:2], res
        except mp.ProcessError:  # pragma: no cover
            raise CosmobenchError("a shear worker process died; rerun the command") from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
