"""PSF models: the paper's fixed Kolmogorov, per-band LSST seeing, random seeing, Moffat.

A :class:`PSFModel` gives the FWHM per band for one galaxy (drawn from that galaxy's own
random stream when it varies) and the GalSim profiles for those FWHMs. Profiles of equal
FWHM are the same object, so the renderer draws a galaxy once per distinct PSF, not once
per band.

References:
    Kolmogorov turbulence: Fried (1966); GalSim's ``Kolmogorov`` (Rowe et al. 2015,
    arXiv:1407.7676). Moffat (1969), A&A 3, 455. LSST per-band seeing: surveycodex
    (Ivezić et al. 2019).
"""

from __future__ import annotations

import functools

import galsim
import numpy as np

from cosmobench.errors import check_choice
from cosmobench.survey import lsst

__all__ = ["PSFModel"]

SEEING_RANGE = (0.35, 2.0)  # arcsec: clip of the per-galaxy seeing


class PSFModel:
    """The PSF of a simulation.

    Arguments:
        kind: ``kolmogorov`` | ``lsst`` | ``seeing`` | ``moffat``.
        fwhm: arcsec: the fixed FWHM (kolmogorov, moffat) or the median seeing (seeing).
        seeing_sigma: natural-log width of the per-galaxy seeing.
        moffat_beta: Moffat index.
    """

    def __init__(
        self,
        kind: str,
        fwhm: float = 0.65,
        *,
        seeing_sigma: float = 0.2,
        moffat_beta: float = 3.5,
    ) -> None:
        check_choice("psf", kind, ("kolmogorov", "lsst", "seeing", "moffat"))
        self.kind = kind
        self.fwhm0 = float(fwhm)
        self.seeing_sigma = float(seeing_sigma)
        self.moffat_beta = float(moffat_beta)
        # Per-band LSST seeing always comes from surveycodex (the paper used one 0.65" PSF).
        self._lsst_fwhm = np.asarray(lsst("surveycodex").psf_fwhm)

    @property
    def varies(self) -> bool:
        """Whether the PSF changes from galaxy to galaxy."""
        return self.kind == "seeing"

    def draw_fwhm(self, rng: np.random.Generator) -> np.ndarray:
        """FWHM per band (arcsec, (6,)) for one galaxy; uses ``rng`` only for ``seeing``."""
        if self.kind == "lsst":
            return self._lsst_fwhm.copy()
        if self.kind == "seeing":
            s = self.fwhm0 * np.exp(self.seeing_sigma * rng.standard_normal())
            return np.full(6, float(np.clip(s, *SEEING_RANGE)))
        return np.full(6, self.fwhm0)

    def profiles(self, fwhm: np.ndarray) -> list[galsim.GSObject]:
        """One GalSim profile per band; equal FWHMs give the identical (cached) object."""
        return [self._profile(float(f)) for f in fwhm]

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one model per process, a few FWHMs
    def _profile(self, fwhm: float) -> galsim.GSObject:
        if self.kind == "moffat":
            return galsim.Moffat(beta=self.moffat_beta, fwhm=fwhm)
        return galsim.Kolmogorov(fwhm=fwhm)

    @functools.lru_cache(maxsize=64)  # noqa: B019
    def image(self, fwhm: float, pixel_scale: float, size: int = 32) -> galsim.Image:
        """The pixelised PSF image (unit flux) that HSM needs for PSF correction."""
        return self._profile(fwhm).drawImage(nx=size, ny=size, scale=pixel_scale)
