"""The shear estimators ``cosmobench shear`` compares: truth, HSM KSB, HSM REGAUSS, networks.

- ``truth``: the stored true sheared ellipticity (``e1``, ``e2``), a check of the
  statistics (m = c = 0 to rounding).
- ``ksb``, ``regauss``: GalSim's HSM (Kaiser, Squires & Broadhurst 1995; Hirata & Seljak
  2003) measured here on the **noisy** r band of each stamp, PSF-corrected with the store's
  PSF (:mod:`cosmobench.sim.measure`). The store's own ``ksb_e1``/``ksb_e2`` columns are
  measured on the noiseless r band (the paper's training label), which has no noise bias:
  they are not what a survey could measure, so they are not used here.
- a run folder of a trained ``cnn`` or ``bnn`` (``cosmobench train``): the mean of its
  predictive distribution of e1, e2 on the noisy six-band stamp. A BNN's weight samples are
  seeded per batch, and the four images of a galaxy are predicted in four batches with the
  same seed, so its weight noise cancels in the paired differences as the pixel noise does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosmobench.errors import CosmobenchError

__all__ = ["EstimatorSpec", "parse_estimators", "Measurer", "BUILTIN"]

BUILTIN = ("truth", "ksb", "regauss")
R_BAND = 2


@dataclass(frozen=True)
class EstimatorSpec:
    """One estimator: ``name`` (a run by its folder name), ``kind`` and, for a run, ``path``."""

    name: str
    kind: str  # truth | ksb | regauss | network
    path: str | None = None

    @property
    def needs_images(self) -> bool:
        return self.kind != "truth"

    @property
    def bands(self) -> tuple[int, ...]:
        """The bands the estimator reads (what metacalibration must process)."""
        return tuple(range(6)) if self.kind == "network" else (R_BAND,)


def parse_estimators(names: str | list[str]) -> list[EstimatorSpec]:
    """``"truth,ksb,regauss,RUN"`` → specs; unknown names and wrong runs are one-line errors."""
    from cosmobench.train import load_run

    items = names.split(",") if isinstance(names, str) else list(names)
    items = [s.strip() for s in items if s.strip()]
    if not items:
        raise CosmobenchError("--estimators is empty; give truth, ksb, regauss or run folders")
    specs: list[EstimatorSpec] = []
    for item in items:
        if item in BUILTIN:
            specs.append(EstimatorSpec(item, item))
            continue
        path = Path(item)
        if not path.is_dir():
            raise CosmobenchError(
                f"unknown estimator {item!r}; give truth, ksb, regauss or the run folder of a "
                "trained cnn or bnn"
            )
        load_run(path, expect_kind=("cnn", "bnn"))  # a one-line error for another kind
        specs.append(EstimatorSpec(path.resolve().name, "network", str(path.resolve())))
    names_seen = [s.name for s in specs]
    dup = sorted({n for n in names_seen if names_seen.count(n) > 1})
    if dup:
        raise CosmobenchError(f"estimator names must differ; {', '.join(dup)} given twice")
    return specs


class Measurer:
    """Measures e1, e2 with each estimator (one per worker process; networks load once).

    Arguments:
        specs: the estimators.
        pixel_scale: arcsec per pixel.
        samples: weight samples per BNN prediction.
        seed: seeds the BNN weight noise.
    """

    def __init__(
        self, specs: list[EstimatorSpec], pixel_scale: float, samples: int = 10, seed: int = 0
    ) -> None:
        self.specs = specs
        self.pixel_scale = pixel_scale
        self.samples = samples
        self.seed = seed
        self._models: dict[str, Any] = {}

    def _model(self, spec: EstimatorSpec) -> tuple[Any, list[int]]:
        if spec.name not in self._models:
            from cosmobench.train import load_run

            model, _ = load_run(spec.path, expect_kind=("cnn", "bnn"))
            targets = list(model.config.targets)
            if "e1" not in targets or "e2" not in targets:
                raise CosmobenchError(f"run {spec.path} does not predict e1 and e2")
            self._models[spec.name] = (model, [targets.index("e1"), targets.index("e2")])
        return self._models[spec.name]

    def measure(
        self, spec: EstimatorSpec, images: np.ndarray, psf_r: Any, sky_var: float, key: int
    ) -> np.ndarray:
        """``(n, 2)`` estimates of ``images`` ``(n, 6, S, S)`` (NaN where one fails).

        Arguments:
            psf_r: the r-band PSF image (GalSim) for HSM.
            sky_var: the r-band noise variance per pixel (REGAUSS).
            key: seeds a network's weight samples (same key, same weights).
        """
        from cosmobench.sim.measure import ksb, regauss

        if spec.kind == "ksb":
            return np.array([ksb(im[R_BAND], psf_r, self.pixel_scale) for im in images])
        if spec.kind == "regauss":
            return np.array(
                [regauss(im[R_BAND], psf_r, self.pixel_scale, sky_var) for im in images]
            )
        if spec.kind == "network":
            import torch

            model, cols = self._model(spec)
            x = torch.from_numpy(np.ascontiguousarray(images, np.float32))
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                torch.manual_seed(self.seed * 1_000_003 + key)
                pred = model.predict(x, samples=self.samples)
            return pred.mean[:, cols].double().numpy()
        raise ValueError(f"{spec.kind} has no image measurement")
